// Package contexts runs contexts: rooms, streams and
// followings named by a key. A context's messages are entries of type ctx
// in their authors' own feeds (the durable copy, replicated by EBT) that
// are also gossiped on the context's go-libp2p-pubsub topic (the fast
// copy); datagrams are signed, gossiped and never stored.
//
// A Manager subscribes to the topics of the joined contexts, validates
// what gossip brings (shape, context, signature, blocks and bans) before
// it is delivered or relayed, appends a gossiped entry that extends its
// author's feed through the Node it is given, and holds (bounded) one
// that arrives ahead of a gap until replication fills the gap. It hands
// replication the contexts' keys and authors (Node.Want). The members
// exchange (ServeMembers, AskMembers) runs over a flitlink circuit of
// service ctx/1, so that a late joiner learns whose feeds hold the
// history. Wire formats: docs/protocols/contexts.md.
//
// Every message reaches the store once whatever the path, and the store
// indexes it under its context with the next cursor; readers go by that
// index, so they see each message exactly once, each author's in seq
// order. The Manager is safe for concurrent use. node imports it; it
// imports feed, flitlink, go-libp2p-pubsub and the Prometheus client
// (metrics.go), never the store or ebt.
package contexts
