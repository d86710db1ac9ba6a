package node

import (
	"errors"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/live"
	"github.com/contextd/contextd/swarm"
)

// Limits are the per-peer abuse limits: what one peer may make the node
// store or do per second, checked before the work is done. A peer over a
// rate is slowed (EBT and swarm: its messages wait, and the stream's flow control
// makes it wait too) or has its excess ignored (gossip); offences are
// strikes (invalid or unrequested entries and chunks, gossip over its
// rate or failing validation, bad API tokens); a peer past its strikes,
// or one that breaks a protocol (a flitlink frame over its bounds, a
// malformed EBT or swarm message), is dropped: its link and connections
// are closed and it is refused for the cool-down. Each drop is logged at
// Info. Zero fields mean the defaults (DefaultLimits); a negative rate
// means no limit. The RPC fields are the API server's, which `contextd
// run` passes on (rpc.Config.MaxConns, MaxConnsPerAddr and AuthPolicy,
// whose zero values are the API server's defaults).
type Limits struct {
	NotesPerSec         float64 `json:"notes_per_sec,omitempty"`          // EBT notes a second; burst max_feeds_per_peer
	EntriesPerSec       float64 `json:"entries_per_sec,omitempty"`        // EBT entries a second; burst 10 s worth
	MaxFeedsPerPeer     int     `json:"max_feeds_per_peer,omitempty"`     // distinct feeds a peer may name in one EBT session
	ChunkRequestsPerSec float64 `json:"chunk_requests_per_sec,omitempty"` // swarm chunks requested a second; burst 1 s worth
	GossipPerSec        float64 `json:"gossip_per_sec,omitempty"`         // context gossip messages relayed a second; burst 10 s worth
	Strikes             int     `json:"strikes,omitempty"`                // offences tolerated; one more drops the peer
	ForgiveSeconds      float64 `json:"forgive_seconds,omitempty"`        // one strike is forgiven per this many seconds
	CooldownSeconds     float64 `json:"cooldown_seconds,omitempty"`       // a dropped peer is refused this long
	RPCConns            int     `json:"rpc_conns,omitempty"`              // open API connections, all addresses together (0: 1024)
	RPCConnsPerAddr     int     `json:"rpc_conns_per_addr,omitempty"`     // open API connections (and so WebSockets) per remote address (0: 256)
}

// DefaultLimits returns the default of every limit.
func DefaultLimits() Limits {
	var l Limits
	l.fill()
	return l
}

// maxBans bounds the peers refused at once (limit.Bans).
const maxBans = 4096

func (l *Limits) fill() {
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setI := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setF(&l.NotesPerSec, ebt.DefaultNotesPerSec)
	setF(&l.EntriesPerSec, ebt.DefaultEntriesPerSec)
	setI(&l.MaxFeedsPerPeer, ebt.DefaultMaxFeeds)
	setF(&l.ChunkRequestsPerSec, swarm.DefaultRequestsPerSec)
	setF(&l.GossipPerSec, contexts.DefaultGossipPerSec)
	setI(&l.Strikes, limit.DefaultPolicy.Strikes)
	if l.ForgiveSeconds <= 0 {
		l.ForgiveSeconds = limit.DefaultPolicy.Forgive.Seconds()
	}
	if l.CooldownSeconds <= 0 {
		l.CooldownSeconds = limit.DefaultPolicy.Cooldown.Seconds()
	}
}

// Policy is the strikes and cool-down policy of l.
func (l Limits) Policy() limit.Policy {
	l.fill()
	return limit.Policy{
		Strikes:  l.Strikes,
		Forgive:  time.Duration(l.ForgiveSeconds * float64(time.Second)),
		Cooldown: time.Duration(l.CooldownSeconds * float64(time.Second)),
	}
}

func (l Limits) ebt() ebt.Limits {
	return ebt.Limits{NotesPerSec: l.NotesPerSec, EntriesPerSec: l.EntriesPerSec, MaxFeeds: l.MaxFeedsPerPeer, Policy: l.Policy()}
}

func (l Limits) swarm() swarm.Limits {
	return swarm.Limits{RequestsPerSec: l.ChunkRequestsPerSec, Policy: l.Policy()}
}

func (l Limits) contexts() contexts.Limits {
	return contexts.Limits{GossipPerSec: l.GossipPerSec, Policy: l.Policy()}
}

// abusive reports whether a session or link that ended with err was ended
// by the peer's abuse: past its strikes, or breaking a protocol.
func abusive(err error) bool {
	for _, e := range []error{ebt.ErrAbuse, ebt.ErrProtocol, swarm.ErrAbuse, swarm.ErrProtocol, swarm.ErrMalformed, flitlink.ErrProtocol} {
		if errors.Is(err, e) {
			return true
		}
	}
	return live.Abusive(err)
}

// dropIfAbusive drops p if err, why its session or link ended, says it
// abused the node.
func (n *Node) dropIfAbusive(p feed.ID, err error) {
	if abusive(err) {
		n.drop(p, err)
	}
}

// drop refuses peer p for the cool-down and closes its link and
// connections. It is logged at Info once per drop; it never blocks for
// long (contexts calls it from gossip validation).
func (n *Node) drop(p feed.ID, reason error) {
	now := time.Now()
	if !n.bans.Ban(now, p, now.Add(n.cfg.Limits.Policy().Cooldown)) {
		return
	}
	n.log.Info("peer dropped", "peer", p, "reason", reason, "refused_for", n.cfg.Limits.Policy().Cooldown)
	n.mu.Lock()
	l := n.peers[p]
	n.mu.Unlock()
	if l != nil {
		l.Close()
	}
	if n.host != nil {
		n.host.Network().ClosePeer(peer.ID(p.PeerIDBytes()))
	}
}

// refused reports whether p was dropped and its cool-down has not ended.
func (n *Node) refused(p feed.ID) bool { return n.bans.Banned(time.Now(), p) }

// gater is the libp2p connection gater that refuses dropped peers during
// their cool-down, before any stream is opened.
type gater struct{ n *Node }

func (g gater) allow(p peer.ID) bool {
	id, err := feed.IDFromPeerIDBytes([]byte(p))
	return err != nil || !g.n.refused(id) // a non-ed25519 peer is no contextd node; others refuse it
}

func (g gater) InterceptPeerDial(p peer.ID) bool                        { return g.allow(p) }
func (g gater) InterceptAddrDial(p peer.ID, _ multiaddr.Multiaddr) bool { return g.allow(p) }
func (g gater) InterceptAccept(network.ConnMultiaddrs) bool             { return true }
func (g gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allow(p)
}
func (g gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
