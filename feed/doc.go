// Package feed defines contextd's identities and its signed, hash-chained,
// append-only feeds: keys and IDs, the entry format and its one canonical
// binary encoding, signing, validation against a feed's head (of one entry,
// Entry.Validate, or of a run of consecutive entries for the price of one
// signature check, VerifyRun), fork proofs and the bodies of the entry types
// the daemon itself interprets (contact, lease).
//
// The package is pure: it does no I/O, keeps no state and is safe for
// concurrent use. It imports only the standard library, so every other
// package (store, flitlink, ebt, node, and tools) may import it. The wire
// format is specified in docs/protocols/feed.md; frozen vectors in testdata/
// pin it down and never change.
package feed
