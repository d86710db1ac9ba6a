// Package p2plink carries flitlink links over libp2p: one stream with
// protocol ProtocolID ("/contextd/flit/1") per link, normally over QUIC. The
// dialler's link is the initiator. A peer is identified by its libp2p peer
// ID, which for contextd is an ed25519 key and converts one-to-one to a
// feed.ID; streams from peers with any other key type are reset.
//
// The adapter is deliberately thin: everything about framing, circuits,
// scheduling and flow control lives in package flitlink. It does not
// deduplicate links: if two peers dial each other at once, each gets two
// links, and the caller (node) decides which to keep.
//
// Threading: Transport methods are safe for concurrent use. Incoming
// streams arrive on libp2p's handler goroutines and wait, as links, in a
// bounded backlog (AcceptBacklog) until Accept; beyond it they are reset.
// Transport starts no goroutines of its own besides those of each Link.
//
// Only node (and tools such as cmd/cxbench) should import this package.
package p2plink
