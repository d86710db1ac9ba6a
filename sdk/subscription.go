package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Subscription delivers the entries of one feed in seq order, without gaps
// or duplicates, across reconnections: it keeps the seq of the last entry
// it queued (its cursor) and resubscribes from there whenever it has to.
// Next must be called by one goroutine at a time.
type Subscription struct {
	st   *stream[api.Entry]
	feed feed.ID
}

// Subscribe delivers every entry of feed id with seq > since, first those
// the node holds, then new ones as they arrive.
func (c *Client) Subscribe(ctx context.Context, id feed.ID, since uint64) (*Subscription, error) {
	st, err := startStream(ctx, c, kind[api.Entry](feedKind{id: id}), since)
	if err != nil {
		return nil, err
	}
	return &Subscription{st: st, feed: id}, nil
}

// Feed returns the subscribed feed.
func (s *Subscription) Feed() feed.ID { return s.feed }

// Cursor returns the seq of the last entry queued for Next.
func (s *Subscription) Cursor() uint64 { return s.st.currentCursor() }

// Next returns the next entry. After the subscription ended it returns the
// reason: ErrClosed after Close (or the Client's), an *Error if the server
// ended it (after the entries queued before that).
func (s *Subscription) Next(ctx context.Context) (api.Entry, error) { return s.st.next(ctx) }

// Close ends the subscription, on the server too.
func (s *Subscription) Close() error { return s.st.close() }

// feedKind is the kind of stream of feed.subscribe: entries by seq.
type feedKind struct{ id feed.ID }

func (k feedKind) String() string { return "feed " + k.id.Short() }

func (k feedKind) subscribe(cursor uint64) (string, any) {
	return api.MethodFeedSubscribe, api.SubscribeParams{ID: k.id, Since: cursor}
}

func (k feedKind) unsubscribeMethod() string { return api.MethodFeedUnsubscribe }

func (k feedKind) consecutive() bool { return true }

func (k feedKind) item(method string, params json.RawMessage) (api.Entry, uint64, bool) {
	var n api.EntryNotification
	if method != api.NotifyFeedEntry || json.Unmarshal(params, &n) != nil {
		return api.Entry{}, 0, false
	}
	return n.Entry, n.Entry.Seq, true
}

func (k feedKind) other(string, json.RawMessage) {}

// kind is what differs between the streams of feed.subscribe,
// context.subscribe and stream.watch. Its methods run in one goroutine at a time.
type kind[T any] interface {
	String() string // for logs
	// subscribe returns the method and params that subscribe from cursor.
	subscribe(cursor uint64) (method string, params any)
	unsubscribeMethod() string
	// consecutive tells that cursors go up by one (feed seqs), so a jump
	// is a gap to resubscribe over; otherwise cursors may skip.
	consecutive() bool
	// item decodes a notification carrying one item and its cursor; ok is
	// false for any other notification.
	item(method string, params json.RawMessage) (it T, cursor uint64, ok bool)
	// other takes the subscription's notifications that are neither items
	// nor its end (context datagrams). It runs in the reader: no blocking.
	other(method string, params json.RawMessage)
}

// subscriber is a subscription as the Client's reader and Close see it.
type subscriber interface {
	// notify handles a notification of server subscription srvID on cn.
	notify(cn *conn, srvID, method string, params json.RawMessage)
	// detach tells that cn dropped.
	detach(cn *conn)
	// end ends the subscription with err.
	end(err error)
}

// stream is the machinery shared by every subscription: items queued for
// next in cursor order, without duplicates, across reconnections. It keeps
// the cursor of the last item it queued and resubscribes from there
// whenever it has to: after a reconnection, a gap (consecutive kinds), or
// when its bounded queue overflowed and the reader has caught up.
type stream[T any] struct {
	c       *Client
	kind    kind[T]
	ctx     context.Context // cancelled when the subscription ends
	cancel  context.CancelFunc
	items   chan T        // queued for next; capacity Config.SubBuffer
	kick    chan struct{} // capacity 1: the manager has work
	drained chan struct{} // capacity 1: next took an item
	managed chan struct{} // closed when the manager returned

	mu     sync.Mutex // guards the fields below
	cn     *conn      // connection the server subscription lives on; nil when detached
	srvID  string     // server subscription ID on cn
	stale  []attachment
	cursor uint64 // cursor of the last item queued
	lag    bool   // detached because items overflowed; resume when drained
	err    error  // why it ended
}

type attachment struct {
	cn    *conn
	srvID string
}

// newStream returns a stream of k from cursor, neither registered nor
// subscribed.
func newStream[T any](c *Client, k kind[T], cursor uint64) *stream[T] {
	ctx, cancel := context.WithCancel(c.ctx)
	return &stream[T]{
		c:       c,
		kind:    k,
		ctx:     ctx,
		cancel:  cancel,
		items:   make(chan T, c.cfg.SubBuffer),
		kick:    make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		managed: make(chan struct{}),
		cursor:  cursor,
	}
}

// startStream subscribes to k from cursor and starts the stream's manager.
func startStream[T any](ctx context.Context, c *Client, k kind[T], cursor uint64) (*stream[T], error) {
	s := newStream(c, k, cursor)
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		s.cancel()
		return nil, ErrClosed
	}
	c.subs[s] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	if err := s.subscribe(ctx); err != nil {
		c.wg.Done()
		s.end(err)
		return nil, err
	}
	go s.manage()
	return s, nil
}

func (s *stream[T]) currentCursor() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}

func (s *stream[T]) next(ctx context.Context) (T, error) {
	var zero T
	select {
	case it := <-s.items:
		s.tookOne()
		return it, nil
	default:
	}
	select {
	case it := <-s.items:
		s.tookOne()
		return it, nil
	case <-s.ctx.Done():
		s.mu.Lock()
		if s.err == nil {
			s.err = ErrClosed
		}
		err := s.err
		s.mu.Unlock()
		if !errors.Is(err, ErrClosed) {
			// Ended by the server: hand out what was queued first.
			select {
			case it := <-s.items:
				return it, nil
			default:
			}
		}
		return zero, err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func (s *stream[T]) tookOne() {
	select {
	case s.drained <- struct{}{}:
	default:
	}
}

func (s *stream[T]) close() error {
	s.end(ErrClosed)
	<-s.managed
	s.mu.Lock()
	att := attachment{s.cn, s.srvID}
	s.cn, s.srvID = nil, ""
	s.mu.Unlock()
	if att.cn != nil {
		s.unsubscribe(att)
	}
	return nil
}

// end marks the stream ended with err (the first reason wins).
func (s *stream[T]) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cancel()
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
}

func (s *stream[T]) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// subscribe asks the server for the items after the cursor. The reply is
// attached in the reader, before the first notification is read.
func (s *stream[T]) subscribe(ctx context.Context) error {
	s.mu.Lock()
	method, params := s.kind.subscribe(s.cursor)
	s.mu.Unlock()
	return s.c.call(ctx, method, params, nil, func(cn *conn, r api.Response) {
		var res api.SubscribeResult
		if r.Error != nil || json.Unmarshal(r.Result, &res) != nil || res.Subscription == "" {
			return
		}
		cn.mu.Lock()
		live := cn.subs != nil
		if live {
			cn.subs[res.Subscription] = s
		}
		cn.mu.Unlock()
		if live {
			s.mu.Lock()
			s.cn, s.srvID = cn, res.Subscription
			s.mu.Unlock()
		}
	})
}

func (s *stream[T]) unsubscribe(a attachment) {
	a.cn.mu.Lock()
	delete(a.cn.subs, a.srvID)
	a.cn.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.c.ctx, writeTimeout)
	defer cancel()
	if cn, err := s.c.current(ctx); err != nil || cn != a.cn {
		return // the server subscription died with its connection
	}
	s.c.call(ctx, s.kind.unsubscribeMethod(), api.UnsubscribeParams{Subscription: a.srvID}, nil, nil)
}

// notify handles a notification of server subscription srvID on cn: an
// item to queue, the end, or another kind of notification. It runs in the
// reader and never blocks; notifications of stale server subscriptions
// are dropped.
func (s *stream[T]) notify(cn *conn, srvID, method string, params json.RawMessage) {
	s.mu.Lock()
	current := s.cn == cn && s.srvID == srvID
	s.mu.Unlock()
	if !current {
		return
	}
	if method == api.NotifyFeedEnd || method == api.NotifyContextEnd || method == api.NotifyStreamEnd {
		var n api.EndNotification
		if err := json.Unmarshal(params, &n); err != nil {
			s.c.log.Debug("sdk: malformed end notification", "method", method, "err", err)
			return
		}
		e := &Error{Method: method, Code: api.CodeInternal, Message: "subscription ended"}
		if n.Error != nil {
			e.Code, e.Message = n.Error.Code, n.Error.Message
		}
		s.end(e)
		return
	}
	if it, cursor, ok := s.kind.item(method, params); ok {
		s.deliver(cn, srvID, it, cursor)
		return
	}
	s.kind.other(method, params)
}

// deliver queues an item the server sent on subscription srvID of cn.
// When the queue is full (or a consecutive kind shows a gap) the stream
// detaches and resumes later from its cursor.
func (s *stream[T]) deliver(cn *conn, srvID string, it T, cursor uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cn != cn || s.srvID != srvID || cursor <= s.cursor {
		return // stale or a duplicate
	}
	if !s.kind.consecutive() || cursor == s.cursor+1 {
		select {
		case s.items <- it:
			s.cursor = cursor
			return
		default:
			s.lag = true
		}
	}
	// Overflow or a gap: drop this server subscription, resume from the
	// cursor.
	s.detachLocked()
}

// detach is called when cn dropped.
func (s *stream[T]) detach(cn *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cn == cn {
		s.cn, s.srvID = nil, ""
		s.poke()
	}
}

func (s *stream[T]) detachLocked() {
	s.stale = append(s.stale, attachment{s.cn, s.srvID})
	s.cn, s.srvID = nil, ""
	s.poke()
}

// manage resubscribes from the cursor whenever the stream is detached,
// once the connection is back and next has drained a lagging queue to
// half.
func (s *stream[T]) manage() {
	defer s.c.wg.Done()
	defer close(s.managed)
	backoff := s.c.cfg.MinBackoff
	for {
		select {
		case <-s.kick:
		case <-s.ctx.Done():
			return
		}
		for {
			s.mu.Lock()
			stale := s.stale
			s.stale = nil
			attached := s.cn != nil
			lag := s.lag
			s.mu.Unlock()
			for _, a := range stale {
				s.unsubscribe(a)
			}
			if attached {
				break
			}
			if lag && len(s.items) > cap(s.items)/2 {
				select {
				case <-s.drained:
					continue
				case <-s.ctx.Done():
					return
				}
			}
			s.mu.Lock()
			s.lag = false
			cursor := s.cursor
			s.mu.Unlock()
			s.c.log.Debug("sdk: resubscribing", "to", s.kind.String(), "since", cursor, "lagged", lag)
			err := s.subscribe(s.ctx)
			switch {
			case s.ctx.Err() != nil:
				return
			case err == nil:
				backoff = s.c.cfg.MinBackoff
				continue // attached (or detached again already)
			case errors.Is(err, ErrDisconnected), errors.Is(err, api.ErrUnavailable):
				// Retry on the next connection, or after a pause.
			default:
				s.end(err)
				return
			}
			s.c.log.Debug("sdk: resubscribe failed", "to", s.kind.String(), "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			backoff = min(2*backoff, s.c.cfg.MaxBackoff)
		}
	}
}
