// Package object is contextd's object format: blobs cut into fixed-size
// chunks and authenticated by the RFC 7574 (PPSPP) Merkle tree. It holds
// bin numbering (Bin), building a tree from a stream (Build, bounded
// memory: one chunk buffer and about two hashes per chunk), the root of the
// smallest covering tree, peak hashes that prove the size (Peaks,
// RootFromPeaks), the object ID as a CIDv1 (Info.ID, InfoFromID) and the
// checks a downloader runs before it keeps a chunk (Info.VerifyChunk) or a
// run of chunks (Info.VerifyRange).
//
// SHA-256 is the default hash; SHA-1 with 1 KiB chunks reproduces PPSPP
// (libswift) swarm IDs. The format is specified in
// docs/protocols/object.md.
//
// The package is pure: no I/O beyond the reader given to Build, no
// goroutines, no package state. A Tree is immutable once built and safe for
// concurrent use. It imports only the standard library, go-cid and
// go-multihash, so the store and every protocol may import it.
package object
