package rpc

import (
	"context"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Node is what the RPC handlers need from the daemon. Methods must be safe
// for concurrent use. Errors should wrap the sentinels of package api (and
// feed.ErrTooLarge, feed.ErrBadType) so that they map to their codes; any
// other error is reported as an internal error with its message.
type Node interface {
	// Info describes the node: its ID, listen addresses, version.
	Info() api.NodeInfo
	// Peers lists the connected peers.
	Peers() []api.Peer
	// Connect dials a peer by multiaddr. A malformed address should wrap
	// api.ErrInvalidParams, an unreachable peer api.ErrUnavailable.
	Connect(ctx context.Context, addr string) error

	// Publish signs and appends an entry of type typ to the node's own
	// feed. typ is valid and body is at most feed.MaxBodySize bytes (the
	// server checks both).
	Publish(ctx context.Context, typ string, body []byte) (*feed.Entry, error)
	// Head returns the head of feed id; api.ErrUnknownFeed when the node
	// holds nothing of it.
	Head(id feed.ID) (feed.Head, error)
	// Entries returns entries of feed id with seq >= from, ascending and
	// consecutive, at most limit. It returns an empty slice past the head
	// and nil or api.ErrUnknownFeed for a feed the node holds nothing of.
	Entries(id feed.ID, from uint64, limit int) ([]*feed.Entry, error)
	// Watch returns a channel that receives a value (coalescing: capacity
	// 1, sent without blocking) whenever the head of feed id moves, and a
	// func that releases it. It may be called for feeds the node does not
	// hold yet. The node may close the channel when it shuts down.
	Watch(id feed.ID) (changed <-chan struct{}, stop func())

	// Feeds reports every feed the node holds or follows, its own first.
	Feeds() ([]api.FeedStatus, error)

	// Contact appends a contact entry about target with relation rel to
	// the node's own feed: graph.follow passes RelFollow, graph.block
	// RelBlock, graph.unfollow and graph.unblock RelNone (the feed format
	// keeps one relation per target, so both return it to none).
	Contact(ctx context.Context, target feed.ID, rel feed.Relation) (*feed.Entry, error)
	// Graph returns the node's own follows and blocks.
	Graph() (api.Graph, error)

	// Progress reports replication progress.
	Progress() api.Progress
	// EBTPeers reports per-peer replication status.
	EBTPeers() []api.EBTPeer

	// PutObject stores, pins and provides the file at path (absolute); a
	// path it cannot read should wrap api.ErrInvalidParams.
	PutObject(ctx context.Context, path string) (api.ObjectPutResult, error)
	// GetObject makes the node hold object id, fetching it from providers,
	// and writes it to path (absolute; none if empty). progress, if not
	// nil, is called with the bytes held and the size, from one goroutine
	// at a time. No provider should wrap api.ErrNotFound.
	GetObject(ctx context.Context, id cid.Cid, path string, progress func(done, total int64)) (api.ObjectGetResult, error)
	// StatObject, PinObject and UnpinObject wrap api.ErrNotFound for an
	// object the node does not hold.
	StatObject(id cid.Cid) (api.Object, error)
	PinObject(ctx context.Context, id cid.Cid) error
	UnpinObject(id cid.Cid) error
	// ListObjects reports every object held, ordered by CID.
	ListObjects() ([]api.Object, error)
	// Providers returns the peers the DHT says provide id.
	Providers(ctx context.Context, id cid.Cid) ([]api.Provider, error)
}
