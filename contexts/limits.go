package contexts

import (
	"context"
	"errors"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// ErrAbuse is the reason Config.Drop is given for a peer past its strikes:
// it kept relaying gossip that failed validation, or more than its rate.
var ErrAbuse = errors.New("contexts: peer broke a limit")

// DefaultGossipPerSec is how many gossip messages a second one peer may
// relay to this node over all contexts; the burst is 10 s worth.
const DefaultGossipPerSec = 200

const gossipBurst = 10 // seconds of GossipPerSec a peer may relay at once

// Limits bounds the gossip one peer may make this node check. Gossip has
// no back-pressure, so a peer over its rate is not slowed but its excess
// is ignored (neither checked, delivered nor relayed). Zero fields mean
// the defaults; a negative rate means no limit.
type Limits struct {
	// GossipPerSec bounds the messages a peer relays a second.
	GossipPerSec float64
	// Policy drops a peer: each message over the rate and each that fails
	// validation (malformed, another context, a bad signature) is a
	// strike (zero fields: limit.DefaultPolicy).
	Policy limit.Policy
}

// newGuard returns the per-peer rate and strikes of l.
func newGuard(l Limits) *limit.Guard[peer.ID] {
	if l.GossipPerSec == 0 {
		l.GossipPerSec = DefaultGossipPerSec
	}
	return limit.NewGuard[peer.ID](l.Policy.OrDefault(), limit.Rate{PerSec: l.GossipPerSec, Burst: gossipBurst * l.GossipPerSec})
}

// guarded applies the limits of the peer that relays a message before v
// checks it: over its rate the message is ignored unchecked; a message
// over the rate or one v rejects is a strike, and a peer past its strikes
// is given to Config.Drop.
func (m *Manager) guarded(v pubsub.ValidatorEx) pubsub.ValidatorEx {
	return func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if from == m.self {
			return v(ctx, from, msg)
		}
		now := time.Now()
		if !m.guard.Allow(now, from, 0, 1) {
			m.offend(now, from, "gossip over its rate")
			return pubsub.ValidationIgnore
		}
		res := v(ctx, from, msg)
		if res == pubsub.ValidationReject {
			m.offend(now, from, "gossip that fails validation")
		}
		return res
	}
}

// offend counts a strike of from; past its strikes it is dropped.
func (m *Manager) offend(now time.Time, from peer.ID, what string) {
	if !m.guard.Strike(now, from) || m.cfg.Drop == nil {
		return
	}
	id, err := feed.IDFromPeerIDBytes([]byte(from))
	if err != nil {
		return // not an ed25519 peer: no contextd node would link with it
	}
	m.cfg.Drop(id, fmt.Errorf("%w: too much %s", ErrAbuse, what))
}
