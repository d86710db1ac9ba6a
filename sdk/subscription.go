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
	c       *Client
	feed    feed.ID
	ctx     context.Context // cancelled when the subscription ends
	cancel  context.CancelFunc
	entries chan api.Entry // queued for Next; capacity Config.SubBuffer
	kick    chan struct{}  // capacity 1: the manager has work
	drained chan struct{}  // capacity 1: Next took an entry
	managed chan struct{}  // closed when the manager returned

	mu     sync.Mutex // guards the fields below
	cn     *conn      // connection the server subscription lives on; nil when detached
	srvID  string     // server subscription ID on cn
	stale  []attachment
	cursor uint64 // seq of the last entry queued
	lag    bool   // detached because entries overflowed; resume when drained
	err    error  // why it ended
}

type attachment struct {
	cn    *conn
	srvID string
}

// Subscribe delivers every entry of feed id with seq > since, first those
// the node holds, then new ones as they arrive.
func (c *Client) Subscribe(ctx context.Context, id feed.ID, since uint64) (*Subscription, error) {
	sctx, cancel := context.WithCancel(c.ctx)
	s := &Subscription{
		c:       c,
		feed:    id,
		ctx:     sctx,
		cancel:  cancel,
		entries: make(chan api.Entry, c.cfg.SubBuffer),
		kick:    make(chan struct{}, 1),
		drained: make(chan struct{}, 1),
		managed: make(chan struct{}),
		cursor:  since,
	}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		cancel()
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

// Feed returns the subscribed feed.
func (s *Subscription) Feed() feed.ID { return s.feed }

// Cursor returns the seq of the last entry queued for Next.
func (s *Subscription) Cursor() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}

// Next returns the next entry. After the subscription ended it returns the
// reason: ErrClosed after Close (or the Client's), an *Error if the server
// ended it (after the entries queued before that).
func (s *Subscription) Next(ctx context.Context) (api.Entry, error) {
	select {
	case e := <-s.entries:
		s.tookOne()
		return e, nil
	default:
	}
	select {
	case e := <-s.entries:
		s.tookOne()
		return e, nil
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
			case e := <-s.entries:
				return e, nil
			default:
			}
		}
		return api.Entry{}, err
	case <-ctx.Done():
		return api.Entry{}, ctx.Err()
	}
}

func (s *Subscription) tookOne() {
	select {
	case s.drained <- struct{}{}:
	default:
	}
}

// Close ends the subscription, on the server too.
func (s *Subscription) Close() error {
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

// end marks the subscription ended with err (the first reason wins).
func (s *Subscription) end(err error) {
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

func (s *Subscription) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// subscribe asks the server for the entries after the cursor. The reply is
// attached in the reader, before the first notification is read.
func (s *Subscription) subscribe(ctx context.Context) error {
	s.mu.Lock()
	since := s.cursor
	s.mu.Unlock()
	return s.c.call(ctx, api.MethodFeedSubscribe, api.SubscribeParams{ID: s.feed, Since: since}, nil, func(cn *conn, r api.Response) {
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

func (s *Subscription) unsubscribe(a attachment) {
	a.cn.mu.Lock()
	delete(a.cn.subs, a.srvID)
	a.cn.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.c.ctx, writeTimeout)
	defer cancel()
	if cn, err := s.c.current(ctx); err != nil || cn != a.cn {
		return // the server subscription died with its connection
	}
	s.c.call(ctx, api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: a.srvID}, nil, nil)
}

// deliver queues an entry the server sent on subscription srvID of cn. It
// runs in the reader and never blocks: when the queue is full the
// subscription detaches and resumes later from its cursor.
func (s *Subscription) deliver(cn *conn, srvID string, e api.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cn != cn || s.srvID != srvID || e.Seq <= s.cursor {
		return // stale or a duplicate
	}
	if e.Seq == s.cursor+1 {
		select {
		case s.entries <- e:
			s.cursor = e.Seq
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
func (s *Subscription) detach(cn *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cn == cn {
		s.cn, s.srvID = nil, ""
		s.poke()
	}
}

func (s *Subscription) detachLocked() {
	s.stale = append(s.stale, attachment{s.cn, s.srvID})
	s.cn, s.srvID = nil, ""
	s.poke()
}

// manage resubscribes from the cursor whenever the subscription is
// detached, once the connection is back and Next has drained a lagging
// queue to half.
func (s *Subscription) manage() {
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
			if lag && len(s.entries) > cap(s.entries)/2 {
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
			s.c.log.Debug("sdk: resubscribing", "feed", s.feed.Short(), "since", cursor, "lagged", lag)
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
			s.c.log.Debug("sdk: resubscribe failed", "feed", s.feed.Short(), "err", err)
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
