package api

import (
	"encoding/json"

	"github.com/contextd/contextd/feed"
)

// Path is the HTTP path of the RPC endpoint, for both POST and WebSocket.
const Path = "/rpc"

// Version is the JSON-RPC version every message carries.
const Version = "2.0"

// Methods. All of them are served by one table in package rpc.
const (
	MethodNodeInfo    = "node.info"    // no params → NodeInfo
	MethodNodePeers   = "node.peers"   // no params → PeersResult
	MethodNodeConnect = "node.connect" // ConnectParams → Empty

	MethodFeedPublish     = "feed.publish"     // PublishParams → Head
	MethodFeedHead        = "feed.head"        // HeadParams → Head
	MethodFeedGet         = "feed.get"         // GetParams → GetResult
	MethodFeedSubscribe   = "feed.subscribe"   // SubscribeParams → SubscribeResult (WebSocket only)
	MethodFeedUnsubscribe = "feed.unsubscribe" // UnsubscribeParams → Empty (WebSocket only)
	MethodFeedList        = "feed.list"        // no params → FeedsResult

	MethodGraphFollow   = "graph.follow"   // ContactParams → Head
	MethodGraphUnfollow = "graph.unfollow" // ContactParams → Head
	MethodGraphBlock    = "graph.block"    // ContactParams → Head
	MethodGraphUnblock  = "graph.unblock"  // ContactParams → Head
	MethodGraphList     = "graph.list"     // no params → Graph

	MethodEBTProgress = "ebt.progress" // no params → Progress
	MethodEBTPeers    = "ebt.peers"    // no params → EBTPeersResult

	MethodObjectPut       = "object.put"       // ObjectPutParams → ObjectPutResult
	MethodObjectGet       = "object.get"       // ObjectGetParams → ObjectGetResult (object.progress notifications on a WebSocket)
	MethodObjectStat      = "object.stat"      // ObjectParams → Object
	MethodObjectPin       = "object.pin"       // ObjectParams → Empty
	MethodObjectUnpin     = "object.unpin"     // ObjectParams → Empty
	MethodObjectList      = "object.list"      // no params → ObjectsResult
	MethodObjectProviders = "object.providers" // ObjectParams → ProvidersResult
)

// Notifications the server sends on a WebSocket (requests without an id).
const (
	// NotifyFeedEntry delivers one entry of a subscription: EntryNotification.
	NotifyFeedEntry = "feed.entry"
	// NotifyFeedEnd reports that the server ended a subscription because
	// of an error: EndNotification. No feed.entry follows it.
	NotifyFeedEnd = "feed.end"
	// NotifyObjectProgress reports how far an object.get that asked for
	// progress is: ObjectProgress. It goes to the calling connection only.
	NotifyObjectProgress = "object.progress"
)

// Limits a client can rely on.
const (
	// DefaultType is the entry type feed.publish uses when none is given.
	DefaultType = "post"
	// DefaultGetLimit is the number of entries feed.get returns at most
	// when no limit is given; MaxGetLimit is the largest limit accepted.
	DefaultGetLimit = 100
	MaxGetLimit     = 1000
	// MaxResultSize bounds the entries of one feed.get result: the server
	// stops adding entries once their worst-case JSON size would pass it
	// (always returning at least one). A client continues from the last seq.
	MaxResultSize = 4 << 20
	// MaxMessageSize bounds every message the server sends; clients should
	// accept messages of this size.
	MaxMessageSize = 8 << 20
)

// Request is a JSON-RPC 2.0 request. A request without ID (absent, not
// null) is a notification and gets no response.
type Request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Response is a JSON-RPC 2.0 response: exactly one of Result and Error is
// set. ID is null when the request's id could not be read.
type Response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Notification is a message from the server that answers no request.
type Notification struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// Empty is the result of methods that return nothing: {}.
type Empty struct{}

// NodeInfo is the result of node.info.
type NodeInfo struct {
	ID      feed.ID  `json:"id"`
	Addrs   []string `json:"addrs"` // listen multiaddrs, each ending in /p2p/<id>
	Version string   `json:"version"`
}

// Peer is one connected peer.
type Peer struct {
	ID    feed.ID `json:"id"`
	Addr  string  `json:"addr"`  // remote multiaddr
	State string  `json:"state"` // session state, e.g. "connecting", "active"
}

// PeersResult is the result of node.peers.
type PeersResult struct {
	Peers []Peer `json:"peers"`
}

// ConnectParams are the params of node.connect.
type ConnectParams struct {
	Addr string `json:"addr"` // multiaddr, ending in /p2p/<id>
}

// PublishParams are the params of feed.publish. At most one of Text and
// Body may be set; neither publishes an empty body.
type PublishParams struct {
	Type string `json:"type,omitempty"` // DefaultType when empty
	Text string `json:"text,omitempty"` // body as UTF-8 text
	Body []byte `json:"body,omitempty"` // body as base64
}

// Head is a feed's position: the seq and ID of an entry. It is the result
// of feed.head, feed.publish and the graph.* methods that write an entry.
type Head struct {
	Seq uint64    `json:"seq"`
	ID  feed.Hash `json:"id,omitzero"` // absent for an empty feed
}

// HeadParams are the params of feed.head.
type HeadParams struct {
	ID feed.ID `json:"id"`
}

// GetParams are the params of feed.get: entries with seq > Since,
// ascending, at most Limit (DefaultGetLimit when 0, at most MaxGetLimit).
type GetParams struct {
	ID    feed.ID `json:"id"`
	Since uint64  `json:"since,omitempty"`
	Limit int     `json:"limit,omitempty"`
}

// GetResult is the result of feed.get. It may hold fewer than the limit
// even when more entries exist (see MaxResultSize).
type GetResult struct {
	Entries []Entry `json:"entries"`
}

// SubscribeParams are the params of feed.subscribe: deliver every entry
// with seq > Since.
type SubscribeParams struct {
	ID    feed.ID `json:"id"`
	Since uint64  `json:"since,omitempty"`
}

// SubscribeResult is the result of feed.subscribe.
type SubscribeResult struct {
	Subscription string `json:"subscription"`
}

// UnsubscribeParams are the params of feed.unsubscribe.
type UnsubscribeParams struct {
	Subscription string `json:"subscription"`
}

// EntryNotification is the params of a feed.entry notification.
type EntryNotification struct {
	Subscription string `json:"subscription"`
	Entry        Entry  `json:"entry"`
}

// EndNotification is the params of a feed.end notification.
type EndNotification struct {
	Subscription string `json:"subscription"`
	Error        *Error `json:"error"`
}

// FeedStatus is how far the node has one feed it holds or follows.
type FeedStatus struct {
	ID      feed.ID `json:"id"`
	Local   uint64  `json:"local"`             // seq the node holds
	Best    uint64  `json:"best"`              // highest seq a connected peer claims (at least Local)
	Forked  bool    `json:"forked,omitempty"`  // a fork proof froze the feed
	ForkSeq uint64  `json:"forkSeq,omitempty"` // seq of the fork
	Bytes   int64   `json:"bytes,omitempty"`   // bytes of the entries the node stores
	From    uint64  `json:"from,omitempty"`    // the first seq stored, when retention pruned the ones before
}

// FeedsResult is the result of feed.list: the node's own feed first.
type FeedsResult struct {
	Feeds []FeedStatus `json:"feeds"`
}

// ContactParams are the params of graph.follow, graph.unfollow,
// graph.block and graph.unblock.
type ContactParams struct {
	ID feed.ID `json:"id"`
}

// Graph is the result of graph.list: the node's own follows and blocks.
type Graph struct {
	Follows []feed.ID `json:"follows"`
	Blocks  []feed.ID `json:"blocks"`
}

// Progress is the result of ebt.progress: replication progress as in
// ssb-ebt, counting entries. Current == Target means in sync.
type Progress struct {
	Start   int64 `json:"start"`
	Current int64 `json:"current"`
	Target  int64 `json:"target"`
}

// EBTPeer is the replication status of one peer session.
type EBTPeer struct {
	ID    feed.ID `json:"id"`
	State string  `json:"state"` // session state
	Feeds int     `json:"feeds"` // feeds in the session's scope
	Rx    int     `json:"rx"`    // feeds this peer pushes to us
	Tx    int     `json:"tx"`    // feeds we push to this peer

	Received  int64 `json:"received"`  // entries received, valid or not
	Sent      int64 `json:"sent"`      // entries sent
	Invalid   int64 `json:"invalid"`   // invalid entries received (rejected)
	Duplicate int64 `json:"duplicate"` // entries received that the node held already (another peer or context gossip was first)
}

// EBTPeersResult is the result of ebt.peers.
type EBTPeersResult struct {
	Peers []EBTPeer `json:"peers"`
}
