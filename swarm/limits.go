package swarm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// ErrAbuse ends the session of a peer past its strikes (Limits.Policy):
// it kept sending a seeder chunks or hashes nobody asked for. The node
// drops such a peer for a cool-down.
var ErrAbuse = errors.New("swarm: peer broke a limit")

// DefaultRequestsPerSec is how many chunks a second one peer may request
// of this node over all its sessions: 1 GiB/s of 16 KiB chunks (a line-rate fetch is never slowed); the
// burst is one second's worth.
const DefaultRequestsPerSec = 65536

// Limits bounds what one peer may make a seeder do. Zero fields mean the
// defaults; a negative rate means no limit.
type Limits struct {
	// RequestsPerSec bounds the chunks a peer requests a second. A peer
	// over it is slowed: the session's reader waits before it queues the
	// request, and the circuit stream's flow control makes the peer wait too.
	RequestsPerSec float64
	// Policy drops a peer that keeps sending DATA or INTEGRITY to a seeder
	// (one strike per message; zero fields: limit.DefaultPolicy).
	Policy limit.Policy
}

// Limiter keeps each peer's limits across its sessions. Safe for
// concurrent use.
type Limiter struct {
	g *limit.Guard[feed.ID]
}

// NewLimiter returns a Limiter of l.
func NewLimiter(l Limits) *Limiter {
	if l.RequestsPerSec == 0 {
		l.RequestsPerSec = DefaultRequestsPerSec
	}
	l.Policy = l.Policy.OrDefault()
	return &Limiter{g: limit.NewGuard[feed.ID](l.Policy, limit.Rate{PerSec: l.RequestsPerSec, Burst: l.RequestsPerSec})}
}

// admit waits while the peer is over its rate of requests for the chunks
// of rs. Without a Limiter it does nothing.
func (s *server) admit(ctx context.Context, rs []Range) error {
	if s.lim == nil {
		return nil
	}
	var n uint64
	for _, r := range rs {
		n += r.Len()
	}
	return limit.Wait(ctx, s.lim.g.Take(time.Now(), s.peer, 0, float64(n)))
}

// offend counts an unrequested message of type t: past its strikes the
// peer is dropped (ErrAbuse). Without a Limiter it does nothing.
func (s *server) offend(t MsgType) error {
	if s.lim == nil || !s.lim.g.Strike(time.Now(), s.peer) {
		return nil
	}
	return fmt.Errorf("%w: too many unrequested %v messages", ErrAbuse, t)
}
