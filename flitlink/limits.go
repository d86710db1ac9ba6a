package flitlink

import (
	"fmt"
	"time"

	"github.com/contextd/contextd/internal/limit"
)

// A side that closed a circuit discards what the peer still sends on it,
// granting credit as if it had read it (a half-close: the peer may not
// have seen the CLOSE yet). An honest peer stops once it sees the CLOSE,
// having sent at most about a window more; a hostile one could make this
// side read and discard without end. So what the peer sends to circuits
// this side closed is bounded per link: discardWindows windows at once,
// one window a second on average. Past it the peer breaks the protocol
// (ErrProtocol) and the link dies; the node then drops the peer.
const discardWindows = 16

// newDiscard returns the discard budget of a link configured by cfg.
func newDiscard(cfg Config, now time.Time) limit.Bucket {
	w := float64(cfg.Window)
	return limit.NewBucket(limit.Rate{PerSec: w, Burst: discardWindows * w}, now)
}

// discardLocked counts cost bytes the peer sent on circuit id, which this
// side closed.
func (l *Link) discardLocked(id uint32, cost int) error {
	if l.discard.Allow(time.Now(), float64(cost)) {
		return nil
	}
	return fmt.Errorf("%w: the peer keeps sending on circuits this side closed (circuit %d); the limit is %d bytes at once, %d a second",
		ErrProtocol, id, discardWindows*l.cfg.Window, l.cfg.Window)
}
