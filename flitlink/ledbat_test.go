package flitlink

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// pathModel is a fluid model of a path with a bottleneck: a FIFO queue
// drained at capacity bytes per second and holding at most limit bytes
// (beyond that the sender waits, as a transport's congestion window would
// make it), behind a base RTT. A send is acknowledged base plus its
// queueing delay later; RTT reports the newest acknowledged send's RTT
// (plus jitter, if set) and the lowest so far, as a QUIC session does.
type pathModel struct {
	mu        sync.Mutex // guards everything below
	base      time.Duration
	capacity  float64
	limit     float64
	queue     float64
	delivered float64
	last      time.Time
	acks      []rttSample // sends not yet acknowledged: when, and their RTT
	latest    time.Duration
	lowest    time.Duration
	jitter    func() time.Duration // extra delay on each RTT sample; nil: none
}

func newPathModel(base time.Duration, capacity float64, queue time.Duration) *pathModel {
	return &pathModel{base: base, capacity: capacity, limit: capacity * queue.Seconds(), last: time.Now()}
}

func (m *pathModel) advanceLocked() {
	now := time.Now()
	d := min(m.queue, m.capacity*now.Sub(m.last).Seconds())
	m.last = now
	m.queue -= d
	m.delivered += d
	for len(m.acks) > 0 && !m.acks[0].at.After(now) {
		m.latest = m.acks[0].rtt
		if m.lowest == 0 || m.latest < m.lowest {
			m.lowest = m.latest
		}
		m.acks = m.acks[1:]
	}
}

// RTT implements RTTSampler.
func (m *pathModel) RTT() (latest, lowest time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked()
	return m.latest, m.lowest, m.latest > 0
}

// send queues n bytes in segments of 16 KiB (the last one up to 32 KiB),
// as a transport sends a write in packets, each segment first waiting
// while the queue is full.
func (m *pathModel) send(n int) {
	for n > 0 {
		k := n
		if n >= 32<<10 {
			k = 16 << 10
		}
		m.sendSegment(k)
		n -= k
	}
}

// sendSegment queues n bytes, first waiting while the queue is full.
func (m *pathModel) sendSegment(n int) {
	for {
		m.mu.Lock()
		m.advanceLocked()
		if over := m.queue + float64(n) - m.limit; over > 0 {
			wait := time.Duration(over / m.capacity * float64(time.Second))
			m.mu.Unlock()
			time.Sleep(max(wait, time.Microsecond))
			continue
		}
		// The segment's first packet (1200 bytes) is acknowledged
		// first, behind the queue as it was.
		rtt := m.base + time.Duration((m.queue+1200)/m.capacity*float64(time.Second))
		m.queue += float64(n)
		sample := rtt
		if m.jitter != nil {
			sample += m.jitter()
		}
		m.acks = append(m.acks, rttSample{time.Now().Add(rtt), sample})
		m.mu.Unlock()
		return
	}
}

// probe returns what a small packet sent now would see: the RTT through
// the queue, and the bytes delivered so far.
func (m *pathModel) probe() (rtt time.Duration, delivered float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked()
	return m.base + time.Duration(m.queue/m.capacity*float64(time.Second)), m.delivered
}

func (m *pathModel) setCapacity(c float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked()
	m.limit *= c / m.capacity
	m.capacity = c
}

// probeRecord is one probe of a run: when (since its start), the RTT a
// small control packet saw, and the bulk bytes delivered so far.
type probeRecord struct {
	at        time.Duration
	rtt       time.Duration
	delivered float64
}

// takeAll takes want bytes from p in the pieces it grants.
func takeAll(ctx context.Context, p *bulkPacer, want int) error {
	for want > 0 {
		n, err := p.take(ctx, want)
		if err != nil {
			return err
		}
		want -= n
	}
	return nil
}

// runBulk sends bulk through p onto m for d, probing the
// path every 5 ms; at is called before each probe with the time since the
// start, to change the path.
func runBulk(t *testing.T, m *pathModel, p *bulkPacer, d time.Duration, at func(time.Duration)) []probeRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			// Messages of 256 KiB, as a swarm seeder sends, in the
			// pieces the pacer grants.
			for rest := 256 << 10; rest > 0; {
				n, err := p.take(ctx, rest)
				if err != nil {
					return
				}
				m.send(n)
				rest -= n
			}
		}
	})
	var recs []probeRecord
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
			continue
		}
		el := time.Since(start)
		if at != nil {
			at(el)
		}
		rtt, del := m.probe()
		recs = append(recs, probeRecord{el, rtt, del})
	}
	cancel()
	wg.Wait()
	return recs
}

// window summarises the probes in [from, to): bulk bytes per second and
// the control packets' 99th percentile RTT.
func window(recs []probeRecord, from, to time.Duration) (rate float64, p99 time.Duration) {
	var in []probeRecord
	for _, r := range recs {
		if r.at >= from && r.at < to {
			in = append(in, r)
		}
	}
	first, last := in[0], in[len(in)-1]
	rate = (last.delivered - first.delivered) / (last.at - first.at).Seconds()
	rtts := make([]time.Duration, len(in))
	for i, r := range in {
		rtts[i] = r.rtt
	}
	slices.Sort(rtts)
	return rate, rtts[len(rtts)*99/100]
}

const mbit = 1e6 / 8 // bytes per second

// checkWindow checks that in [from, to) bulk used at least 85% of
// capacity and control packets waited at most base + 10 ms at p99.
func checkWindow(t *testing.T, recs []probeRecord, from, to time.Duration, capacity float64, base time.Duration) {
	t.Helper()
	rate, p99 := window(recs, from, to)
	t.Logf("%v–%v: bulk %.1f Mbit/s of %.1f, control p99 %v (base %v)", from, to, rate/mbit, capacity/mbit, p99, base)
	if rate < 0.85*capacity {
		t.Errorf("%v–%v: bulk %.1f Mbit/s, want ≥ 85%% of %.1f", from, to, rate/mbit, capacity/mbit)
	}
	if p99 > base+10*time.Millisecond {
		t.Errorf("%v–%v: control p99 %v, want ≤ base %v + 10ms", from, to, p99, base)
	}
}

// TestPacerConverges: on a 100 Mbit/s path, bulk settles near capacity
// with the queue near the target, where unpaced bulk would fill the
// queue: a 50 ms one, or 20 ms when the transport's congestion window
// stops it there (the pacer is then not what holds bulk back, and must
// take over all the same).
func TestPacerConverges(t *testing.T) {
	for _, queue := range []time.Duration{50 * time.Millisecond, 20 * time.Millisecond} {
		synctest.Test(t, func(t *testing.T) {
			base := 500 * time.Microsecond
			m := newPathModel(base, 100*mbit, queue)
			recs := runBulk(t, m, newBulkPacer(Config{}, m), 10*time.Second, nil)
			checkWindow(t, recs, 2*time.Second, 10*time.Second, 100*mbit, base)
		})
	}
}

// TestPacerUnmanagedFillsQueue is the contrast: without the pacer the
// model's sender fills the queue.
func TestPacerUnmanagedFillsQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPathModel(500*time.Microsecond, 100*mbit, 50*time.Millisecond)
		recs := runBulk(t, m, nil, 2*time.Second, nil)
		if _, p99 := window(recs, time.Second, 2*time.Second); p99 < 40*time.Millisecond {
			t.Fatalf("unpaced control p99 %v, want the 50 ms queue full", p99)
		}
	})
}

// TestPacerFollowsCapacity: the pacer backs off when capacity drops to a
// quarter and opens up again when it comes back.
func TestPacerFollowsCapacity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := 2 * time.Millisecond
		m := newPathModel(base, 100*mbit, 50*time.Millisecond)
		recs := runBulk(t, m, newBulkPacer(Config{}, m), 15*time.Second, func(el time.Duration) {
			switch {
			case el >= 10*time.Second:
				m.setCapacity(100 * mbit)
			case el >= 5*time.Second:
				m.setCapacity(25 * mbit)
			}
		})
		checkWindow(t, recs, 2*time.Second, 5*time.Second, 100*mbit, base)
		checkWindow(t, recs, 7*time.Second, 10*time.Second, 25*mbit, base)
		checkWindow(t, recs, 11*time.Second, 15*time.Second, 100*mbit, base)
	})
}

// TestPacerOpensUpWithoutQueue: on a path whose RTT does not grow with the
// rate (no bottleneck queue within reach, as on loopback), the pacer
// gets out of the way, even when the RTT samples carry the scheduling
// noise of a busy machine: up to 2 ms on each, 20 ms on one in twenty.
func TestPacerOpensUpWithoutQueue(t *testing.T) {
	for _, noisy := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			base := 200 * time.Microsecond
			m := newPathModel(base, 2000*mbit, 2*time.Millisecond) // 250 MB/s, a 2 ms queue
			if noisy {
				rng := rand.New(rand.NewPCG(3, 4))
				m.jitter = func() time.Duration {
					j := time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
					if rng.IntN(20) == 0 {
						j += 20 * time.Millisecond
					}
					return j
				}
			}
			recs := runBulk(t, m, newBulkPacer(Config{}, m), 3*time.Second, nil)
			checkWindow(t, recs, time.Second, 3*time.Second, 2000*mbit, base)
		})
	}
}

// TestPacerJitter: RTT samples with scheduling noise (up to 1 ms on each,
// 10 ms on one in fifty) still leave bulk near capacity with the queue
// near the target.
func TestPacerJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		base := 500 * time.Microsecond
		m := newPathModel(base, 100*mbit, 50*time.Millisecond)
		rng := rand.New(rand.NewPCG(1, 2))
		m.jitter = func() time.Duration {
			j := time.Duration(rng.Int64N(int64(time.Millisecond)))
			if rng.IntN(50) == 0 {
				j += 10 * time.Millisecond
			}
			return j
		}
		recs := runBulk(t, m, newBulkPacer(Config{}, m), 10*time.Second, nil)
		checkWindow(t, recs, 2*time.Second, 10*time.Second, 100*mbit, base)
	})
}

// TestPacerBaseHistory: when the path's base RTT grows for good (a new
// route), the pacer holds bulk back as if the extra delay were a queue
// until the base history forgets the old minimum (LEDBAT's ten minutes),
// then runs at capacity again.
func TestPacerBaseHistory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPathModel(500*time.Microsecond, 25*mbit, 50*time.Millisecond)
		base := 10 * time.Millisecond
		recs := runBulk(t, m, newBulkPacer(Config{}, m), 13*time.Minute, func(el time.Duration) {
			if el >= time.Minute {
				m.mu.Lock()
				m.base = base
				m.mu.Unlock()
			}
		})
		checkWindow(t, recs, 12*time.Minute, 13*time.Minute, 25*mbit, base)
	})
}

// TestPacerTakeGrants: a take of up to pacedPiece is granted whole; a
// larger one gets what the bucket holds, at least pacedPiece, and never
// more than asked.
func TestPacerTakeGrants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPathModel(time.Millisecond, 100*mbit, time.Second)
		m.send(1)
		time.Sleep(20 * time.Millisecond) // the model's first ack arrives
		p := newBulkPacer(Config{}, m)
		defer p.close()
		if n, err := p.take(t.Context(), 1<<20); err != nil || n != pacedPiece {
			t.Fatalf("take from an empty bucket: %d, %v; want %d", n, err, pacedPiece)
		}
		time.Sleep(time.Second) // the bucket fills
		if n, err := p.take(t.Context(), 1000); err != nil || n != 1000 {
			t.Fatalf("small take: %d, %v; want 1000", n, err)
		}
		full := int(p.burst())
		if full <= 2*pacedPiece {
			t.Fatalf("a full bucket holds %d bytes: too few to tell grants apart", full)
		}
		n, err := p.take(t.Context(), 1<<30)
		if err != nil || n < full-1000-1 || n > full {
			t.Fatalf("take from a full bucket of %d: %d, %v", full, n, err)
		}
		time.Sleep(time.Second)
		if n, err := p.take(t.Context(), pacedPiece+1); err != nil || n != pacedPiece+1 {
			t.Fatalf("take of pacedPiece+1 from a full bucket: %d, %v", n, err)
		}
	})
}

// TestPacerOff: Unmanaged or no sampler gives a nil pacer, which never
// waits.
func TestPacerOff(t *testing.T) {
	m := newPathModel(time.Millisecond, mbit, time.Second)
	for _, p := range []*bulkPacer{newBulkPacer(Config{Unmanaged: true}, m), newBulkPacer(Config{}, nil)} {
		if p != nil {
			t.Fatal("pacer not nil")
		}
		if err := takeAll(t.Context(), p, 1<<20); err != nil {
			t.Fatal(err)
		}
		p.close()
	}
}

// TestPacerCloseAndCancel: close releases a waiter with ErrLinkClosed (and
// later waits fail too); a cancelled context ends a wait with its error.
func TestPacerCloseAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newPathModel(10*time.Millisecond, 10*mbit, time.Second)
		m.send(1)
		time.Sleep(20 * time.Millisecond) // the model's first ack arrives
		p := newBulkPacer(Config{}, m)
		if _, err := p.take(t.Context(), 64<<20); err != nil { // the first take goes at once, leaving the bucket in debt
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- takeAll(ctx, p, 1) }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled wait: %v", err)
		}
		go func() { errc <- takeAll(t.Context(), p, 1) }()
		synctest.Wait()
		p.close()
		p.close()
		if err := <-errc; !errors.Is(err, ErrLinkClosed) {
			t.Fatalf("wait on close: %v", err)
		}
		if err := takeAll(t.Context(), p, 1); !errors.Is(err, ErrLinkClosed) {
			t.Fatalf("wait after close: %v", err)
		}
	})
}
