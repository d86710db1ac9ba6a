package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	libp2pswarm "github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

// This file keeps the node's links alive: when the link to a peer the node
// still wants dies (a cut path, a peer restarting, a silent peer that
// flitlink's keepalive gave up on), the node redials that peer with
// backoff until a link is back, whichever side makes it. Replication
// sessions start again on the new link (serveLink) and running fetches
// take a new session there (sources.go).
//
// A peer is wanted once the node linked with it, dialed or accepted, until
// it is blocked or dropped for abuse, or the node shuts down. Links the node
// closed itself in favour of another (startLink's tie-break) are not
// redialed: the other one lives.

// Redial timing. The first attempt after a link that lived redialStable or
// longer is immediate (a cut path should move to another within the
// keepalive's dead time plus one dial); later attempts wait redialMin,
// doubling to redialMax, each jittered by ±25%. A link that dies sooner
// than redialStable keeps the backoff where it was, so that a peer that
// keeps refusing the node is dialed less and less often.
const (
	redialMin    = 250 * time.Millisecond
	redialMax    = 30 * time.Second
	redialStable = 10 * time.Second
	// redialTimeout bounds one attempt: connect, find the peer in the
	// DHT, open the link.
	redialTimeout = 10 * time.Second
	// maxRedials bounds the peers the node remembers redial state for
	// (redialing, or relinked lately); when full, the relinked ones are
	// forgotten, and a link that dies beyond maxRedials peers redialing
	// is not redialed.
	maxRedials = 1024
	// maxRedialAddrs bounds the addresses remembered per peer to redial.
	maxRedialAddrs = 16
	// redialYoungConn is the age below which a connection to the peer
	// is left open by a redial: it may be the peer's own redial, made
	// when it noticed the same death (both ends notice within a
	// keepalive of each other).
	redialYoungConn = time.Second
)

// redialState is the node's memory of one peer it redials.
type redialState struct {
	running bool          // a redial goroutine runs for the peer
	backoff time.Duration // the wait before the next attempt; 0: none
	// addrs are the peer's addresses when its link died, kept because
	// the peerstore forgets those of peers not connected after a while.
	addrs []multiaddr.Multiaddr
	// since is when the link that died last started: the connections
	// opened until then may be the dead path's. A redial closes those and
	// any older than redialYoungConn; a younger one may be the peer's own
	// redial, which must be left alone.
	since time.Time
}

// linkMetrics count link losses and redials.
type linkMetrics struct {
	lost    prometheus.Counter
	redials prometheus.Counter
	relinks prometheus.Counter
}

func newLinkMetrics(reg prometheus.Registerer) *linkMetrics {
	m := &linkMetrics{
		lost: prometheus.NewCounter(prometheus.CounterOpts{Name: "contextd_node_links_lost_total",
			Help: "Links to wanted peers that died (cut path, peer gone or restarted); each starts a redial."}),
		redials: prometheus.NewCounter(prometheus.CounterOpts{Name: "contextd_node_redials_total",
			Help: "Redial attempts to peers whose link died."}),
		relinks: prometheus.NewCounter(prometheus.CounterOpts{Name: "contextd_node_relinks_total",
			Help: "Peers linked again after their link died, by a redial or by the peer dialing back."}),
	}
	reg.MustRegister(m.lost, m.redials, m.relinks)
	return m
}

// linkLost is called by serveLink when l, the peer's current link, has
// died after living for lived: it starts redialing the peer unless the
// node no longer wants it.
func (n *Node) linkLost(l *flitlink.Link, lived time.Duration) {
	p := l.Remote()
	if n.ctx.Err() != nil || !n.wanted(p) {
		return
	}
	n.metrics.node.lost.Inc()
	pid := peer.ID(p.PeerIDBytes())
	addrs := n.host.Peerstore().Addrs(pid)
	n.mu.Lock()
	st := n.redials[p]
	if st == nil && len(n.redials) >= maxRedials {
		// Forget the peers relinked meanwhile: only their backoff is lost.
		for q, qs := range n.redials {
			if !qs.running {
				delete(n.redials, q)
			}
		}
	}
	if st == nil {
		if len(n.redials) >= maxRedials {
			n.mu.Unlock()
			n.log.Info("link lost; not redialing: too many peers to redial", "peer", p, "limit", maxRedials, "err", l.Err())
			return
		}
		st = &redialState{}
		n.redials[p] = st
	}
	if lived >= redialStable {
		st.backoff = 0
	}
	if len(addrs) > 0 {
		st.addrs = addrs[:min(len(addrs), maxRedialAddrs)]
	}
	st.since = time.Now().Add(-lived)
	running := st.running
	st.running = true
	n.mu.Unlock()
	n.log.Info("link lost; redialing", "peer", p, "lived", lived.Round(time.Millisecond), "err", l.Err())
	if !running {
		n.wg.Go(func() { n.redialLoop(p) })
	}
}

// wanted reports whether the node still wants a link to p: it is neither
// dropped for abuse nor blocked.
func (n *Node) wanted(p feed.ID) bool {
	if n.refused(p) {
		return false
	}
	rel, err := n.store.Relation(n.id, p)
	return err == nil && rel != feed.RelBlock
}

// linked returns the live link to p, if any.
func (n *Node) linked(p feed.ID) *flitlink.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.linkedLocked(p)
}

// linkedLocked is linked with n.mu held.
func (n *Node) linkedLocked(p feed.ID) *flitlink.Link {
	if l := n.peers[p]; l != nil && !isDone(l) {
		return l
	}
	return nil
}

// redialLoop redials p until a link to it is back (dialed by either side),
// the node stops wanting it, or the node shuts down.
func (n *Node) redialLoop(p feed.ID) {
	stop := func(relinked bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if !relinked {
			delete(n.redials, p)
			return
		}
		st := n.redials[p]
		st.running = false
		// The next loss waits unless this link lives redialStable.
		st.backoff = nextBackoff(st.backoff)
	}
	for attempt := 1; ; attempt++ {
		n.mu.Lock()
		st := *n.redials[p]
		n.mu.Unlock()
		wait := st.backoff
		if wait > 0 {
			t := time.NewTimer(jitter(wait))
			select {
			case <-t.C:
			case <-n.ctx.Done():
				t.Stop()
				stop(false)
				return
			}
		}
		switch {
		case n.ctx.Err() != nil || !n.wanted(p):
			stop(false)
			return
		case n.linked(p) != nil:
			n.metrics.node.relinks.Inc()
			n.log.Info("peer relinked: it dialed back", "peer", p, "attempts", attempt-1)
			stop(true)
			return
		}
		n.metrics.node.redials.Inc()
		ctx, cancel := context.WithTimeout(n.ctx, redialTimeout)
		_, err := n.redial(ctx, p, st.addrs, st.since)
		cancel()
		if err == nil {
			n.metrics.node.relinks.Inc()
			n.log.Info("peer relinked", "peer", p, "attempts", attempt)
			stop(true)
			return
		}
		n.mu.Lock()
		next := nextBackoff(n.redials[p].backoff)
		n.redials[p].backoff = next
		n.mu.Unlock()
		lvl := "redial failed; retrying"
		if attempt == 1 {
			n.log.Info(lvl, "peer", p, "attempt", attempt, "next_in", next, "err", err)
		} else {
			n.log.Debug(lvl, "peer", p, "attempt", attempt, "next_in", next, "err", err)
		}
	}
}

// nextBackoff returns the wait after one of d: twice as long, from
// redialMin up to redialMax.
func nextBackoff(d time.Duration) time.Duration {
	return min(max(2*d, redialMin), redialMax)
}

// jitter returns d moved by up to ±25%, so that peers that lost links at
// once do not redial in step.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// redial makes one attempt to link p again: it closes the connections to p
// opened by the time its dead link started (since), one of which carried
// it (a cut path leaves a QUIC connection that libp2p would otherwise
// reuse until it times out), and those older than redialYoungConn (a
// duplicate that an earlier tie-break left without a link may ride the
// same cut path), connects with every address known for p,
// and, if that fails, with the addresses the DHT finds (it fails at once
// when the node knows no DHT peer).
func (n *Node) redial(ctx context.Context, p feed.ID, addrs []multiaddr.Multiaddr, since time.Time) (*flitlink.Link, error) {
	pid := peer.ID(p.PeerIDBytes())
	if young := time.Now().Add(-redialYoungConn); since.Before(young) {
		since = young
	}
	for _, c := range n.host.Network().ConnsToPeer(pid) {
		if !c.Stat().Opened.After(since) {
			c.Close()
		}
	}
	if sw, ok := n.host.Network().(*libp2pswarm.Swarm); ok {
		sw.Backoff().Clear(pid) // an earlier attempt's failure must not stop this one
	}
	l, err := n.dial(ctx, p, peer.AddrInfo{ID: pid, Addrs: addrs})
	if err == nil || ctx.Err() != nil {
		return l, err
	}
	ai, ferr := n.dht.FindPeer(ctx, p)
	if ferr != nil {
		return nil, errors.Join(err, fmt.Errorf("node: find %s in the dht: %w", p, ferr))
	}
	return n.dial(ctx, p, ai)
}

// dial returns the live link to p, or connects to ai (addresses added to
// the peerstore's), opens a link and adopts it. One dial to a peer runs
// at a time: a second waits for the first and takes its link, so that the
// links to one peer are made one after another and both ends order them
// alike (startLink keeps the newer of two dialed by the same side).
func (n *Node) dial(ctx context.Context, p feed.ID, ai peer.AddrInfo) (*flitlink.Link, error) {
	for {
		n.mu.Lock()
		if l := n.linkedLocked(p); l != nil {
			n.mu.Unlock()
			return l, nil
		}
		if busy := n.dialing[p]; busy != nil {
			n.mu.Unlock()
			select {
			case <-busy:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("node: link to %s: %w", p, ctx.Err())
			}
		}
		busy := make(chan struct{})
		n.dialing[p] = busy
		n.mu.Unlock()
		l, err := n.dialOnce(ctx, p, ai)
		n.mu.Lock()
		delete(n.dialing, p)
		n.mu.Unlock()
		close(busy)
		return l, err
	}
}

// dialOnce connects to ai, opens a link to p and adopts it.
func (n *Node) dialOnce(ctx context.Context, p feed.ID, ai peer.AddrInfo) (*flitlink.Link, error) {
	if err := n.host.Connect(ctx, ai); err != nil {
		return nil, fmt.Errorf("node: connect %s: %w", ai, err)
	}
	l, err := n.links.Dial(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("node: open link to %s: %w", p, err)
	}
	n.startLink(l)
	if l = n.linked(p); l == nil { // startLink may keep a link the peer dialed instead
		return nil, fmt.Errorf("node: link to %s refused", p)
	}
	return l, nil
}

// awaitLink waits until the node has a live link to p other than old, and
// returns it.
func (n *Node) awaitLink(ctx context.Context, p feed.ID, old *flitlink.Link) (*flitlink.Link, error) {
	sig, stop := n.linkSig.watch(p)
	defer stop()
	for {
		if l := n.linked(p); l != nil && l != old {
			return l, nil
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return nil, fmt.Errorf("node: wait for a new link to %s: %w", p, ctx.Err())
		}
	}
}
