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

// subscription is one feed.subscribe, context.subscribe or stream.watch.
// Its goroutine (pump, pumpStream) is the only writer of its
// notifications.
type subscription struct {
	id      string
	src     subject
	dgs     <-chan api.Datagram // the source's live datagrams, from before the response; nil for none
	release func()              // releases what the node holds for it (datagrams, a stream watch)
	ctx     context.Context     // cancelled by unsubscribe or the connection's end
	cancel  context.CancelFunc
	ready   chan struct{} // closed once the subscribe response was written
	done    chan struct{} // closed when pump returned
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
	// r's context is the server's with the caller (see ServeHTTP).
	ctx, cancel := context.WithCancel(r.Context())
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

// start registers a subscription to src from cursor since and starts its
// pump, which waits for cl.after (the response written) before it sends.
func (c *wsConn) start(src source, since uint64, cl *call) (string, error) {
	dgs, stopDg := src.datagrams() // now, so that none sent after the response is missed
	sub := &subscription{src: src, dgs: dgs, release: stopDg}
	return c.add(sub, cl, func() { c.pump(sub, src, since) })
}

// add registers sub (its src, dgs and release set) and runs pump in a
// goroutine of the connection; pump must wait for sub.ready (the
// response written) before it sends. On error it releases sub. Every
// kind of subscription shares the connection's MaxSubs.
func (c *wsConn) add(sub *subscription, cl *call, pump func()) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		sub.release()
		return "", api.ErrUnavailable
	}
	if len(c.subs) >= c.s.cfg.MaxSubs {
		sub.release()
		return "", api.NewError(api.CodeLimit, "too many subscriptions on this connection (limit %d)", c.s.cfg.MaxSubs)
	}
	c.nextSub++
	sub.id = "s" + strconv.FormatUint(c.nextSub, 10)
	sub.ctx, sub.cancel = context.WithCancel(c.ctx)
	sub.ready = make(chan struct{})
	sub.done = make(chan struct{})
	c.subs[sub.id] = sub
	cl.after = func() { close(sub.ready) }
	c.wg.Add(1)
	go pump()
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

// subject is what every subscription has: a name and the notification
// that ends it.
type subject interface {
	fmt.Stringer       // for logs and errors: "feed <id>", "context <id>", "stream <id>"
	endMethod() string // the notification ending the subscription
}

// source is what a feed or context subscription delivers: items the node
// keeps in cursor order, read in batches, plus (for contexts) live
// datagrams.
type source interface {
	subject
	// read returns the notification params of subscription sub for the
	// items with cursor > after, ascending, and the cursor it read up to
	// (at least that of the last item); more tells that the next read may
	// return more at once. With an error, items holds what is valid before
	// it: the pump sends them, then ends the subscription.
	read(sub string, after uint64, limit int) (items []item, upTo uint64, more bool, err error)
	// watch is the node's coalescing signal that read may return more.
	watch() (changed <-chan struct{}, stop func())
	// datagrams returns the live datagrams to forward (nil for none).
	datagrams() (dgs <-chan api.Datagram, stop func())
	itemMethod() string // the notification of one item
}

// item is one notification of a subscription and its cursor.
type item struct {
	cursor uint64
	params any
}

// feedSource is the source of feed.subscribe: a feed's entries, by seq.
type feedSource struct {
	node Node
	id   feed.ID
}

func (f feedSource) String() string { return "feed " + f.id.Short() }

func (f feedSource) read(sub string, after uint64, limit int) ([]item, uint64, bool, error) {
	entries, err := f.node.Entries(f.id, after+1, limit)
	if err != nil && !errors.Is(err, api.ErrUnknownFeed) {
		return nil, after, false, err
	}
	items := make([]item, 0, len(entries))
	cursor := after
	for _, e := range entries {
		if e.Seq <= cursor {
			continue
		}
		if e.Seq != cursor+1 {
			return items, cursor, false, api.NewError(api.CodeInternal, "node returned seq %d after %d", e.Seq, cursor)
		}
		items = append(items, item{cursor: e.Seq, params: api.EntryNotification{Subscription: sub, Entry: api.FromFeed(e)}})
		cursor = e.Seq
	}
	return items, cursor, len(entries) >= limit, nil
}

func (f feedSource) watch() (<-chan struct{}, func()) { return f.node.Watch(f.id) }

func (f feedSource) datagrams() (<-chan api.Datagram, func()) { return nil, func() {} }

func (f feedSource) itemMethod() string { return api.NotifyFeedEntry }

func (f feedSource) endMethod() string { return api.NotifyFeedEnd }

// pump delivers the items of sub's source with cursor > since in order:
// it reads the node's store by cursor, writes one notification at a time
// and, once it has caught up, waits on the node's watch channel, forwarding
// the source's live datagrams (if any) meanwhile: those that came since the
// subscribe call, less what the node's buffer dropped. Being the one writer of
// the subscription, it keeps every notification of it in order and none
// after unsubscribe.
func (c *wsConn) pump(sub *subscription, src source, since uint64) {
	defer c.wg.Done()
	defer close(sub.done)
	defer sub.cancel()
	defer sub.release()
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("rpc: subscription panicked", "of", sub.src, "panic", p, "stack", string(debug.Stack()))
			c.end(sub, api.NewError(api.CodeInternal, "internal error in subscription"))
		}
	}()
	select {
	case <-sub.ready:
	case <-sub.ctx.Done():
		return
	}
	changed, stop := src.watch()
	defer stop()
	dgs := sub.dgs
	cursor := since
	for cursor < math.MaxUint64 {
		items, upTo, more, err := src.read(sub.id, cursor, c.s.cfg.SubBatch)
		for _, it := range items {
			if it.cursor <= cursor {
				continue
			}
			if sub.ctx.Err() != nil {
				return
			}
			if !c.notify(src.itemMethod(), it.params) {
				return
			}
			cursor = it.cursor
		}
		if err != nil {
			c.end(sub, toError(err))
			return
		}
		cursor = max(cursor, upTo)
		if more {
			continue
		}
		if !c.wait(sub, changed, &dgs) {
			return
		}
	}
	<-sub.ctx.Done()
}

// wait blocks until the node signals a change of sub's source, forwarding
// live datagrams from *dgs meanwhile (a closed *dgs is set to nil: the node
// stopped them, messages go on). It returns false when the subscription is
// over.
func (c *wsConn) wait(sub *subscription, changed <-chan struct{}, dgs *<-chan api.Datagram) bool {
	for {
		select {
		case _, ok := <-changed:
			if !ok {
				c.end(sub, api.NewError(api.CodeUnavailable, "the node stopped watching %s", sub.src))
				return false
			}
			return true
		case dg, ok := <-*dgs:
			if !ok {
				*dgs = nil
				continue
			}
			if !c.notify(api.NotifyContextDatagram, api.DatagramNotification{Subscription: sub.id, Datagram: dg}) {
				return false
			}
		case <-sub.ctx.Done():
			return false
		}
	}
}

// notify writes one notification; on failure it drops the connection and
// returns false.
func (c *wsConn) notify(method string, params any) bool {
	msg, _ := json.Marshal(params)
	if err := c.write(notification(method, msg)); err != nil {
		c.cancel()
		return false
	}
	return true
}

// end removes a subscription the server gives up on and tells the client
// with the source's end notification (unless the client unsubscribed
// already).
func (c *wsConn) end(sub *subscription, e *api.Error) {
	c.mu.Lock()
	_, ok := c.subs[sub.id]
	delete(c.subs, sub.id)
	c.mu.Unlock()
	if !ok || sub.ctx.Err() != nil {
		return
	}
	c.s.log.Debug("rpc: subscription ended", "of", sub.src, "err", e)
	c.notify(sub.src.endMethod(), api.EndNotification{Subscription: sub.id, Error: e})
}

func notification(method string, params json.RawMessage) []byte {
	out, _ := json.Marshal(api.Notification{JSONRPC: api.Version, Method: method, Params: params})
	return out
}
