// Package swarm holds contextd's objects: blobs cut into
// fixed-size chunks and authenticated by the RFC 7574 (PPSPP) Merkle tree.
// For now it is the tree and the wire messages: bin numbering (Bin), building a tree from a
// stream (Build, bounded memory: one chunk buffer and about two hashes per
// chunk), the root of the smallest covering tree, peak hashes that prove the
// size (Peaks, RootFromPeaks), the object ID as a CIDv1 (Info.ID) and the
// check a downloader runs on each chunk before writing it
// (Info.VerifyChunk), the messages of the swarm/1 protocol (wire.go,
// docs/protocols/swarm.md), and its sessions: Serve answers one peer's
// requests from an object store, Fetch downloads an object from several
// peers at once, verifying every chunk before it stores it. DHT discovery
// and PEX will come later.
//
// SHA-256 is the default hash; SHA-1 with 1 KiB chunks reproduces PPSPP
// (libswift) swarm IDs. The format is specified in
// docs/protocols/swarm-tree.md.
//
// The tree and the messages are pure: no I/O beyond the reader given to
// Build, no goroutines, no package state. A Tree is immutable once built and
// safe for concurrent use. Serve and Fetch run over a Conn (a flitlink
// circuit) and a store given by small interfaces; each starts its own
// goroutines and waits for them before it returns, and holds no package
// state. The package imports only the standard library, go-cid,
// go-multihash, feed (peer IDs in PEX) and the Prometheus client
// (metrics.go), so node, cmd and tools may all import it.
package swarm
