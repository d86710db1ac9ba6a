// Package flitlink carries all data-plane traffic between two contextd
// nodes: one link per peer pair over a Session of independent streams (QUIC
// streams over one connection), with one stream per circuit. A circuit is
// opened by service name ("ebt/1", "swarm/1", …) and QoS class, and carries
// whole, length-prefixed messages written straight to its stream. The wire
// format is specified in docs/protocols/flitlink.md.
//
// Guarantees:
//   - Messages on one circuit arrive whole, in order, exactly once, or the
//     circuit or link fails. There is no ordering between circuits, and no
//     head-of-line blocking either: bytes of one circuit held back by a
//     lost packet hold back no other circuit.
//   - Flow control is the transport's, per stream: a slow reader stops its
//     sender (Send blocks) without growing memory on either side and without
//     slowing other circuits. A receiver holds at most the stream's window
//     and one message, allocated at its declared length only after the
//     length was checked against the maximum message size.
//   - Control and Voice circuits never wait for bulk here; Video and Data
//     Sends wait for the link's delay-based bulk controller (ledbat.go),
//     which keeps the path's queue short, unless Config.Unmanaged or the
//     Session reports no RTT samples (RTTSampler; memlink does not).
//   - Liveness: keepalives every Config.KeepAlive on the control stream; a
//     link that hears nothing for Config.DeadAfter dies with ErrTimeout.
//   - Everything the peer sends is bounded before it is allocated: control
//     messages, circuit headers, message sizes, open circuits, the accept
//     backlog, what a closed circuit discards. A peer that breaks the
//     protocol kills its link (ErrProtocol), nothing else.
//   - When a link dies (stream failure, protocol violation, timeout,
//     Close), every blocked and later call on it returns an error wrapping
//     ErrLinkClosed and the cause.
//
// Threading: a Link runs three goroutines (control reader, keepalive
// writer, stream acceptor), plus one per incoming circuit while its header
// is read and one per closed circuit while it drains; Close stops and waits
// for all of them. Send and Recv run on the caller's goroutine and read and
// write the circuit's stream directly. Link and Circuit methods are safe for
// concurrent use.
//
// Adapters provide the sessions: flitlink/p2plink (libp2p streams with
// protocol "/contextd/flit/2" on the QUIC connection to the peer) and
// flitlink/memlink (in-process, with latency, bandwidth, stalls and cuts,
// for tests and the simulator). This package imports only the standard
// library, feed and the Prometheus client (metrics.go: bytes and send delay
// per class behind Config.Metrics); any package may import it.
package flitlink
