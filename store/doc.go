// Package store persists what a contextd node knows: feeds (entries and
// heads), the social graph read from contact entries, the EBT clocks peers
// sent us, and fork proofs. It offers one interface, Store, with two
// implementations: Badger (on disk, Badger v4) and Mem (in memory, for tests
// and simulations). One conformance suite (suite_test.go) runs against both.
//
// # Guarantees
//
// Both implementations are safe for concurrent use. Append is atomic: a
// batch of consecutive entries of one author is written whole, with its head
// and contact-graph updates, or not at all, and of two concurrent Appends
// over the same head at most one succeeds (the other gets ErrNotContiguous).
// A reader sees a feed's head and its entries move together. Append checks
// linkage (seq and prev) and structure, never signatures: verifying is the
// caller's job (ebt verifies batches, node signs its own). Badger syncs every
// Append to disk before returning, so an author cannot lose entries it has
// already published and then fork its own feed after a power loss. Returned
// entries and proofs are the caller's to keep and modify.
//
// Batches are bounded, not split: at most MaxBatch entries per Append
// (ErrBatchTooLarge otherwise), sized so that any such batch fits one Badger
// transaction.
//
// # Badger key layout
//
// Every key starts with a one-byte prefix. IDs are the 32 bytes of the
// ed25519 key; integers are big-endian, so keys of one feed sort by seq.
//
//	'v'                      → schema version (1 byte, currently 1)
//	'e' author(32) seq(8)    → canonical entry encoding (feed.Entry.Encode)
//	'h' author(32)           → head: seq(8) entry ID(32)
//	'c' author(32) target(32)→ relation (1 byte: 1 follow, 2 block); absent = none
//	'p' peer(32) feed(32)    → the peer's last EBT note for the feed (int64, 8 bytes)
//	'f' author(32)           → fork proof (feed.ForkProof.Encode)
//
// Every entry (151 bytes or more) goes to the value log; the LSM tree keeps
// its key and a pointer, so an append writes each entry once, and flushes
// and compactions move only keys and pointers. Values under 64 bytes (heads,
// contacts, clocks, the schema version) are kept inline. Nothing but heads,
// peer clocks and contacts is ever overwritten or deleted, and all are
// inline, so the value log needs no garbage collection. Each Append is one
// transaction and one sync (of the value log and the LSM's write-ahead
// log), however many entries it carries.
//
// # Importers
//
// store imports only feed and Badger. node builds a Store; ebt and the other
// consumers declare the small interfaces they need and receive it from node.
package store
