package flitlink

import (
	"context"
	"math"
	"sync"
	"time"
)

// Bulk pacing: a delay-based controller in the spirit of LEDBAT (RFC 6817)
// and LEDBAT++ (draft-irtf-iccrg-ledbat-plus-plus) that holds bulk (Video
// and Data) just below the path's bottleneck, so that the bottleneck's
// queue, which every class shares, stays near QueueTarget instead of
// filling until the transport's loss-based congestion control backs off.
//
// Each poll of the session's RTT samples gives
//
//	base   = the lowest RTT over the last baseBuckets minutes (LEDBAT's base history)
//	cur    = the lowest RTT polled over the last filterWindow (LEDBAT's current-delay filter)
//	qdelay = cur − base, the queueing delay on the path; e = qdelay − target
//
// and the pacer releases bulk at rate = R·(1 − e/D), clamped to [R/4, 2R]:
// R is the controller's estimate of the bottleneck's rate, and
// D = max(2·base + 4·target, minDamping) the delay over which the rate
// falls by R once the queue passes the target (the proportional part,
// which must act more slowly than the samples lag behind the queue, an
// RTT and the filter, or the queue oscillates). R integrates the error,
// R' = −R·e·K with K = 1.44/D² (a damping ratio of about 0.6): it grows
// while the queue is below the target and shrinks in proportion above it,
// so that in steady state the queue sits at the target and the rate is
// the bottleneck's. Until the queueing delay first reaches target/2, R
// grows as a slow start would, e-fold per D; a queueing delay more than
// D/2 beyond the target halves R, at most once per two current RTTs (the
// time the cut takes to show). While the pacer is not what holds bulk
// back (the application has no more, or the transport takes no more), R
// does not grow, and a queue only brings it down to what bulk moves, so
// that scheduling noise on a busy host does not ratchet it lower.
//
// Bulk bytes are released by a token bucket that holds at most the
// target's worth at the current rate (and at least pacerBurst), so that
// they reach the path smoothly. A wait that finds the bucket empty sleeps
// a wakeQuantum past its debt, so that one wake-up lets a millisecond's
// worth of messages through, not one: on a fast path a wake-up per 16 KiB
// message would cost more CPU than the messages. Every slowdownEvery of
// use the pacer holds bulk back for two current RTTs, so that the queue
// drains and the base history sees the bare path again (LEDBAT++'s
// periodic slowdown).
//
// The controller sees round trips, not one-way delays as LEDBAT does: a
// queue of the other direction's traffic (on a path whose directions
// share a queue, or the acknowledgements' path) counts as well, so a
// link's bulk yields to bulk flowing the other way.
//
// On a path without a bottleneck queue (loopback, a fast LAN) qdelay stays
// near zero and R grows until bulk is limited by the transport alone.

// DefaultQueueTarget is the queueing delay the bulk controller aims for
// when Config.QueueTarget is zero; QueueTarget is clamped to
// [MinQueueTarget, MaxQueueTarget].
const (
	DefaultQueueTarget = 3 * time.Millisecond
	MinQueueTarget     = 1 * time.Millisecond
	MaxQueueTarget     = 1 * time.Second
)

const (
	baseBuckets   = 10          // minutes of base history
	baseBucketLen = time.Minute // one bucket's span
	filterWindow  = 20 * time.Millisecond
	minDamping    = 50 * time.Millisecond
	minRate       = 100e3            // bytes per second
	maxRate       = 100e9            // bytes per second
	initWindow    = 64 << 10         // R starts at this many bytes per RTT
	pacerBurst    = 16 << 10         // bytes
	wakeQuantum   = time.Millisecond // a blocked wait sleeps this long past its debt
	slowdownEvery = 30 * time.Second
)

// bulkPacer paces a link's bulk writes. A nil *bulkPacer paces nothing.
type bulkPacer struct {
	rtt    RTTSampler
	target time.Duration
	done   chan struct{} // closed by close
	once   sync.Once

	mu        sync.Mutex                 // guards everything below
	sampled   bool                       // an RTT sample has arrived; until then bulk is not paced
	last      time.Time                  // the last update
	lastMin   time.Duration              // the session's lowest RTT at the last poll
	base      [baseBuckets]time.Duration // per-minute minimum RTTs, ring by minute
	baseAt    int64                      // the minute (unix) of the newest bucket
	recent    []rttSample                // sliding minimum of the samples within filterWindow: increasing RTTs, oldest first
	r         float64                    // R, bytes per second
	rate      float64                    // the pacing rate, bytes per second
	tokens    float64                    // bytes that may go now; negative: owed
	slowStart bool                       // until the queueing delay first reaches target/2
	limited   bool                       // the last wait that found the bucket empty or full found it empty
	sent      float64                    // bytes granted since the last update
	sendRate  float64                    // bytes granted per second, averaged over about D
	lastCut   time.Time                  // when a heavy delay last halved R
	lastSlow  time.Time                  // when the last slowdown began
}

type rttSample struct {
	at  time.Time
	rtt time.Duration
}

// newBulkPacer returns the pacer for a link whose session samples RTTs
// with rtt, or nil when bulk is unmanaged (cfg.Unmanaged or no sampler).
func newBulkPacer(cfg Config, rtt RTTSampler) *bulkPacer {
	if cfg.Unmanaged || rtt == nil {
		return nil
	}
	target := cfg.QueueTarget
	if target <= 0 {
		target = DefaultQueueTarget
	}
	target = min(max(target, MinQueueTarget), MaxQueueTarget)
	now := time.Now()
	return &bulkPacer{
		rtt:       rtt,
		target:    target,
		done:      make(chan struct{}),
		last:      now,
		lastSlow:  now,
		slowStart: true,
	}
}

// take blocks until bulk may be written, or ctx ends (ctx.Err()) or the
// pacer is closed (ErrLinkClosed), and returns how many of the want bytes
// may go now: want itself when it is at most pacedPiece, else what the
// bucket holds, but at least pacedPiece (and just pacedPiece until the
// first RTT sample, while the bucket is not yet kept). A piece larger
// than pacedPiece thus reaches the path as no larger a burst than the
// bucket lets through in pacedPiece pieces anyway, in one write instead
// of many: each write to a QUIC stream is a hand-off to its connection's
// sender. A nil pacer grants want at once.
func (p *bulkPacer) take(ctx context.Context, want int) (int, error) {
	if p == nil {
		return want, nil
	}
	for {
		select {
		case <-p.done:
			return 0, ErrLinkClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		p.mu.Lock()
		now := time.Now()
		p.updateLocked(now)
		switch {
		case p.tokens < 0:
			p.limited = true
		case p.tokens >= p.burst():
			p.limited = false
		}
		if !p.sampled || p.tokens >= 0 {
			n := want
			switch {
			case n <= pacedPiece:
			case !p.sampled:
				n = pacedPiece
			default:
				n = min(n, max(pacedPiece, int(p.tokens)))
			}
			p.grantLocked(now, n)
			p.mu.Unlock()
			return n, nil
		}
		// Wake at least every D to look at new samples.
		d := min(time.Duration(-p.tokens/p.rate*float64(time.Second))+wakeQuantum, p.damping())
		p.mu.Unlock()
		t := time.NewTimer(max(d, time.Microsecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-p.done:
			t.Stop()
			return 0, ErrLinkClosed
		}
	}
}

// close releases every waiter; later waits fail. It is idempotent.
func (p *bulkPacer) close() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.done) })
}

// grantLocked takes n bytes from the bucket and starts a slowdown when one
// is due.
func (p *bulkPacer) grantLocked(now time.Time, n int) {
	if !p.sampled {
		return
	}
	p.tokens -= float64(n)
	p.sent += float64(n)
	if now.Sub(p.lastSlow) >= slowdownEvery && p.limited {
		// Hold bulk for two current RTTs: the queue drains, and the first
		// bytes after the pause sample the bare path.
		p.lastSlow = now
		p.tokens -= p.rate * (2 * p.current()).Seconds()
	}
}

// current returns the filtered current RTT; p.recent is not empty.
func (p *bulkPacer) current() time.Duration { return p.recent[0].rtt }

// damping returns D.
func (p *bulkPacer) damping() time.Duration { return max(2*p.baseRTT()+4*p.target, minDamping) }

// baseRTT returns the lowest RTT in the base history.
func (p *bulkPacer) baseRTT() time.Duration {
	b := time.Duration(0)
	for _, v := range p.base {
		if v > 0 && (b == 0 || v < b) {
			b = v
		}
	}
	return b
}

// addBaseLocked records an RTT sample in the base history.
func (p *bulkPacer) addBaseLocked(now time.Time, rtt time.Duration) {
	m := now.Unix() / int64(baseBucketLen/time.Second)
	for p.baseAt < m {
		p.baseAt++
		p.base[p.baseAt%baseBuckets] = 0
		if m-p.baseAt >= baseBuckets { // a long gap: every bucket is stale
			clear(p.base[:])
			p.baseAt = m
		}
	}
	if i := p.baseAt % baseBuckets; p.base[i] == 0 || rtt < p.base[i] {
		p.base[i] = rtt
	}
}

// updateLocked polls the RTT, moves R and the rate, and refills the
// bucket.
func (p *bulkPacer) updateLocked(now time.Time) {
	dt := max(now.Sub(p.last), 0)
	p.last = now
	latest, lowest, ok := p.rtt.RTT()
	if !ok || latest <= 0 {
		if p.sampled {
			p.refillLocked(dt)
		}
		return
	}
	if !p.sampled {
		p.sampled = true
		p.baseAt = now.Unix() / int64(baseBucketLen/time.Second)
		p.r = initWindow / latest.Seconds()
		dt = 0
	}
	p.addBaseLocked(now, latest)
	if lowest > 0 && lowest != p.lastMin {
		// The session saw a new lowest RTT since the last poll.
		p.lastMin = lowest
		p.addBaseLocked(now, lowest)
	}
	i := 0
	for i < len(p.recent) && now.Sub(p.recent[i].at) > filterWindow {
		i++
	}
	j := len(p.recent)
	for j > i && p.recent[j-1].rtt >= latest {
		j--
	}
	p.recent = append(p.recent[i:j], rttSample{now, latest})
	qdelay := p.current() - p.baseRTT()
	d := p.damping().Seconds()
	e := (qdelay - p.target).Seconds()
	step := min(dt.Seconds(), d)
	decay := math.Exp(-dt.Seconds() / d)
	p.sendRate = p.sendRate*decay + p.sent*(1-decay)/max(dt.Seconds(), 1e-9)
	p.sent = 0

	switch {
	case !p.limited && e > 0:
		// The pacer is not what holds bulk back (the application has
		// no more, or the transport takes no more) and there is a
		// queue: R comes down to what bulk moves, so that the pacer
		// takes over if bulk is the queue's cause (the transport
		// filled it), but no further, so that a delay bulk does not
		// cause (scheduling noise on a busy host) does not ratchet R
		// down below what bulk moves.
		p.r = min(p.r, p.sendRate)
	case !p.limited:
		// A rate bulk does not use says nothing of the path.
	case p.slowStart && qdelay < p.target/2:
		p.r *= math.Exp(step / d)
	default:
		p.slowStart = false
		p.r *= math.Exp(-max(e, -p.target.Seconds()) * step * 1.44 / (d * d))
	}
	if e > d/2 && now.Sub(p.lastCut) >= 2*p.current() {
		p.r /= 2
		p.lastCut = now
	}
	p.r = min(max(p.r, minRate), maxRate)
	p.rate = p.r * min(max(1-e/d, 0.25), 2)
	p.refillLocked(dt)
}

// refillLocked adds dt's worth of tokens at the current rate.
func (p *bulkPacer) refillLocked(dt time.Duration) {
	p.tokens = min(p.tokens+p.rate*dt.Seconds(), p.burst())
}

// burst returns the most bytes the bucket holds: pacerBurst, or the
// target's worth at the current rate. A sender that was held up (its
// host busy elsewhere) may catch up that much at once: the bottleneck
// queue drained meanwhile by about as much as the bucket gained, so the
// catch-up brings it back to no more than where it was.
func (p *bulkPacer) burst() float64 { return max(pacerBurst, p.rate*p.target.Seconds()) }
