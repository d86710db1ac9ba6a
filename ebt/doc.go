// Package ebt replicates signed append-only feeds between contextd nodes
// with Epidemic Broadcast Trees: each pair of peers exchanges compact vector
// clocks (notes), every feed is pushed to a node by exactly one peer at a
// time, and entries are verified and appended strictly in order. The wire
// protocol "ebt/1" is specified in docs/protocols/ebt.md.
//
// # Structure
//
//   - wire.go: messages (HELLO, NOTES, ENTRIES), their bounded decoding, and
//     Note, the per-feed clock value.
//   - core.go, events.go, scope.go: the replication state machine. Events
//     in (a session started or ended, notes or entries arrived, a store
//     result, a local append, a tick), actions out (notes to send, entry
//     ranges to push, batches to append, sessions to close). It does no I/O,
//     reads no clock and starts no goroutines, so a given sequence of events
//     always yields the same actions; it keeps a mirror of the heads and
//     contact graph it needs (scope.go computes the scope from it).
//   - replicator.go: Replicator, the driver. Run owns the core, loads it
//     from the Store, carries out its actions and ticks its timer.
//   - session.go: Serve, one session with one peer over a Conn (a flitlink
//     circuit of class Data), and the per-session outbox.
//   - limits.go: per-peer limits (Limits), checked before the work: a
//     session's reader waits while its peer is over its rate of notes or
//     entries and ends the session when the peer names too many feeds;
//     the core counts strikes and closes the session of a peer past them.
//   - verify.go: verification off Run's goroutine: received entries by run
//     (hash links and the last signature) on the sessions' readers and a
//     shared pool of helpers; the signature of the entry each sent message
//     ends with on the writers.
//   - sim.go: Simulate, a deterministic discrete-event simulation of many
//     nodes (real Replicators driven under a virtual clock, messages over
//     links with latency and FIFO order), for cmd/cxbench sim-ebt. Real
//     time with 3 s timers is too slow for it and testing/synctest exists
//     only in tests; see docs/protocols/ebt.md, "Simulation".
//
// # Threading and ordering
//
// Run's goroutine owns all replication state; nothing else touches the
// core. Each Serve call runs two goroutines, owned and waited for by Serve:
// a reader that decodes messages into events for Run (blocking when Run is
// busy, which back-pressures the peer through the circuit stream's flow control) and a writer
// that drains the session's outbox (blocking on flow control without ever
// blocking Run). Appended and ScopeChanged never block; Progress and Peers
// return snapshots Run publishes after each event. All are safe for
// concurrent use. Config.OnAppend is called on Run's goroutine.
//
// Entries of a feed are appended strictly in seq order; one ENTRIES message
// yields at most one Store.Append per author. They are verified before Run
// sees them, a run at a time (consecutive entries of one author in one
// message): each session's reader checks a run's hash links and the
// signature of its last entry, which authenticates the run
// (feed.VerifyRun), hashing big runs in chunks and verifying a message's
// runs on up to GOMAXPROCS-1 helper goroutines shared by all sessions (it
// never waits for one). Run only checks that a run links to the feed's
// head. So a stored entry's own signature may never have been checked, and
// may even be invalid if its author signed a later entry that commits to
// it; the writer therefore checks the signature of the entry each ENTRIES
// message ends with before sending it (verify.go, sigCache), since that is
// the one signature the peer checks. Contact entries update the scope and
// the block checks before anything appended after them is pushed to
// anyone.
//
// # Importers
//
// ebt imports only feed, internal/limit, the standard library and the
// Prometheus client (metrics.go: counters behind Config.Metrics); it
// declares the small Store interface it needs and takes any Conn, so
// flitlink circuits, pipes and simulators all work. node wires it to the store and to flitlink.
package ebt
