package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/swarm"
)

// This file finds the peers a fetch gets an object from (linked peers, DHT
// providers, peers a PEX names) and keeps, per object, the peers this node
// recently had a swarm/1 session with, which its own PEX names.

// Swarm peer bounds.
const (
	// maxPexSources bounds the peers one fetch probes because a PEX named
	// them (besides maxSources linked peers and maxSources providers).
	maxPexSources = 8
	// maxSwarmPeers is how many recent session peers the node remembers
	// per object, and maxSwarmObjects for how many objects.
	maxSwarmPeers   = 16
	maxSwarmObjects = 256
	// swarmPeerTTL is how long a session peer is named after its session.
	swarmPeerTTL = time.Hour
	// maxRejoins bounds the sessions one fetch takes again after their
	// link died, and rejoinWait how long it waits for each peer's new
	// link (the node redials it); swarm.DefaultIdle is as long, so a
	// fetch left without a session waits no longer than it would anyway.
	maxRejoins = 16
	rejoinWait = swarm.DefaultIdle
	// rejoinGrace is how long a session Fetch dropped (stalled) may
	// wait for its link to be found dead: a cut path stalls requests
	// before the link's keepalive gives up on it.
	rejoinGrace = 5 * time.Second
)

// probed is one source after its probe: a session ready for Fetch with
// the object's Info, or why not.
type probed struct {
	peer peer.ID
	link *flitlink.Link // the link the session runs on
	info object.Info
	conn swarm.Conn
	err  error
}

// sources finds and probes the sources of one fetch. Every probe's result
// comes on results; a session handed on counts as in use until it is
// closed. results closes once discovery is over and no probe or session is
// left, so the fetch knows no more will come.
type sources struct {
	n       *Node
	id      cid.Cid
	ctx     context.Context // the fetch's: ending it ends every probe
	results chan probed

	mu      sync.Mutex // guards the fields below
	seen    map[peer.ID]bool
	pexed   int // peers probed because a PEX named them
	rejoins int // sessions taken again on a peer's new link
	busy    int // discovery, running probes and open sessions
	closed  bool
}

// findSources starts probing up to maxSources linked peers (who may hold
// id without having announced it) and up to maxSources DHT providers of
// id, all at once.
func (n *Node) findSources(ctx context.Context, id cid.Cid) *sources {
	s := &sources{
		n: n, id: id, ctx: ctx, results: make(chan probed),
		seen: map[peer.ID]bool{n.host.ID(): true},
		busy: 1, // discovery
	}
	go func() {
		defer s.release()
		for i, p := range n.Peers() {
			if i == maxSources {
				break
			}
			s.try(peer.AddrInfo{ID: peer.ID(p.ID.PeerIDBytes())})
		}
		dctx, cancel := context.WithTimeout(ctx, dhtTimeout)
		defer cancel()
		for ai := range n.dht.StreamProviders(dctx, id, maxSources) {
			s.try(ai)
		}
	}()
	return s
}

// try probes ai unless it was tried already or no more will be taken.
func (s *sources) try(ai peer.AddrInfo) {
	s.mu.Lock()
	if s.seen[ai.ID] || s.closed {
		s.mu.Unlock()
		return
	}
	s.seen[ai.ID] = true
	s.busy++
	s.mu.Unlock()
	// The probe runs in the new goroutine: it may dial for seconds, and
	// the fetch loop (PEX) and the DHT walk call try.
	go func() { s.deliver(s.n.probe(s.ctx, ai, s.id)) }()
}

// deliver hands a probe's result to the fetch. It holds the probe's hold,
// which passes to the session if there is one: it is released when the
// session ends, unless the session is taken again on a new link (rejoin).
func (s *sources) deliver(r probed) {
	if r.err == nil {
		r.conn = &heldConn{Conn: r.conn, release: func() { s.ended(r.link) }}
		s.n.swarmPeer(s.id, r.peer)
	} else {
		defer s.release()
	}
	select {
	case s.results <- r:
	case <-s.ctx.Done():
		if r.conn != nil {
			r.conn.Close()
		}
	}
}

// ended is called once the session on link l is closed. If the link died
// (or dies within rejoinGrace) while the fetch runs, the session is taken
// again on the peer's next link (the node redials p; either side may
// make it): the fetch goes on from the chunks it holds, with the hold
// passed on. Otherwise the hold is released.
func (s *sources) ended(l *flitlink.Link) {
	go func() {
		t := time.NewTimer(rejoinGrace)
		defer t.Stop()
		select {
		case <-l.Done():
		case <-t.C:
			s.release() // the fetch dropped a peer whose link lives
			return
		case <-s.ctx.Done():
			s.release()
			return
		}
		s.mu.Lock()
		ok := s.rejoins < maxRejoins
		if ok {
			s.rejoins++
		}
		s.mu.Unlock()
		if !ok {
			s.release()
			return
		}
		s.deliver(s.rejoin(l))
	}()
}

// rejoin waits for a link to old's peer other than old and starts a
// session for the object there; if that link dies too (both ends may
// redial at once, and one of their links is closed), on the next, within
// rejoinWait.
func (s *sources) rejoin(old *flitlink.Link) probed {
	ctx, cancel := context.WithTimeout(s.ctx, rejoinWait)
	defer cancel()
	id := old.Remote()
	for {
		l, err := s.n.awaitLink(ctx, id, old)
		if err != nil {
			return probed{peer: peer.ID(id.PeerIDBytes()), err: err}
		}
		s.n.log.Info("object fetch: taking the source again on its new link", "cid", s.id, "peer", id)
		r := s.n.probeOn(ctx, l, s.id)
		if r.err == nil || !isDone(l) {
			return r
		}
		old = l
	}
}

// release ends one probe, session or the discovery.
func (s *sources) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy--; s.busy == 0 {
		s.closed = true
		close(s.results)
	}
}

// pex probes the peers a PEX named, up to maxPexSources in all. Fetch
// calls it from its loop, with the session that sent the PEX still open,
// so results is open too.
func (s *sources) pex(peers []swarm.PexPeer) {
	for _, p := range peers {
		s.mu.Lock()
		full := s.pexed == maxPexSources
		if !full {
			s.pexed++
		}
		s.mu.Unlock()
		if full {
			return
		}
		ai := peer.AddrInfo{ID: peer.ID(p.ID.PeerIDBytes())}
		if a, err := multiaddr.NewMultiaddrBytes(p.Addr); err == nil && len(p.Addr) > 0 {
			ai.Addrs = []multiaddr.Multiaddr{a}
		}
		s.try(ai)
	}
}

// sessions returns the channel Fetch takes its sessions from: first, then
// every later probe's session as it succeeds. It closes when results does.
func (s *sources) sessions(first swarm.Conn) <-chan swarm.Conn {
	// The buffer holds every session a fetch may find or take again, so
	// the forwarder never blocks.
	conns := make(chan swarm.Conn, 2*maxSources+maxPexSources+maxRejoins)
	conns <- first
	go func() {
		defer close(conns)
		for r := range s.results {
			if r.err != nil {
				s.n.log.Debug("object source unusable", "cid", s.id, "peer", r.peer, "err", r.err)
				continue
			}
			conns <- r.conn // Fetch drops a seeder whose size differs
		}
	}()
	return conns
}

// heldConn is a session that releases its hold on the sources when it is
// closed (by Fetch, or by the fetch's end).
type heldConn struct {
	swarm.Conn
	once    sync.Once
	release func()
}

func (c *heldConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// probe reaches one source and starts a session for id there.
func (n *Node) probe(ctx context.Context, ai peer.AddrInfo, id cid.Cid) probed {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	l, err := n.link(ctx, ai)
	if err != nil {
		return probed{peer: ai.ID, err: err}
	}
	return n.probeOn(ctx, l, id)
}

// probeOn starts a session for id on the link l.
func (n *Node) probeOn(ctx context.Context, l *flitlink.Link, id cid.Cid) probed {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r := probed{peer: peer.ID(l.Remote().PeerIDBytes()), link: l}
	c, err := l.Open(ctx, swarm.Service, flitlink.Data)
	if err != nil {
		r.err = fmt.Errorf("node: open swarm circuit: %w", err)
		return r
	}
	r.info, r.conn, r.err = swarm.Probe(ctx, c, id)
	return r
}

// swarmPeers is the node's memory of who it had swarm/1 sessions with,
// per object (id.KeyString()): peer → when the last one started.
type swarmPeers struct {
	mu    sync.Mutex
	peers map[string]map[peer.ID]time.Time
}

// swarmPeer records a session with p about id, forgetting the oldest peer
// (and the oldest object) beyond the bounds.
func (n *Node) swarmPeer(id cid.Cid, p peer.ID) {
	sp := &n.recent
	sp.mu.Lock()
	defer sp.mu.Unlock()
	k := id.KeyString()
	ps := sp.peers[k]
	if ps == nil {
		if len(sp.peers) == maxSwarmObjects {
			delete(sp.peers, oldestObject(sp.peers))
		}
		ps = map[peer.ID]time.Time{}
		sp.peers[k] = ps
	}
	if _, ok := ps[p]; !ok && len(ps) == maxSwarmPeers {
		delete(ps, oldest(ps))
	}
	ps[p] = time.Now()
}

// pexPeers returns the peers of id's swarm to name to p: those with a
// session in the last swarmPeerTTL, with an address each if the node has
// one.
func (n *Node) pexPeers(id cid.Cid, p feed.ID) []swarm.PexPeer {
	n.recent.mu.Lock()
	var ids []peer.ID
	for q, at := range n.recent.peers[id.KeyString()] {
		if time.Since(at) < swarmPeerTTL {
			ids = append(ids, q)
		}
	}
	n.recent.mu.Unlock()
	var out []swarm.PexPeer
	for _, q := range ids {
		fid, err := feed.IDFromPeerIDBytes([]byte(q))
		if err != nil || fid == p {
			continue
		}
		pp := swarm.PexPeer{ID: fid}
		for _, a := range n.host.Peerstore().Addrs(q) {
			if b := a.Bytes(); len(b) <= swarm.MaxAddrSize {
				pp.Addr = b
				break
			}
		}
		out = append(out, pp)
	}
	return out
}

func oldest(ps map[peer.ID]time.Time) peer.ID {
	var o peer.ID
	for p, at := range ps {
		if o == "" || at.Before(ps[o]) {
			o = p
		}
	}
	return o
}

func oldestObject(objs map[string]map[peer.ID]time.Time) string {
	var o string
	var ot time.Time
	for k, ps := range objs {
		if at := ps[oldest(ps)]; o == "" || at.Before(ot) {
			o, ot = k, at
		}
	}
	return o
}
