package rpc

import (
	"context"
	"io"
	"time"

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
	// Ping sends count pings of size bytes to peer, one every interval,
	// on a control-class circuit, and returns each one's round trip (-1:
	// no reply). The arguments are within api's ping bounds; a peer it
	// cannot reach should wrap api.ErrUnavailable.
	Ping(ctx context.Context, peer feed.ID, size, count int, interval time.Duration) ([]time.Duration, error)

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
	// Unfollow is graph.unfollow: Contact with RelNone, and with forget
	// the deletion of what the node stores of the feed (see
	// api.UnfollowResult). The node's own ID and the feed of a context
	// whose key the node holds wrap api.ErrInvalidParams.
	Unfollow(ctx context.Context, id feed.ID, forget bool) (api.UnfollowResult, error)
	// Storage reports the disk the store uses and its bounds.
	Storage() (api.Storage, error)

	// Progress reports replication progress.
	Progress() api.Progress
	// EBTPeers reports per-peer replication status.
	EBTPeers() []api.EBTPeer

	// PutObject stores, pins and provides the bytes r yields, to its end,
	// in memory bounded whatever their number; an error reading r fails
	// it.
	PutObject(ctx context.Context, r io.Reader) (api.ObjectPutResult, error)
	// PutObjectFile does what PutObject does with the file at path
	// (absolute, on the daemon's machine). A path outside the
	// directories the operator allowed should wrap api.ErrNotAllowed
	// (nothing read), one it cannot read api.ErrInvalidParams.
	PutObjectFile(ctx context.Context, path string) (api.ObjectPutResult, error)
	// OpenObject makes the node hold object id, fetching it from
	// providers, and returns a reader of its size bytes; the object is
	// kept until the reader is closed. progress, if not nil, is called
	// with the bytes held and the size, from one goroutine at a time. No
	// provider should wrap api.ErrNotFound.
	OpenObject(ctx context.Context, id cid.Cid, progress func(done, total int64)) (r io.ReadCloser, size int64, err error)
	// GetObject makes the node hold object id as OpenObject does and
	// writes it to path (absolute; none if empty). A path outside the
	// allowed directories should wrap api.ErrNotAllowed (nothing fetched
	// or written).
	GetObject(ctx context.Context, id cid.Cid, path string, progress func(done, total int64)) (api.ObjectGetResult, error)
	// StatObject, PinObject and UnpinObject wrap api.ErrNotFound for an
	// object the node does not hold.
	StatObject(id cid.Cid) (api.Object, error)
	PinObject(ctx context.Context, id cid.Cid) error
	UnpinObject(id cid.Cid) error
	// ListObjects reports every object held, ordered by CID.
	ListObjects() ([]api.Object, error)
	// RemoveObject deletes what the node holds of id (api.ErrNotFound if
	// nothing); a pinned object wraps api.ErrInvalidParams unless force.
	RemoveObject(id cid.Cid, force bool) (api.ObjectRmResult, error)
	// Providers returns the peers the DHT says provide id.
	Providers(ctx context.Context, id cid.Cid) ([]api.Provider, error)

	// Contexts (see api.Context). Calls that need a joined context wrap
	// api.ErrNotJoined otherwise; a body over api.MaxMessageBody wraps
	// feed.ErrTooLarge.

	// CreateContext makes a new context key, keeps it, writes its meta
	// (name, description, wide) to the context's feed, and joins it.
	CreateContext(ctx context.Context, p api.ContextCreateParams) (api.Context, error)
	// JoinContext joins context id: finds and links members, subscribes to
	// its gossip and replicates its history. Joining twice is not an error.
	JoinContext(ctx context.Context, id feed.ID) (api.Context, error)
	// LeaveContext stops taking part in id (its history stays stored).
	LeaveContext(id feed.ID) error
	// Contexts lists the joined contexts, ordered by ID.
	Contexts() ([]api.Context, error)
	// ContextStats reports the gossip counters of all contexts.
	ContextStats() api.ContextStats
	// ContextMembers lists the authors the node knows in id, ordered by ID.
	ContextMembers(id feed.ID) ([]api.Member, error)
	// PublishContext appends a ctx entry with body to the node's own feed
	// and gossips it; it returns the message as stored.
	PublishContext(ctx context.Context, id feed.ID, body []byte) (api.Message, error)
	// SendContext gossips an ephemeral datagram with body to id's members.
	SendContext(ctx context.Context, id feed.ID, body []byte) error
	// ContextMessages returns the messages of id with cursor > after,
	// ascending, looking at up to limit cursors, and the last cursor it
	// looked at (after itself if there is none): the caller goes on from
	// there. Messages of authors that the node blocks or the context bans
	// are left out, so cursors may skip.
	ContextMessages(id feed.ID, after uint64, limit int) (msgs []api.Message, upTo uint64, err error)
	// ContextHistory returns one page of id's messages per p (Limit is
	// already checked and filled in).
	ContextHistory(id feed.ID, p api.HistoryParams) (api.HistoryResult, error)
	// WatchContext is Watch for context id: a coalescing signal whenever
	// messages were added to it.
	WatchContext(id feed.ID) (changed <-chan struct{}, stop func())
	// ContextDatagrams delivers the datagrams that reach context id from
	// now on until stop is called; datagrams a slow reader leaves in the
	// channel's buffer (its capacity is the node's) are dropped.
	ContextDatagrams(id feed.ID) (dgs <-chan api.Datagram, stop func())
	// BanContext appends (ban) or lifts (!ban) a ban of author in id's
	// own feed; the node must hold id's key, else api.ErrNotAllowed.
	BanContext(ctx context.Context, id, author feed.ID, ban bool) (feed.Head, error)

	// Live streams (see api.StreamChunk). Calls on a stream this node does
	// not publish, or one it closed, wrap api.ErrNotFound.

	// OpenStream makes a new live stream with a fresh key; this node
	// publishes it.
	OpenStream(ctx context.Context) (feed.ID, error)
	// WriteStream appends data (at most api.MaxStreamWrite bytes, the
	// server checks) to stream id; empty data only checks that the node
	// publishes it.
	WriteStream(ctx context.Context, id feed.ID, data []byte) error
	// CloseStream flushes stream id and ends it.
	CloseStream(ctx context.Context, id feed.ID) error
	// WatchStream delivers the verified, non-empty chunks of stream id
	// from chunk index from (api.StreamLiveEdge: the live edge), in
	// order; a jump in Index means chunks were lost. After the stream's
	// END it sends a last chunk with End set, then closes the channel; a
	// channel closed without it means the watch failed or stopped (ctx
	// ended, stop called, the node shut down). No carrier of the stream
	// should wrap api.ErrUnavailable.
	WatchStream(ctx context.Context, id feed.ID, from int64) (chunks <-chan api.StreamChunk, stop func(), err error)
	// StreamStats reports the live bytes this node sent and received.
	StreamStats() api.StreamStats
}
