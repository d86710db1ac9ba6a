// Package dht is contextd's private Kademlia DHT: a
// thin wrapper over go-libp2p-kad-dht that announces and finds providers of
// objects (swarm object IDs are CIDs, object.Info.ID) and resolves a node's
// feed.ID to its addresses.
//
// The DHT is private: it speaks /contextd/kad/1.0.0 (Protocol), never the
// public /ipfs/kad/1.0.0, so it neither answers nor queries IPFS peers. It
// knows no public bootstrap peers: the only peers it dials first are those
// in Config.Bootstrap, and afterwards only peers they (transitively) report.
// It runs in server mode, answering queries from any peer that speaks the
// protocol. Provider records live in memory; nodes re-announce what they hold
// (Reprovide), so nothing is lost that a restart does not also lose locally.
// Value records (PutValue/GetValue) are disabled until a contextd record type
// (heartbeat pin leases) needs them.
//
// Lifecycle: New starts the DHT on a host the caller owns and keeps owning,
// and begins dialling Config.Bootstrap in the background; Bootstrap blocks
// until the DHT has joined through them; Close stops the DHT
// and waits for its goroutines but leaves the host open. All methods are safe
// for concurrent use and every blocking call takes a context first.
//
// Only node (and tests) should import this package; it depends on libp2p.
package dht
