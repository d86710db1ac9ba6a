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
	// ErrClosed: the endpoint was closed.
	ErrClosed = errors.New("memlink: endpoint closed")
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
	// Bandwidth is each direction's rate in bytes/s (0 = unlimited). A
	// Write returns once its bytes have been serialised at this rate.
	Bandwidth int64
	// Buffer bounds the bytes in flight (written, not yet read) per
	// direction; Write blocks beyond it (0 = 4 MiB).
	Buffer int
	// AcceptBacklog bounds links waiting for Endpoint.Accept; Dial waits
	// while the callee's backlog is full (0 = 32).
	AcceptBacklog int
	// Link configures both flitlink.Links of every connection.
	Link flitlink.Config
}

// Network is an in-process network of endpoints keyed by feed.ID. It is safe
// for concurrent use and cheap per endpoint (no goroutines of its own).
type Network struct {
	cfg Config

	mu        sync.Mutex // guards endpoints, cuts and every Endpoint's pipes and closed
	endpoints map[feed.ID]*Endpoint
	cuts      map[[2]feed.ID]struct{}
}

// NewNetwork returns an empty network.
func NewNetwork(cfg Config) *Network {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.AcceptBacklog <= 0 {
		cfg.AcceptBacklog = DefaultAcceptBacklog
	}
	if cfg.Bandwidth < 0 {
		cfg.Bandwidth = 0
	}
	return &Network{
		cfg:       cfg,
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
		pipes:   make(map[*pipe]struct{}),
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

// Cut kills every live link between a and b at once (both sides fail with
// ErrCut, bytes in flight are lost); Dial between them fails until Heal.
func (n *Network) Cut(a, b feed.ID) {
	n.mu.Lock()
	n.cuts[pairKey(a, b)] = struct{}{}
	var doomed []*pipe
	if e := n.endpoints[a]; e != nil {
		for p := range e.pipes {
			if pairKey(p.ids[0], p.ids[1]) == pairKey(a, b) {
				doomed = append(doomed, p)
			}
		}
	}
	n.mu.Unlock()
	for _, p := range doomed {
		p.kill(fmt.Errorf("%w: %s–%s", ErrCut, a.Short(), b.Short()))
	}
}

// Heal lets a and b dial each other again.
func (n *Network) Heal(a, b feed.ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cuts, pairKey(a, b))
}

// untrack forgets a pipe whose ends are both closed.
func (n *Network) untrack(p *pipe) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, id := range p.ids {
		if e := n.endpoints[id]; e != nil {
			delete(e.pipes, p)
		}
	}
}

// Endpoint is one node's attachment to the network.
type Endpoint struct {
	n       *Network
	id      feed.ID
	backlog chan *flitlink.Link
	done    chan struct{} // closed by Close

	pipes  map[*pipe]struct{} // guarded by n.mu: live pipes with an end here
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
	p := newPipe(n.cfg, e.id, to, n.untrack)
	e.pipes[p] = struct{}{}
	t.pipes[p] = struct{}{}
	n.mu.Unlock()

	callee := flitlink.NewLink(p.end(1), e.id, false, n.cfg.Link)
	select {
	case t.backlog <- callee:
	case <-t.done:
		callee.Close()
		p.end(0).Close()
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, to.Short())
	case <-ctx.Done():
		callee.Close()
		p.end(0).Close()
		return nil, ctx.Err()
	}
	return flitlink.NewLink(p.end(0), to, true, n.cfg.Link), nil
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
	doomed := make([]*pipe, 0, len(e.pipes))
	for p := range e.pipes {
		doomed = append(doomed, p)
	}
	n.mu.Unlock()
	close(e.done)
	for _, p := range doomed {
		p.kill(fmt.Errorf("%w: %s", ErrClosed, e.id.Short()))
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
