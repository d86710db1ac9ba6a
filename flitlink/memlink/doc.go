// Package memlink is an in-process network for flitlink: endpoints keyed by
// feed.ID dial each other and get connected pairs of flitlink.Links over
// in-memory full-duplex pipes, with a configurable one-way latency,
// per-direction bandwidth and in-flight buffer, and cuts that kill the links
// between two endpoints and fail dials until healed.
//
// It is built for unit tests and the many-node simulator: it starts no
// goroutines of its own (only the two of each flitlink.Link), and readers
// and writers wait on time.Timer, so inside a testing/synctest bubble all
// timing is exact and fake. A thousand endpoints cost a few kilobytes each
// plus their links.
//
// Ordering: each direction of a pipe delivers bytes in the order written,
// each write whole at (serialisation end + latency). Network and Endpoint
// methods are safe for concurrent use.
//
// Only tests, the simulator and cmd/cxbench should import it.
package memlink
