// Package node wires contextd together: from a Config and a home directory
// it builds a libp2p host (QUIC only, no relays, no discovery), the Badger
// store, flitlink links (one per peer) and EBT replication, and exposes the
// calls the RPC API serves. It is the only package that knows all others;
// only cmd/ and tests import it.
//
// Lifecycle: New opens the store and starts the host; Run runs replication,
// the lease heartbeat and the cache eviction passes (pins.go), the
// contexts' history retention pass (retention.go) and accepts
// links until its context ends; Close shuts down in order
// (listeners, links and sessions, host, store last) and waits for every
// goroutine. The node's methods are safe for concurrent use; appends to the
// node's own feed are serialised.
//
// Home layout: key (hex ed25519 seed, 0600), config.json (versioned
// FileConfig), rpc.token (0600), rpc.addr (while running), db/ (Badger).
package node
