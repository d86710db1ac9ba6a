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
)

// probed is one source after its probe: a session ready for Fetch with
// the object's Info, or why not.
type probed struct {
	peer peer.ID
	info swarm.Info
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

	mu     sync.Mutex // guards the fields below
	seen   map[peer.ID]bool
	pexed  int // peers probed because a PEX named them
	busy   int // discovery, running probes and open sessions
	closed bool
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
	go func() {
		r := s.n.probe(s.ctx, ai, s.id)
		if r.err == nil {
			// The probe's hold passes to the session.
			r.conn = &heldConn{Conn: r.conn, release: s.release}
			s.n.swarmPeer(s.id, ai.ID)
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
	}()
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
	// The buffer holds every session a fetch may find, so the forwarder
	// never blocks.
	conns := make(chan swarm.Conn, 2*maxSources+maxPexSources)
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
	r := probed{peer: ai.ID}
	l, err := n.link(ctx, ai)
	if err != nil {
		r.err = err
		return r
	}
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
