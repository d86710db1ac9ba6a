// Package live carries live streams: the messages of the live/1 protocol
// (wire.go, docs/protocols/swarm.md "Live streams (live/1)"), the
// publisher that cuts written bytes into signed munros (publisher.go), a
// node's buffer of a stream: the window of verified munros that its
// watchers read and its downstream peers are served from (stream.go), and
// the sessions that push a stream to a peer or join it from one
// (session.go).
//
// A stream is named by its publisher's ed25519 key. Its chunks (at most
// MaxChunkSize bytes) are grouped in munros of 2^k chunks whose SHA-256
// subtree root the publisher signs; a joining side verifies the signature
// and the recomputed root of every munro before it keeps, delivers or
// forwards any of it.
//
// The messages are pure: no I/O, no goroutines, no package state. A Stream
// and a Publisher are safe for concurrent use; Serve and Upstream.Run run
// over a Conn (a flitlink circuit) and wait for the goroutines they start
// before they return. Choosing upstreams among peers is the caller's (the
// node's). The package imports only the standard library, feed (keys),
// object (the subtree root), internal/wire (the bounded reader) and the
// Prometheus client (metrics.go): like swarm, it is protocol code that
// runs over a circuit, not over libp2p, so node and tools may import it.
package live
