// Package flitlink carries all data-plane traffic between two contextd
// nodes: one link per peer pair over any reliable, ordered byte stream, with
// numbered circuits inside it. A circuit is opened by service name ("ebt/1",
// "swarm", …) and QoS class, and carries whole messages; messages larger
// than a flit (16 KiB + 64 B by default) are fragmented into bounded frames and
// reassembled. The wire format is specified in docs/protocols/flitlink.md.
//
// Guarantees:
//   - Messages on one circuit arrive whole, in order, exactly once, or the
//     link dies. There is no ordering between circuits.
//   - Per-circuit credit flow control: the receiver grants Config.Window
//     bytes and re-grants as the application calls Recv, so a slow reader
//     stops its sender (Send blocks) without growing memory on either side
//     and without slowing other circuits.
//   - Scheduling is per frame: link control first, then Control, Voice, and
//     Video and Data sharing by weight (VideoWeight:DataWeight). A small
//     Voice message therefore waits for at most about two flits of bulk data
//     already being written, never for a whole large message.
//   - Everything the peer sends is bounded before it is allocated: frame and
//     control sizes, message size, credit, open circuits, accept backlog. A
//     peer that breaks the protocol kills its link (ErrProtocol), nothing
//     else.
//   - When a link dies (I/O error, protocol violation, Close), every blocked
//     and later call on it returns an error wrapping ErrLinkClosed and the
//     cause.
//
// Threading: a Link runs a reader and a writer goroutine, owned by the Link
// and stopped and waited for by Close. Link and Circuit methods are safe for
// concurrent use. One mutex per link guards the link's and its circuits'
// state; the reader goroutine owns the receive buffers and the writer
// goroutine the write buffer.
//
// Adapters provide the byte streams: flitlink/p2plink (one libp2p stream per
// peer pair, protocol "/contextd/flit/1") and flitlink/memlink (in-process,
// with latency, bandwidth and cuts, for tests and the simulator). This
// package imports only the standard library, feed and the Prometheus
// client (metrics.go: bytes and queueing delay per class behind
// Config.Metrics); any package may import it.
package flitlink
