package memlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

// Errors callers branch on with errors.Is.
var (
	// ErrUnreachable: no open endpoint has the dialled ID.
	ErrUnreachable = errors.New("memlink: no such endpoint")
	// ErrCut: the pair was cut (Dial), or a live link was (its error).
	ErrCut = errors.New("memlink: link cut")
	// ErrClosed: the endpoint was closed, or the session.
	ErrClosed = errors.New("memlink: endpoint closed")
	// ErrReset: a stream was reset by one of its ends.
	ErrReset = errors.New("memlink: stream reset")
)

// Defaults for the zero Config.
const (
	DefaultBuffer        = 4 << 20
	DefaultAcceptBacklog = 32
)

// Config describes every link of a network.
type Config struct {
	// Latency is the one-way delay of each direction.
	Latency time.Duration
	// Bandwidth is each direction's rate in bytes/s, shared by all the
	// streams of a link (0 = unlimited). A Write returns once its bytes
	// have been serialised at this rate.
	Bandwidth int64
	// Buffer bounds the bytes in flight (written, not yet read) per stream
	// and direction, like QUIC's per-stream flow control; Write blocks
	// beyond it (0 = 4 MiB).
	Buffer int
	// AcceptBacklog bounds links waiting for Endpoint.Accept; Dial waits
	// while the callee's backlog is full (0 = 32).
	AcceptBacklog int
	// Link configures both flitlink.Links of every connection.
	Link flitlink.Config
}

func (cfg Config) withDefaults() Config {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.AcceptBacklog <= 0 {
		cfg.AcceptBacklog = DefaultAcceptBacklog
	}
	cfg.Bandwidth = max(cfg.Bandwidth, 0)
	return cfg
}

// conn is one connection between two endpoints: the streams of a pair of
// sessions (side 0 dialled, side 1 accepted).
type conn struct {
	cfg    Config
	ids    [2]feed.ID
	onDone func(*conn) // called once, when both sessions are closed

	mu      sync.Mutex // guards the fields below; taken after a pipe's
	tx      [2]time.Time
	streams map[int]*pipe // live streams by number
	next    int
	accept  [2][]*pipe // streams for side i to accept
	sig     [2]chan struct{}
	err     error   // killed
	closed  [2]bool // session i closed
}

func newConn(cfg Config, a, b feed.ID, onDone func(*conn)) *conn {
	c := &conn{cfg: cfg.withDefaults(), ids: [2]feed.ID{a, b}, onDone: onDone, streams: make(map[int]*pipe)}
	c.newPipeLocked() // stream 0: the control stream
	return c
}

func (c *conn) newPipeLocked() *pipe {
	p := &pipe{c: c, num: c.next}
	c.streams[c.next] = p
	c.next++
	return p
}

// serialise reserves the transmission of n bytes by side i from now and
// returns when it ends.
func (c *conn) serialise(i int, now time.Time, n int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := now
	if c.tx[i].After(start) {
		start = c.tx[i]
	}
	if c.cfg.Bandwidth > 0 {
		start = start.Add(time.Duration(int64(n) * int64(time.Second) / c.cfg.Bandwidth))
	}
	c.tx[i] = start
	return start
}

func (c *conn) notifyLocked(i int) {
	if c.sig[i] != nil {
		close(c.sig[i])
		c.sig[i] = nil
	}
}

// forget drops a finished stream.
func (c *conn) forget(p *pipe) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.streams[p.num] == p {
		delete(c.streams, p.num)
	}
}

// kill breaks every stream of the connection with err.
func (c *conn) kill(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	ps := make([]*pipe, 0, len(c.streams))
	for _, p := range c.streams {
		ps = append(ps, p)
	}
	for _, side := range c.accept {
		ps = append(ps, side...)
	}
	c.accept = [2][]*pipe{}
	c.notifyLocked(0)
	c.notifyLocked(1)
	c.mu.Unlock()
	for _, p := range ps {
		p.kill(err)
	}
}

// session is side i of a conn; it implements flitlink.Session.
type session struct {
	c    *conn
	i    int
	ctrl *end
}

func (c *conn) session(i int) *session {
	return &session{c: c, i: i, ctrl: c.streams[0].end(i)}
}

func (p *pipe) end(i int) *end { return &end{p: p, i: i} }

func (s *session) Control() flitlink.Stream { return s.ctrl }

// OpenStream opens a stream; the peer's AcceptStream returns it at once
// (its bytes arrive with the latency).
func (s *session) OpenStream(ctx context.Context) (flitlink.Stream, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return nil, c.err
	case c.closed[s.i] || c.closed[1-s.i]:
		return nil, ErrClosed
	}
	p := c.newPipeLocked()
	c.accept[1-s.i] = append(c.accept[1-s.i], p)
	c.notifyLocked(1 - s.i)
	return p.end(s.i), nil
}

// AcceptStream returns the next stream the peer opened.
func (s *session) AcceptStream(ctx context.Context) (flitlink.Stream, error) {
	c := s.c
	for {
		c.mu.Lock()
		switch {
		case c.err != nil:
			c.mu.Unlock()
			return nil, c.err
		case c.closed[s.i]:
			c.mu.Unlock()
			return nil, ErrClosed
		case len(c.accept[s.i]) > 0:
			p := c.accept[s.i][0]
			c.accept[s.i] = c.accept[s.i][1:]
			c.mu.Unlock()
			return p.end(s.i), nil
		}
		if c.sig[s.i] == nil {
			c.sig[s.i] = make(chan struct{})
		}
		sig := c.sig[s.i]
		c.mu.Unlock()
		select {
		case <-sig:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close resets the control stream and ends the session.
func (s *session) Close() error {
	c := s.c
	c.mu.Lock()
	if c.closed[s.i] {
		c.mu.Unlock()
		return nil
	}
	c.closed[s.i] = true
	pending := c.accept[s.i]
	c.accept[s.i] = nil
	c.notifyLocked(s.i)
	both := c.closed[0] && c.closed[1]
	c.mu.Unlock()
	s.ctrl.Reset()
	for _, p := range pending {
		p.kill(ErrReset)
	}
	if both && c.onDone != nil {
		c.onDone(c)
	}
	return nil
}

// stall holds back the bytes side i writes on stream num until until.
func (c *conn) stall(i, num int, until time.Time) {
	c.mu.Lock()
	p := c.streams[num]
	c.mu.Unlock()
	if p != nil {
		p.stall(i, until)
	}
}

// NewPair returns the two sessions of a new connection between a and b
// (a dialled), outside any Network: for tests that drive one side by hand.
func NewPair(cfg Config, a, b feed.ID) (dialer, acceptor flitlink.Session) {
	c := newConn(cfg, a, b, nil)
	return c.session(0), c.session(1)
}

// Network is an in-process network of endpoints keyed by feed.ID. It is safe
// for concurrent use and cheap per endpoint (no goroutines of its own).
type Network struct {
	cfg Config

	mu        sync.Mutex // guards endpoints, cuts and every Endpoint's conns and closed
	endpoints map[feed.ID]*Endpoint
	cuts      map[[2]feed.ID]struct{}
}

// NewNetwork returns an empty network.
func NewNetwork(cfg Config) *Network {
	return &Network{
		cfg:       cfg.withDefaults(),
		endpoints: make(map[feed.ID]*Endpoint),
		cuts:      make(map[[2]feed.ID]struct{}),
	}
}

// Endpoint returns the open endpoint for id, creating it if needed (also
// after an earlier one for id was closed).
func (n *Network) Endpoint(id feed.ID) *Endpoint {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e := n.endpoints[id]; e != nil {
		return e
	}
	e := &Endpoint{
		n:       n,
		id:      id,
		backlog: make(chan *flitlink.Link, n.cfg.AcceptBacklog),
		done:    make(chan struct{}),
		conns:   make(map[*conn]struct{}),
	}
	n.endpoints[id] = e
	return e
}

func pairKey(a, b feed.ID) [2]feed.ID {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	return [2]feed.ID{a, b}
}

// between returns the live connections between a and b.
func (n *Network) between(a, b feed.ID) []*conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	var cs []*conn
	if e := n.endpoints[a]; e != nil {
		for c := range e.conns {
			if pairKey(c.ids[0], c.ids[1]) == pairKey(a, b) {
				cs = append(cs, c)
			}
		}
	}
	return cs
}

// Cut kills every live link between a and b at once (both sides fail with
// ErrCut, bytes in flight are lost); Dial between them fails until Heal.
func (n *Network) Cut(a, b feed.ID) {
	n.mu.Lock()
	n.cuts[pairKey(a, b)] = struct{}{}
	n.mu.Unlock()
	for _, c := range n.between(a, b) {
		c.kill(fmt.Errorf("%w: %s–%s", ErrCut, a.Short(), b.Short()))
	}
}

// Heal lets a and b dial each other again.
func (n *Network) Heal(a, b feed.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cuts, pairKey(a, b))
}

// Stall holds back, for d from now, the bytes that from writes to to on
// stream number stream of every live link between them, as a lost packet
// would: bytes already in flight and bytes written meanwhile arrive at the
// earliest when d is over; other streams are not affected. Streams are
// numbered per link in the order they were opened, from either side; 0 is
// the link's control stream.
func (n *Network) Stall(from, to feed.ID, stream int, d time.Duration) {
	until := time.Now().Add(d)
	for _, c := range n.between(from, to) {
		i := 0
		if c.ids[1] == from {
			i = 1
		}
		c.stall(i, stream, until)
	}
}

// untrack forgets a connection whose sessions are both closed.
func (n *Network) untrack(c *conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range c.ids {
		if e := n.endpoints[id]; e != nil {
			delete(e.conns, c)
		}
	}
}

// Endpoint is one node's attachment to the network.
type Endpoint struct {
	n       *Network
	id      feed.ID
	backlog chan *flitlink.Link
	done    chan struct{} // closed by Close

	conns  map[*conn]struct{} // guarded by n.mu: live connections with a side here
	closed bool               // guarded by n.mu
}

// ID returns the endpoint's identity.
func (e *Endpoint) ID() feed.ID { return e.id }

// Dial connects to the endpoint to and returns the initiator's Link; the
// callee gets the other Link from Accept. Dial itself takes no simulated
// time (the link's hello pays the latency); it waits while the callee's
// accept backlog is full.
func (e *Endpoint) Dial(ctx context.Context, to feed.ID) (*flitlink.Link, error) {
	n := e.n
	n.mu.Lock()
	t := n.endpoints[to]
	_, cut := n.cuts[pairKey(e.id, to)]
	switch {
	case e.closed:
		n.mu.Unlock()
		return nil, ErrClosed
	case cut:
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s–%s", ErrCut, e.id.Short(), to.Short())
	case t == nil:
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, to.Short())
	}
	c := newConn(n.cfg, e.id, to, n.untrack)
	e.conns[c] = struct{}{}
	t.conns[c] = struct{}{}
	n.mu.Unlock()

	callee := flitlink.NewLink(c.session(1), e.id, false, n.cfg.Link)
	var err error
	select {
	case t.backlog <- callee:
		return flitlink.NewLink(c.session(0), to, true, n.cfg.Link), nil
	case <-t.done:
		err = fmt.Errorf("%w: %s", ErrUnreachable, to.Short())
	case <-ctx.Done():
		err = ctx.Err()
	}
	callee.Close()
	c.session(0).Close()
	return nil, err
}

// Accept returns the next link another endpoint dialled to this one.
func (e *Endpoint) Accept(ctx context.Context) (*flitlink.Link, error) {
	select {
	case l := <-e.backlog:
		return l, nil
	case <-e.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close detaches the endpoint, like a node going away: its live links die
// (ErrClosed), links not yet accepted are closed, Accept returns ErrClosed
// and Dials to its ID fail until Network.Endpoint creates a new one.
func (e *Endpoint) Close() error {
	n := e.n
	n.mu.Lock()
	if e.closed {
		n.mu.Unlock()
		return nil
	}
	e.closed = true
	if n.endpoints[e.id] == e {
		delete(n.endpoints, e.id)
	}
	doomed := make([]*conn, 0, len(e.conns))
	for c := range e.conns {
		doomed = append(doomed, c)
	}
	n.mu.Unlock()
	close(e.done)
	for _, c := range doomed {
		c.kill(fmt.Errorf("%w: %s", ErrClosed, e.id.Short()))
	}
	for {
		select {
		case l := <-e.backlog:
			l.Close()
		default:
			return nil
		}
	}
}
