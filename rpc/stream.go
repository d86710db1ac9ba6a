package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Live streams: the stream.* methods, and the stream endpoints that move
// a stream's bytes over HTTP like the object endpoints (objects.go,
// docs/protocols/rpc.md "Live streams"):
//
//	POST /streams/ID         the body is written to the stream as it arrives
//	GET  /streams/ID[?from=N] → the stream's verified bytes until its END
//
// Both last as long as the stream, so neither takes an object transfer
// slot nor the server's read or write timeout: the client going away ends
// them, and each write to a GET client must complete within WriteTimeout.

// streamPiece is the most a POST to a stream endpoint hands the node at
// once; it writes what each read of the body yields, so a slow pipe's
// bytes go out as they come.
const streamPiece = 64 << 10

func streamOpen(ctx context.Context, s *Server) (any, error) {
	id, err := s.node.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	return api.StreamOpenResult{ID: id}, nil
}

func streamWrite(ctx context.Context, s *Server, _ *call, p api.StreamWriteParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	if len(p.Data) > api.MaxStreamWrite {
		return nil, api.NewError(api.CodeTooLarge, "data is %d bytes, the limit is %d; POST larger data to %s/ID", len(p.Data), api.MaxStreamWrite, api.StreamsPath)
	}
	if err := s.node.WriteStream(ctx, p.ID, p.Data); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func streamClose(ctx context.Context, s *Server, _ *call, p api.StreamIDParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	if err := s.node.CloseStream(ctx, p.ID); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func streamStats(ctx context.Context, s *Server) (any, error) {
	return s.node.StreamStats(), nil
}

// streamFrom checks a start position: a chunk index or api.StreamLiveEdge.
func streamFrom(from int64) error {
	if from < api.StreamLiveEdge {
		return api.NewError(api.CodeInvalidParams, "field \"from\": %d is neither a chunk index nor %d (the live edge)", from, api.StreamLiveEdge)
	}
	return nil
}

// streamWatch subscribes the connection to a stream: stream.chunk
// notifications until the one with End, or a stream.end with the error
// that cut the watch.
func streamWatch(ctx context.Context, s *Server, cl *call, p api.StreamWatchParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	from := api.StreamLiveEdge
	if p.From != nil {
		from = *p.From
	}
	if err := streamFrom(from); err != nil {
		return nil, err
	}
	// The watch lasts as long as the connection, or until unwatched.
	chunks, stop, err := s.node.WatchStream(cl.conn.ctx, p.ID, from)
	if err != nil {
		return nil, err
	}
	sub := &subscription{src: streamSubject(p.ID), release: stop}
	id, err := cl.conn.add(sub, cl, func() { cl.conn.pumpStream(sub, chunks) })
	if err != nil {
		return nil, err
	}
	return api.SubscribeResult{Subscription: id}, nil
}

// streamSubject names a stream.watch subscription.
type streamSubject feed.ID

func (st streamSubject) String() string { return "stream " + feed.ID(st).Short() }

func (st streamSubject) endMethod() string { return api.NotifyStreamEnd }

// pumpStream forwards the chunks of a stream watch as stream.chunk
// notifications, once the subscribe response is written, until the one
// with End (then the subscription is gone) or the watch fails (stream.end
// with the error).
func (c *wsConn) pumpStream(sub *subscription, chunks <-chan api.StreamChunk) {
	defer c.wg.Done()
	defer close(sub.done)
	defer sub.cancel()
	defer sub.release()
	select {
	case <-sub.ready:
	case <-sub.ctx.Done():
		return
	}
	for {
		select {
		case ch, ok := <-chunks:
			if !ok {
				c.end(sub, api.NewError(api.CodeUnavailable, "the node stopped watching %s before its end", sub.src))
				return
			}
			if ch.End { // the last notification: the subscription is gone once the client has it
				c.mu.Lock()
				delete(c.subs, sub.id)
				c.mu.Unlock()
			}
			if !c.notify(api.NotifyStreamChunk, api.StreamChunkNotification{Subscription: sub.id, Chunk: ch}) || ch.End {
				return
			}
		case <-sub.ctx.Done():
			return
		}
	}
}

// isStreamsPath reports whether p is below api.StreamsPath.
func isStreamsPath(p string) bool {
	return strings.HasPrefix(p, api.StreamsPath+"/")
}

// serveStreams authenticates and routes a request for a stream endpoint.
func (s *Server) serveStreams(w http.ResponseWriter, r *http.Request) {
	var method string
	switch r.Method {
	case http.MethodPost:
		method = api.MethodStreamWrite
	case http.MethodGet:
		method = api.MethodStreamWatch
	default:
		w.Header().Set("Allow", "GET, POST")
		writeHTTPError(w, http.StatusMethodNotAllowed, api.CodeInvalidRequest,
			"POST bytes to "+api.StreamsPath+"/ID to publish them, GET it to watch the stream")
		return
	}
	ctx, release, ok := s.authorizeBytes(w, r, method, api.StreamsPath)
	if !ok {
		return
	}
	defer release()
	id, err := feed.ParseID(strings.TrimPrefix(r.URL.Path, api.StreamsPath+"/"))
	if err != nil {
		s.bytesError(w, "stream", api.NewError(api.CodeInvalidParams, "stream ID: %v", err))
		return
	}
	if r.Method == http.MethodPost {
		s.servePublish(ctx, w, r, id)
	} else {
		s.serveWatch(ctx, w, r, id)
	}
}

// servePublish writes the request body to stream id as it arrives, each
// read as it comes, until its end; the stream stays open.
func (s *Server) servePublish(ctx context.Context, w http.ResponseWriter, r *http.Request, id feed.ID) {
	// An empty write checks that the node publishes the stream before
	// anything is read.
	if err := s.node.WriteStream(ctx, id, nil); err != nil {
		s.bytesError(w, "stream", fmt.Errorf("write stream %s: %w", id.Short(), err))
		return
	}
	rc := http.NewResponseController(w)
	// A pipe may pause for as long as it likes: the client going away
	// ends the request, not a deadline.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	buf := make([]byte, streamPiece)
	var total int64
	for {
		n, rerr := r.Body.Read(buf)
		if n > 0 {
			if err := s.node.WriteStream(ctx, id, buf[:n]); err != nil {
				s.bytesError(w, "stream", fmt.Errorf("write stream %s after %d bytes: %w", id.Short(), total, err))
				return
			}
			total += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			s.log.Debug("rpc: stream publish cut short", "stream", id, "written", total, "err", rerr)
			return // the client is gone: nobody reads an answer
		}
	}
	rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	s.log.Debug("rpc: stream published", "stream", id, "bytes", total)
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("{}"))
}

// serveWatch streams the bytes of stream id from ?from= (default: the
// live edge), flushing each chunk, until the stream's END. A watch the
// node ends otherwise is cut short (the client sees a broken body).
func (s *Server) serveWatch(ctx context.Context, w http.ResponseWriter, r *http.Request, id feed.ID) {
	from := api.StreamLiveEdge
	if v := r.URL.Query().Get("from"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err == nil {
			err = streamFrom(n)
		} else {
			err = api.NewError(api.CodeInvalidParams, "from=%q is not a chunk index", truncate(v))
		}
		if err != nil {
			s.bytesError(w, "stream", err)
			return
		}
		from = n
	}
	rc := http.NewResponseController(w)
	// The watch lasts as long as the stream: clear the server's read and
	// write deadlines, which run from the request's start; each write
	// gets its own below.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	chunks, stop, err := s.node.WatchStream(ctx, id, from)
	if err != nil {
		s.bytesError(w, "stream", err)
		return
	}
	defer stop()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	out := &idleWriter{w: w, rc: rc, idle: s.cfg.WriteTimeout}
	var sent int64
	for ch := range chunks {
		if _, err := out.Write(ch.Data); err != nil {
			s.log.Debug("rpc: stream watcher gone", "stream", id, "sent", sent, "err", err)
			return
		}
		sent += int64(len(ch.Data))
		if ch.End {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
	if ctx.Err() == nil {
		s.log.Info("rpc: stream watch cut short", "stream", id, "sent", sent)
	}
	panic(http.ErrAbortHandler) // closes the connection: the client sees the broken body
}
