// Package memlink is an in-process network for flitlink: endpoints keyed by
// feed.ID dial each other and get connected pairs of flitlink.Links over
// in-memory sessions of full-duplex streams, with a configurable one-way
// latency, per-direction bandwidth shared by a link's streams, a per-stream
// in-flight buffer (the stream's flow control), stalls that hold back one
// stream's bytes as a lost packet would, and cuts that kill the links
// between two endpoints and fail dials until healed. NewPair makes one
// connection outside any network, for tests that drive a side by hand.
//
// It is built for unit tests and the many-node simulator: it starts no
// goroutines of its own (only those of each flitlink.Link), and readers
// and writers wait on time.Timer, so inside a testing/synctest bubble all
// timing is exact and fake. A thousand endpoints cost a few kilobytes each
// plus their links.
//
// Ordering: each direction of a stream delivers bytes in the order written.
// With a bandwidth, a Write is serialised in pieces of 16 KiB, streams of a
// link taking turns piece by piece (as QUIC interleaves streams), and each
// piece arrives whole at (serialisation end + latency); a Write returns
// once its bytes are serialised. Network and Endpoint methods are safe for
// concurrent use.
//
// Only tests, the simulator and cmd/cxbench should import it.
package memlink
