package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// wsConn is one WebSocket connection. The goroutine of serveWS owns it and
// returns only after every goroutine it started (calls, subscriptions,
// pinger) returned.
type wsConn struct {
	s      *Server
	ws     *websocket.Conn
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc
	wg     sync.WaitGroup // calls, subscriptions and the pinger
	calls  chan struct{}  // semaphore of the calls in flight

	mu      sync.Mutex // guards subs and nextSub
	subs    map[string]*subscription
	nextSub uint64
}

// subscription is one feed.subscribe. Its goroutine (pump) is the only
// writer of its notifications.
type subscription struct {
	id     string
	feed   feed.ID
	ctx    context.Context // cancelled by unsubscribe or the connection's end
	cancel context.CancelFunc
	ready  chan struct{} // closed once the subscribe response was written
	done   chan struct{} // closed when pump returned
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	full := s.conns >= s.cfg.MaxConnections
	if !full {
		s.conns++
	}
	s.mu.Unlock()
	if full {
		writeHTTPError(w, http.StatusServiceUnavailable, api.CodeLimit,
			fmt.Sprintf("too many WebSocket connections (limit %d)", s.cfg.MaxConnections))
		return
	}
	defer func() {
		s.mu.Lock()
		s.conns--
		s.mu.Unlock()
	}()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.cfg.OriginPatterns})
	if err != nil {
		s.log.Debug("rpc: websocket accept", "remote", r.RemoteAddr, "err", err)
		return // Accept wrote the HTTP error
	}
	ws.SetReadLimit(s.cfg.MaxRequestSize)
	ctx, cancel := context.WithCancel(s.ctx)
	c := &wsConn{
		s:      s,
		ws:     ws,
		ctx:    ctx,
		cancel: cancel,
		calls:  make(chan struct{}, s.cfg.MaxCalls),
		subs:   make(map[string]*subscription),
	}
	s.log.Debug("rpc: websocket open", "remote", r.RemoteAddr)
	err = c.run()
	s.log.Debug("rpc: websocket closed", "remote", r.RemoteAddr, "err", err)
}

// run reads requests until the connection ends, then tears it down.
func (c *wsConn) run() error {
	defer c.wg.Wait()
	defer c.ws.CloseNow()
	defer c.cancel()

	c.wg.Add(1)
	go c.pinger()

	for {
		_, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return err
		}
		select {
		case c.calls <- struct{}{}:
		case <-c.ctx.Done():
			return c.ctx.Err()
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() { <-c.calls }()
			resp, cl := c.s.handle(c.ctx, c, data)
			if resp != nil {
				if err := c.write(resp); err != nil {
					c.cancel()
					return
				}
			}
			if cl.after != nil {
				cl.after()
			}
		}()
	}
}

// write sends one message, dropping the connection if it cannot within
// WriteTimeout.
func (c *wsConn) write(msg []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.WriteTimeout)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, msg)
}

// pinger closes a connection whose client stopped answering pings.
func (c *wsConn) pinger() {
	defer c.wg.Done()
	t := time.NewTicker(c.s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if len(c.calls) == cap(c.calls) {
			// The reader waits for a call slot, so no pong would be read;
			// the calls are bounded by CallTimeout.
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.PingInterval)
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			c.cancel()
			return
		}
	}
}

// subscribe registers a subscription to id from since and starts its pump,
// which waits for cl.after (the response written) before it sends.
func (c *wsConn) subscribe(id feed.ID, since uint64, cl *call) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		return "", api.ErrUnavailable
	}
	if len(c.subs) >= c.s.cfg.MaxSubs {
		return "", api.NewError(api.CodeLimit, "too many subscriptions on this connection (limit %d)", c.s.cfg.MaxSubs)
	}
	c.nextSub++
	ctx, cancel := context.WithCancel(c.ctx)
	sub := &subscription{
		id:     "s" + strconv.FormatUint(c.nextSub, 10),
		feed:   id,
		ctx:    ctx,
		cancel: cancel,
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.subs[sub.id] = sub
	cl.after = func() { close(sub.ready) }
	c.wg.Add(1)
	go c.pump(sub, since)
	return sub.id, nil
}

// unsubscribe ends a subscription and waits for its pump, so that no
// notification of it follows the response.
func (c *wsConn) unsubscribe(id string) error {
	c.mu.Lock()
	sub, ok := c.subs[id]
	delete(c.subs, id)
	c.mu.Unlock()
	if !ok {
		return api.NewError(api.CodeNotFound, "no subscription %q on this connection", truncate(id))
	}
	sub.cancel()
	<-sub.done
	return nil
}

// pump delivers the entries of sub's feed with seq > since in order: it
// reads the node's store by cursor, writes one notification at a time and
// waits on the node's Watch channel once it has caught up.
func (c *wsConn) pump(sub *subscription, since uint64) {
	defer c.wg.Done()
	defer close(sub.done)
	defer sub.cancel()
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("rpc: subscription panicked", "feed", sub.feed.Short(), "panic", p, "stack", string(debug.Stack()))
			c.end(sub, api.NewError(api.CodeInternal, "internal error in subscription"))
		}
	}()
	select {
	case <-sub.ready:
	case <-sub.ctx.Done():
		return
	}
	changed, stop := c.s.node.Watch(sub.feed)
	defer stop()
	cursor := since
	for cursor < math.MaxUint64 {
		entries, err := c.s.node.Entries(sub.feed, cursor+1, c.s.cfg.SubBatch)
		if err != nil && !errors.Is(err, api.ErrUnknownFeed) {
			c.end(sub, toError(err))
			return
		}
		for _, e := range entries {
			if e.Seq <= cursor {
				continue
			}
			if e.Seq != cursor+1 {
				c.end(sub, api.NewError(api.CodeInternal, "node returned seq %d after %d", e.Seq, cursor))
				return
			}
			if sub.ctx.Err() != nil {
				return
			}
			msg, _ := json.Marshal(api.EntryNotification{Subscription: sub.id, Entry: api.FromFeed(e)})
			if err := c.write(notification(api.NotifyFeedEntry, msg)); err != nil {
				c.cancel()
				return
			}
			cursor = e.Seq
		}
		if len(entries) >= c.s.cfg.SubBatch {
			continue
		}
		select {
		case _, ok := <-changed:
			if !ok {
				c.end(sub, api.NewError(api.CodeUnavailable, "the node stopped watching the feed"))
				return
			}
		case <-sub.ctx.Done():
			return
		}
	}
	<-sub.ctx.Done()
}

// end removes a subscription the server gives up on and tells the client
// with a feed.end notification (unless the client unsubscribed already).
func (c *wsConn) end(sub *subscription, e *api.Error) {
	c.mu.Lock()
	_, ok := c.subs[sub.id]
	delete(c.subs, sub.id)
	c.mu.Unlock()
	if !ok || sub.ctx.Err() != nil {
		return
	}
	c.s.log.Debug("rpc: subscription ended", "feed", sub.feed.Short(), "err", e)
	msg, _ := json.Marshal(api.EndNotification{Subscription: sub.id, Error: e})
	if err := c.write(notification(api.NotifyFeedEnd, msg)); err != nil {
		c.cancel()
	}
}

func notification(method string, params json.RawMessage) []byte {
	out, _ := json.Marshal(api.Notification{JSONRPC: api.Version, Method: method, Params: params})
	return out
}
