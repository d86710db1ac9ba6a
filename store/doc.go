// Package store persists what a contextd node knows: feeds (entries and
// heads), the social graph read from contact entries, the EBT clocks peers
// sent us, fork proofs, and swarm objects (object info, verified
// chunks and tree hashes, pins, the leases read from lease entries,
// least-recently-used eviction). It
// offers four interfaces, Store for feeds, Contexts for the index of
// context messages, Objects for objects and Bounds for the storage bounds
// (byte counts and quotas, pruning, deleting a feed), each with
// two implementations: Badger (on disk, Badger v4) and Mem (in memory, for
// tests and simulations). One conformance suite per interface
// (suite_test.go, ctx_suite_test.go, objects_suite_test.go,
// bounds_suite_test.go) runs against both.
//
// # Guarantees
//
// Both implementations are safe for concurrent use. Append is atomic: a
// batch of consecutive entries of one author is written whole, with its head,
// contact-graph and lease updates, or not at all, and of two concurrent Appends
// over the same head at most one succeeds (the other gets ErrNotContiguous).
// A reader sees a feed's head and its entries move together. Append checks
// linkage (seq and prev) and structure, never signatures: verifying is the
// caller's job (ebt verifies batches, node signs its own). Appends are not
// synced to disk on their own: a commit survives the process dying, and
// Sync makes everything committed before it survive a power loss too. The
// node syncs after appending its own entries and before they leave it, so
// an author cannot lose entries it has already published and then fork its
// own feed; other authors' entries lost to a power loss are fetched again.
// Tree hashes and a record per held chunk (its CRC-32C) live in a second
// Badger database (blobs/), and the chunks' bytes in one plain file per
// object (chunks/), written at the chunk's offset and read without
// mapping the file, so the kernel's page cache, not the daemon's memory,
// caches an object's bytes (a read holds only the run it returns).
// Neither is synced on write (a chunk file is when it is closed, and
// Close closes them all): a power loss may take chunks or hashes written
// in the last seconds (they are fetched again). A chunk's bytes are
// written before its record commits, so a chunk counts as held only once
// its bytes are in the file, and a chunk whose bytes a power loss tore or
// lost (its file, or the file's tail) reads as ErrCorrupt against its
// record, never as other bytes, and is forgotten (see OpenBadger).
// Returned entries and proofs are the caller's to keep and modify.
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
//	'v'                      → schema version (1 byte, currently 4; in both databases; 2 and 3 are upgraded on open)
//	'e' author(32) seq(8)    → canonical entry encoding (feed.Entry.Encode)
//	'h' author(32)           → head: seq(8) entry ID(32)
//	'c' author(32) target(32)→ relation (1 byte: 1 follow, 2 block); absent = none
//	'p' peer(32) feed(32)    → the peer's last EBT note for the feed (int64, 8 bytes)
//	'f' author(32)           → fork proof (feed.ForkProof.Encode)
//	'b' author(32)           → bytes of the feed's stored entries (8 bytes), for quotas and status
//	'r' author(32)           → the first stored seq (8 bytes) once Prune deleted the ones before it; absent: 1
//	'g' author(32)           → empty: tombstone of a DeleteFeed in progress, finished on open
//
// The context index (Contexts) is written in the transaction of the ctx
// entries it indexes; cursors count from 1 per context:
//
//	'x' ctx(32) cursor(8)    → author(32) seq(8) of the message with that cursor
//	'y' ctx(32)              → the context's latest cursor (8 bytes)
//	'm' ctx(32) author(32)   → messages(8) highest seq(8) bytes(8) of the author in the context
//	'z' ctx(32)              → bytes of the context's stored messages (8 bytes)
//	'j' ctx(32)              → empty: the node has joined the context
//
// Object keys carry the object ID (CID bytes, at most MaxObjectIDLen) after
// a length byte L; integers are big-endian. 'q' and 't' are in the blobs
// database, the rest in the main one:
//
//	'o' L id                 → info: hash code(8) chunk size(4) size(8) root
//	's' L id                 → state: access counter(8) pinned(1)
//	'q' L id index(8)        → CRC-32C of the held chunk (4 bytes); its bytes are in the object's chunk file
//	't' L id bin(8)          → verified tree hash
//	'l' L id author(32)      → end of the author's latest lease entry on the object, Unix nanoseconds (int64, 8 bytes; an ended lease has no key)
//	'd' L id                 → tombstone: the object's keys are being deleted
//
// An object's chunk file is chunks/ID, ID the CID bytes in lowercase
// base32 after a 'b' (the CID's own string for a CIDv1); chunk i is at
// byte i×ChunkSize, and the file is sparse while chunks are missing. A
// store keeps at most 64 of them open between calls.
//
// The access counter orders objects for eviction; the in-memory index of
// objects (info, state, and the leases on the objects held) is rebuilt from
// 'o', 's' and 'l' on open, which first finishes any deletion a tombstone
// records, then counts each object's chunks from its 'q' keys and deletes
// the blobs and chunk files of objects without an 'o' key (a deletion
// whose blobs part a power loss undid), and any other file in chunks/.
// Append writes 'l' keys, whether the object is held or not, in
// the transaction of the lease entries; PutObject reads the object's 'l'
// keys into the index. Evicting an object drops 'o' and 's' and writes 'd'
// in one transaction, deletes its 'q' and 't' keys in bounded transactions
// and its chunk file, then drops 'd'; its 'l' keys stay (they are what its
// authors' feeds say).
//
// Layout 3 and before kept chunk bytes in the blobs database ('k' L id
// index(8) → chunk bytes). Opening such a store moves them into chunk
// files in batches: a batch's bytes are written and synced, then one
// transaction swaps its 'k' keys for 'q' records, so a crash leaves the
// rest to move at the next open; the emptied value log is then collected.
//
// Every entry (151 bytes or more) goes to the value log; the LSM tree keeps
// its key and a pointer, so an append writes each entry once, and flushes
// and compactions move only keys and pointers. Values under 64 bytes (heads,
// contacts, clocks, leases, counts, the schema version) are kept inline.
// Entries are deleted only by Prune (a feed's prefix, in transactions of
// up to 1024 entries that each move the 'r' point and the counts with
// them, so a crash leaves a consistent feed) and DeleteFeed (a synced
// 'g' tombstone, then the feed's rows in bounded transactions, the head
// last); both leave garbage in the main value log, which DeleteFeed and
// the node's retention pass hand to Badger's value log GC. The blobs
// database keeps every value inline (its value log stays empty), so an
// evicted or deleted object's space goes back with its chunk file and the
// compaction of its keys. Each Append is one
// transaction, however many entries it carries, and a Sync after it one
// sync of the value log and the LSM's write-ahead log (badger_sync.go).
//
// Verify (verify.go) opens a Badger store read-only and checks it whole:
// every feed's chain and signatures, heads, the context index, and a
// sample of each object's chunks (read from its chunk file, checked
// against its record and its root); `contextd doctor` runs it on a
// stopped daemon's store.
//
// # Importers
//
// store imports only feed, object (the format: Info, bins, CIDs),
// Badger and the Prometheus client (metrics.go); no network code. node builds a Store; ebt and the other
// consumers declare the small interfaces they need and receive it from node.
package store
