// Package p2plink carries flitlink links over libp2p: every stream of a
// link (its control stream and one per circuit) is a libp2p stream with
// protocol ProtocolID ("/contextd/flit/2"), normally over QUIC, and a
// link's circuits run on its control stream's connection. The dialler's
// link is the initiator. A peer is identified by its libp2p peer ID, which
// for contextd is an ed25519 key and converts one-to-one to a feed.ID;
// streams from peers with any other key type are reset.
//
// Each stream starts with a preamble (version, kind, link nonce) that
// routes it to its link, so two links between the same peers (while node
// settles which to keep) stay apart. Sessions report quic-go's RTT samples
// (flitlink.RTTSampler) for the bulk controller. Closing a link resets its
// streams and leaves the connection open: node decides about connections.
//
// The adapter is deliberately thin: everything about circuits, messages and
// pacing lives in package flitlink. It does not deduplicate links: if two
// peers dial each other at once, each gets two links, and the caller
// (node) decides which to keep.
//
// Threading: Transport methods are safe for concurrent use. Incoming
// streams arrive on libp2p's handler goroutines, which read the preamble
// and hand the stream on: new links wait in a bounded backlog
// (AcceptBacklog) until Accept, circuit streams in their session's bounded
// queue; beyond those bounds they are reset. Transport starts no goroutines
// of its own besides those of each Link.
//
// Only node (and tools such as cmd/cxbench) should import this package.
package p2plink
