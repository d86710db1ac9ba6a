package api

import "github.com/contextd/contextd/feed"

// Live streams. A live stream is named by its publisher's key, a feed.ID
// made fresh by stream.open; the node that opened it publishes it, every
// node that watches it verifies and relays it (docs/protocols/swarm.md,
// "Live streams"). Content is a sequence of chunks of at most 16 KiB;
// positions are chunk indices.
//
// Besides the methods, streams travel as bytes over HTTP on the RPC
// listener:
//
//	POST StreamsPath + "/" + ID  body: bytes written to the stream as they
//	                             arrive (publish a pipe) → Empty (JSON)
//	GET  StreamsPath + "/" + ID[?from=N] → the verified bytes from chunk N
//	                             (default: the live edge), streamed until
//	                             the stream's END or the client goes away
//
// Both carry the bearer token like a POST to Path; POST needs
// ScopeStreamsWrite, GET ScopeStreamsRead.

// Stream methods.
const (
	MethodStreamOpen    = "stream.open"    // no params → StreamOpenResult
	MethodStreamWrite   = "stream.write"   // StreamWriteParams → Empty
	MethodStreamClose   = "stream.close"   // StreamIDParams → Empty
	MethodStreamWatch   = "stream.watch"   // StreamWatchParams → SubscribeResult; notifications carry StreamChunk
	MethodStreamUnwatch = "stream.unwatch" // UnsubscribeParams → Empty
	MethodStreamStats   = "stream.stats"   // no params → StreamStats
)

// Notifications of stream.watch.
const (
	// NotifyStreamChunk delivers one chunk: StreamChunkNotification. The
	// one with End set is the last of the subscription.
	NotifyStreamChunk = "stream.chunk"
	// NotifyStreamEnd reports that the server ended a stream.watch
	// subscription because of an error: EndNotification. Nothing of it
	// follows.
	NotifyStreamEnd = "stream.end"
)

// StreamsPath is the HTTP path of the stream endpoints.
const StreamsPath = "/streams"

// Stream bounds.
const (
	// StreamLiveEdge as a start position means the live edge: the newest
	// munro the node's upstream holds.
	StreamLiveEdge int64 = -1
	// MaxStreamWrite bounds the data of one stream.write (bytes).
	MaxStreamWrite = 1 << 20
)

// StreamOpenResult is the result of stream.open: the new stream's ID.
type StreamOpenResult struct {
	ID feed.ID `json:"id"`
}

// StreamWriteParams are the params of stream.write: Data (base64 in JSON,
// at most MaxStreamWrite bytes) is appended to stream ID, which this node
// publishes.
type StreamWriteParams struct {
	ID   feed.ID `json:"id"`
	Data []byte  `json:"data"`
}

// StreamIDParams name a stream (stream.close).
type StreamIDParams struct {
	ID feed.ID `json:"id"`
}

// StreamWatchParams are the params of stream.watch: watch stream ID from
// chunk index From; nil starts at the live edge.
type StreamWatchParams struct {
	ID   feed.ID `json:"id"`
	From *int64  `json:"from,omitempty"`
}

// StreamChunk is the params of a stream.watch notification: one verified,
// non-empty chunk, in order. A jump in Index means the watcher fell behind
// by more than the discard window and lost the chunks in between.
type StreamChunk struct {
	Index     uint64 `json:"index"` // chunk index in the stream
	Data      []byte `json:"data"`
	Published int64  `json:"published"`     // the munro's signed publish time, unix microseconds
	End       bool   `json:"end,omitempty"` // the last notification: the publisher closed the stream
}

// StreamChunkNotification is the params of a stream.chunk notification.
type StreamChunkNotification struct {
	Subscription string      `json:"subscription"`
	Chunk        StreamChunk `json:"chunk"`
}

// StreamStats is the result of stream.stats: live bytes this node sent to
// and received from peers, over all streams, since it started.
type StreamStats struct {
	SentBytes     uint64 `json:"sentBytes"`
	ReceivedBytes uint64 `json:"receivedBytes"`
}
