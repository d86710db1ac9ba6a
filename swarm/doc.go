// Package swarm moves objects between peers: the messages of the swarm/1
// protocol (wire.go, docs/protocols/swarm.md) and its sessions. Serve
// answers one peer's requests from an object store; Fetch downloads an
// object from several peers at once, verifying every chunk against the
// object's root before it stores it; Probe and Accept start a session from
// an object ID alone. The object format itself (chunks, bins, the Merkle
// tree, IDs, verification) is package object.
//
// The messages are pure: no I/O, no goroutines, no package state. Serve
// and Fetch run over a Conn (a flitlink circuit) and a store given by
// small interfaces; each starts its own goroutines and waits for them
// before it returns, and holds no package state. The package imports only
// the standard library, go-cid, object, feed (peer IDs in PEX),
// internal/wire (the bounded reader its decoder shares with live) and the
// Prometheus client (metrics.go), so node, cmd and tools may all import it.
package swarm
