// Package limit holds the per-peer abuse limits every protocol of the node
// shares: token buckets (how much of one kind of work a peer may cause per
// second), strikes (offences counted and slowly forgiven: past a bound the
// peer is dropped) and bans (who is refused, and until when, after a drop).
//
// Nothing here reads a clock: every call takes the time, so the pure EBT
// state machine can use it with the time of its events and tests can use
// any time they like. Bucket and Strikes are plain values, not safe for
// concurrent use; Guard and Bans lock and are.
//
// The policy that uses them, per protocol: a peer over a rate is slowed
// (a stream's reader waits, which the stream's flow control passes back to the
// sender) or its excess is ignored (gossip, which has no back-pressure);
// offences (what an honest peer never does: invalid or unrequested data,
// over-rate gossip, bad tokens) are strikes; a peer past its strikes, or
// one that breaks a protocol, is dropped and refused for a cool-down.
//
// Any package of the module may import it; it imports only the standard
// library.
package limit
