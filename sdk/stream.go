package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Live streams. A stream is named by a feed.ID that OpenStream makes; the
// daemon that opened it publishes it, any daemon linked to a carrier of it
// can watch it. Bytes go in with WriteStream (small writes, over the
// WebSocket) or PublishStream (a pipe, over HTTP), and come out with
// WatchStream (bytes, over HTTP) or SubscribeStream (chunks with their
// indices and publish times, over the WebSocket).

// OpenStream makes a new live stream that the daemon publishes and
// returns its ID (stream.open).
func (c *Client) OpenStream(ctx context.Context) (feed.ID, error) {
	var r api.StreamOpenResult
	err := c.Call(ctx, api.MethodStreamOpen, nil, &r)
	return r.ID, err
}

// WriteStream appends data to stream id (stream.write). data must fit one
// request: at most api.MaxStreamWrite bytes and, base64-encoded, the
// daemon's request limit (by default about 160 KiB of JSON); for more,
// use PublishStream.
func (c *Client) WriteStream(ctx context.Context, id feed.ID, data []byte) error {
	return c.Call(ctx, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: data}, nil)
}

// CloseStream flushes stream id and ends it (stream.close): its watchers
// get their remaining bytes, then the end.
func (c *Client) CloseStream(ctx context.Context, id feed.ID) error {
	return c.Call(ctx, api.MethodStreamClose, api.StreamIDParams{ID: id}, nil)
}

// StreamStats reports the live bytes the daemon sent to and received from
// peers, over all streams (stream.stats).
func (c *Client) StreamStats(ctx context.Context) (api.StreamStats, error) {
	var r api.StreamStats
	err := c.Call(ctx, api.MethodStreamStats, nil, &r)
	return r, err
}

// streamPath is the HTTP path of stream id.
func streamPath(id feed.ID) string { return api.StreamsPath + "/" + id.String() }

// PublishStream writes the bytes r yields to stream id as they come, to
// r's end (POST /streams/ID); each read goes out at once, so a pipe's
// bytes are live. The stream stays open: CloseStream ends it.
func (c *Client) PublishStream(ctx context.Context, id feed.ID, r io.Reader) error {
	op := "POST " + streamPath(id)
	resp, err := c.bytesRequest(ctx, http.MethodPost, streamPath(id), nil, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(op, resp)
	}
	return nil
}

// WatchStream returns the verified bytes of stream id from chunk index
// from (api.StreamLiveEdge: the live edge) as they arrive (GET
// /streams/ID). Read returns io.EOF after the stream's end, and an error
// if the daemon's watch broke first (no carrier left, the daemon shut
// down). Bytes of chunks the daemon lost because the watcher fell behind
// are missing without a mark: to see them, use SubscribeStream. ctx
// bounds the whole watch; Close ends it.
func (c *Client) WatchStream(ctx context.Context, id feed.ID, from int64) (io.ReadCloser, error) {
	op := "GET " + streamPath(id)
	var q url.Values
	if from != api.StreamLiveEdge {
		q = url.Values{"from": {strconv.FormatInt(from, 10)}}
	}
	resp, err := c.bytesRequest(ctx, http.MethodGet, streamPath(id), q, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(op, resp)
	}
	return &streamBody{body: resp.Body, op: op}, nil
}

// streamBody is the body of a stream watch, its errors named.
type streamBody struct {
	body io.ReadCloser
	op   string
	n    int64 // bytes read
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("sdk: %s: after %d bytes: %w", b.op, b.n, err)
	}
	return n, err
}

func (b *streamBody) Close() error { return b.body.Close() }

// StreamSubscription delivers the chunks of one live stream in order,
// each once, across reconnections: it keeps the index of the last chunk
// it queued and rewatches from the next one whenever it has to. A jump
// in Index means chunks were lost (the daemon, or this subscription's
// reader, fell behind by more than the daemon keeps). Next must be called
// by one goroutine at a time.
type StreamSubscription struct {
	st *stream[api.StreamChunk]
	id feed.ID
}

// SubscribeStream delivers the chunks of stream id from chunk index from
// (api.StreamLiveEdge: the live edge) as stream.watch notifications. A
// live-edge subscription whose connection drops before its first chunk
// starts again at the live edge.
func (c *Client) SubscribeStream(ctx context.Context, id feed.ID, from int64) (*StreamSubscription, error) {
	if from < api.StreamLiveEdge {
		return nil, fmt.Errorf("sdk: watch stream %s from %d: %w: a chunk index or api.StreamLiveEdge", id.Short(), from, api.ErrInvalidParams)
	}
	// The cursor of chunk i is i+1: 0 is "nothing yet".
	k := streamKind{id: id, live: from == api.StreamLiveEdge}
	st, err := startStream(ctx, c, kind[api.StreamChunk](k), uint64(max(from, 0)))
	if err != nil {
		return nil, err
	}
	return &StreamSubscription{st: st, id: id}, nil
}

// Stream returns the watched stream.
func (s *StreamSubscription) Stream() feed.ID { return s.id }

// Next returns the next chunk; io.EOF after the stream's end. After the
// subscription ended otherwise it returns the reason: ErrClosed after
// Close (or the Client's), an *Error if the server ended it (after the
// chunks queued before that).
func (s *StreamSubscription) Next(ctx context.Context) (api.StreamChunk, error) {
	ch, err := s.st.next(ctx)
	if err == nil && ch.End {
		s.st.end(io.EOF)
		return api.StreamChunk{}, io.EOF
	}
	return ch, err
}

// Close ends the subscription, on the server too.
func (s *StreamSubscription) Close() error { return s.st.close() }

// streamKind is the kind of stream of stream.watch: chunks by index,
// which may skip.
type streamKind struct {
	id   feed.ID
	live bool // start at the live edge while nothing came
}

func (k streamKind) String() string { return "stream " + k.id.Short() }

func (k streamKind) subscribe(cursor uint64) (string, any) {
	p := api.StreamWatchParams{ID: k.id}
	if !k.live || cursor > 0 {
		from := int64(cursor)
		p.From = &from
	}
	return api.MethodStreamWatch, p
}

func (k streamKind) unsubscribeMethod() string { return api.MethodStreamUnwatch }

func (k streamKind) consecutive() bool { return false }

func (k streamKind) item(method string, params json.RawMessage) (api.StreamChunk, uint64, bool) {
	var n api.StreamChunkNotification
	if method != api.NotifyStreamChunk || json.Unmarshal(params, &n) != nil {
		return api.StreamChunk{}, 0, false
	}
	return n.Chunk, n.Chunk.Index + 1, true
}

func (k streamKind) other(string, json.RawMessage) {}
