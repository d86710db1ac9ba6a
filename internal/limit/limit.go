package limit

import (
	"context"
	"sync"
	"time"
)

// Rate is how much of one kind of work a peer may cause: PerSec units a
// second on average, up to Burst at once. PerSec <= 0 means no limit.
type Rate struct {
	PerSec float64
	Burst  float64
}

// unlimited reports whether r limits nothing.
func (r Rate) unlimited() bool { return r.PerSec <= 0 }

// Bucket is a token bucket of a Rate: it starts full (Burst tokens) and
// refills at PerSec tokens a second up to Burst. Not safe for concurrent
// use.
type Bucket struct {
	rate   Rate
	tokens float64
	last   time.Time
}

// NewBucket returns a full bucket of r at now.
func NewBucket(r Rate, now time.Time) Bucket {
	return Bucket{rate: r, tokens: r.Burst, last: now}
}

func (b *Bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.rate.Burst, b.tokens+now.Sub(b.last).Seconds()*b.rate.PerSec)
		b.last = now
	}
}

// Allow takes n tokens at now if the bucket holds as many, and reports
// whether it did.
func (b *Bucket) Allow(now time.Time, n float64) bool {
	if b.rate.unlimited() {
		return true
	}
	b.refill(now)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// Take takes n tokens at now, going into debt if the bucket holds fewer,
// and returns how long until the debt is paid off: 0 if the bucket held
// n. The caller waits that long before doing the work, so a peer over
// the rate is slowed to it.
func (b *Bucket) Take(now time.Time, n float64) time.Duration {
	if b.rate.unlimited() {
		return 0
	}
	b.refill(now)
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate.PerSec * float64(time.Second))
}

// Full reports whether the bucket is full at now: it then behaves as a new
// one, so whoever keeps it may forget it.
func (b *Bucket) Full(now time.Time) bool {
	if b.rate.unlimited() {
		return true
	}
	b.refill(now)
	return b.tokens >= b.rate.Burst
}

// Policy says when a peer is dropped for its offences and for how long.
type Policy struct {
	// Strikes is how many offences are tolerated; one more drops the
	// peer. One strike is forgiven per Forgive.
	Strikes int
	Forgive time.Duration
	// Cooldown is how long a dropped peer is refused.
	Cooldown time.Duration
}

// DefaultPolicy is the Policy of zero fields: more than 10 offences drop
// the peer, one is forgiven every 10 s, and a dropped peer is refused for
// 10 minutes.
var DefaultPolicy = Policy{Strikes: 10, Forgive: 10 * time.Second, Cooldown: 10 * time.Minute}

// OrDefault returns p with its zero (or negative) fields set from
// DefaultPolicy.
func (p Policy) OrDefault() Policy {
	if p.Strikes <= 0 {
		p.Strikes = DefaultPolicy.Strikes
	}
	if p.Forgive <= 0 {
		p.Forgive = DefaultPolicy.Forgive
	}
	if p.Cooldown <= 0 {
		p.Cooldown = DefaultPolicy.Cooldown
	}
	return p
}

// Strikes counts one peer's offences under a Policy. Not safe for
// concurrent use.
type Strikes struct{ b Bucket }

// NewStrikes returns a clean record under p at now.
func NewStrikes(p Policy, now time.Time) Strikes {
	r := Rate{PerSec: 1 / p.Forgive.Seconds(), Burst: float64(p.Strikes)}
	if p.Forgive <= 0 {
		r.PerSec = 1e-9 // never forgiven; 0 would mean no limit
	}
	return Strikes{b: NewBucket(r, now)}
}

// Add records an offence at now and reports whether the peer is now past
// its strikes and must be dropped.
func (s *Strikes) Add(now time.Time) (drop bool) { return !s.b.Allow(now, 1) }

// Clean reports whether every strike is forgiven at now.
func (s *Strikes) Clean(now time.Time) bool { return s.b.Full(now) }

// Wait waits d, or until ctx is done (then its cause).
func Wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Guard keeps, for each peer (keyed by K), a bucket per kind of work (the
// kinds are indexes into the rates given to NewGuard) and its strikes. A
// peer whose buckets are full and strikes forgiven is forgotten, since it
// would behave as a new one: the memory is that of the peers recently
// active. Safe for concurrent use.
type Guard[K comparable] struct {
	rates  []Rate
	policy Policy

	mu    sync.Mutex // guards peers and sweepAt
	peers map[K]*guarded
	// sweepAt is the number of peers at which forgettable ones are swept
	// out: twice what was left after the last sweep, at least minSweep.
	sweepAt int
}

const minSweep = 256

type guarded struct {
	buckets []Bucket
	strikes Strikes
}

// NewGuard returns a Guard under p with one bucket per rate; kind i of
// Take and Allow is rates[i].
func NewGuard[K comparable](p Policy, rates ...Rate) *Guard[K] {
	return &Guard[K]{rates: rates, policy: p, peers: map[K]*guarded{}, sweepAt: minSweep}
}

// peerLocked returns key's record at now, creating it.
func (g *Guard[K]) peerLocked(now time.Time, key K) *guarded {
	if p := g.peers[key]; p != nil {
		return p
	}
	if len(g.peers) >= g.sweepAt {
		for k, p := range g.peers {
			if g.forgettable(now, p) {
				delete(g.peers, k)
			}
		}
		g.sweepAt = max(minSweep, 2*len(g.peers))
	}
	p := &guarded{buckets: make([]Bucket, len(g.rates)), strikes: NewStrikes(g.policy, now)}
	for i, r := range g.rates {
		p.buckets[i] = NewBucket(r, now)
	}
	g.peers[key] = p
	return p
}

func (g *Guard[K]) forgettable(now time.Time, p *guarded) bool {
	for i := range p.buckets {
		if !p.buckets[i].Full(now) {
			return false
		}
	}
	return p.strikes.Clean(now)
}

// Take is Bucket.Take of key's bucket of kind.
func (g *Guard[K]) Take(now time.Time, key K, kind int, n float64) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peerLocked(now, key).buckets[kind].Take(now, n)
}

// Allow is Bucket.Allow of key's bucket of kind.
func (g *Guard[K]) Allow(now time.Time, key K, kind int, n float64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peerLocked(now, key).buckets[kind].Allow(now, n)
}

// Strike records an offence of key at now and reports whether key is past
// its strikes and must be dropped. Its strikes then start clean, for when
// the cool-down ends; its buckets stay as they are.
func (g *Guard[K]) Strike(now time.Time, key K) (drop bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.peerLocked(now, key)
	if !p.strikes.Add(now) {
		return false
	}
	p.strikes = NewStrikes(g.policy, now)
	return true
}

// Len returns how many peers the Guard remembers.
func (g *Guard[K]) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.peers)
}

// Bans records who is refused and until when, at most max at once: when
// full, the bans that ended are swept out, then the one ending first
// makes room. Safe for concurrent use.
type Bans[K comparable] struct {
	max   int
	mu    sync.Mutex // guards until
	until map[K]time.Time
}

// NewBans returns an empty record of at most n bans (at least 1).
func NewBans[K comparable](n int) *Bans[K] {
	return &Bans[K]{max: max(n, 1), until: map[K]time.Time{}}
}

// Ban refuses key until until. It reports whether key was not refused
// at now already, so that each drop is logged once.
func (b *Bans[K]) Ban(now time.Time, key K, until time.Time) (fresh bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.until[key]
	fresh = !ok || !now.Before(old)
	if !ok && len(b.until) >= b.max {
		b.makeRoomLocked(now)
	}
	if until.After(old) {
		b.until[key] = until
	}
	return fresh
}

func (b *Bans[K]) makeRoomLocked(now time.Time) {
	var first K
	var firstAt time.Time
	for k, t := range b.until {
		if !now.Before(t) {
			delete(b.until, k)
		} else if firstAt.IsZero() || t.Before(firstAt) {
			first, firstAt = k, t
		}
	}
	if len(b.until) >= b.max {
		delete(b.until, first)
	}
}

// Banned reports whether key is refused at now.
func (b *Bans[K]) Banned(now time.Time, key K) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.until[key]
	if ok && !now.Before(t) {
		delete(b.until, key)
		return false
	}
	return ok
}
