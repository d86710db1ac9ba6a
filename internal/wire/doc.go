// Package wire holds what the message layers of the protocols share: the
// frame every message has (a type byte, then a body, within a size limit)
// and a bounded reader of bodies made of minimal uvarints and byte
// strings. Each protocol keeps its own messages, limits and error
// sentinel; it passes Open a function that makes its malformed-message
// error.
//
// Pure: the standard library only, no state, no goroutines. Only the
// module's protocol packages import it.
package wire
