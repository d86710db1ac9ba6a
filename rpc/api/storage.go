package api

import (
	"github.com/contextd/contextd/feed"
)

// Storage methods (docs/protocols/rpc.md, "Storage bounds").
const (
	MethodObjectRm    = "object.rm"    // ObjectRmParams → ObjectRmResult
	MethodNodeStorage = "node.storage" // no params → Storage
)

// UnfollowParams are the params of graph.unfollow. With Forget the node
// also deletes what it stores of the feed, unless the feed is still
// replicated for another reason (UnfollowResult.Kept).
type UnfollowParams struct {
	ID     feed.ID `json:"id"`
	Forget bool    `json:"forget,omitempty"`
}

// UnfollowResult is the result of graph.unfollow: the contact entry
// written (its seq and id; seq 0 when forget found no follow to undo, or
// a block, which it keeps), and with forget what became of the feed.
type UnfollowResult struct {
	Head
	// Forgotten: the node deleted every entry of the feed it stored.
	Forgotten bool `json:"forgotten,omitempty"`
	// FreedBytes counts the bytes of the entries deleted.
	FreedBytes int64 `json:"freedBytes,omitempty"`
	// Kept says why a feed that forget was asked for was not deleted:
	// the node still replicates it.
	Kept string `json:"kept,omitempty"`
}

// ObjectRmParams are the params of object.rm. A pinned object is refused
// unless Force (which unpins it first, ending the node's lease).
type ObjectRmParams struct {
	CID   string `json:"cid"`
	Force bool   `json:"force,omitempty"`
}

// ObjectRmResult is the result of object.rm.
type ObjectRmResult struct {
	FreedBytes int64 `json:"freedBytes"` // bytes of the chunks deleted
}

// Storage is the result of node.storage: the disk the node's store uses
// and its bounds.
type Storage struct {
	// Main and Blobs are the bytes of the store's two databases: feeds,
	// indexes and object records; object chunks and tree hashes. Badger
	// refreshes them about once a minute.
	Main  int64 `json:"main"`
	Blobs int64 `json:"blobs"`
	// FeedQuota and ContextQuota are the byte quotas per feed and per
	// context (of other authors' messages); 0: none.
	FeedQuota    int64 `json:"feedQuota"`
	ContextQuota int64 `json:"contextQuota"`
	// Contexts reports each joined context, ordered by ID.
	Contexts []ContextStorage `json:"contexts"`
}

// ContextStorage is what the node stores of one context.
type ContextStorage struct {
	ID feed.ID `json:"id"`
	// Bytes counts the stored messages of every author; OthersBytes those
	// of authors other than the node, which count against the quota and
	// which retention prunes.
	Bytes       int64 `json:"bytes"`
	OthersBytes int64 `json:"othersBytes"`
	// RetentionDays and RetentionBytes are the context's retention
	// setting (0: no bound).
	RetentionDays  int   `json:"retentionDays,omitempty"`
	RetentionBytes int64 `json:"retentionBytes,omitempty"`
}
