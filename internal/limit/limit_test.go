package limit

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBucket(t *testing.T) {
	b := NewBucket(Rate{PerSec: 10, Burst: 5}, t0)
	for i := range 5 {
		if !b.Allow(t0, 1) {
			t.Fatalf("token %d of a burst of 5 refused", i)
		}
	}
	if b.Allow(t0, 1) {
		t.Fatal("a sixth token at once was allowed")
	}
	if !b.Allow(t0.Add(100*time.Millisecond), 1) {
		t.Fatal("one token refused 100 ms later at 10/s")
	}
	if b.Allow(t0.Add(100*time.Millisecond), 1) {
		t.Fatal("two tokens allowed 100 ms later at 10/s")
	}
	if b.Full(t0.Add(400 * time.Millisecond)) {
		t.Fatal("full after 0.4 s at 10/s with 5 missing")
	}
	if !b.Full(t0.Add(time.Second)) {
		t.Fatal("not full again after 1 s")
	}
}

func TestBucketTake(t *testing.T) {
	b := NewBucket(Rate{PerSec: 100, Burst: 100}, t0)
	if d := b.Take(t0, 100); d != 0 {
		t.Fatalf("the burst waits %v", d)
	}
	if d := b.Take(t0, 50); d != 500*time.Millisecond {
		t.Fatalf("50 past the burst at 100/s waits %v, want 500ms", d)
	}
	// Paid off after the wait: the next 100 wait a second.
	if d := b.Take(t0.Add(500*time.Millisecond), 100); d != time.Second {
		t.Fatalf("100 more wait %v, want 1s", d)
	}
}

func TestUnlimited(t *testing.T) {
	b := NewBucket(Rate{}, t0)
	for range 1000 {
		if !b.Allow(t0, 1e6) || b.Take(t0, 1e6) != 0 {
			t.Fatal("a zero rate limited something")
		}
	}
}

func TestStrikes(t *testing.T) {
	s := NewStrikes(Policy{Strikes: 3, Forgive: 10 * time.Second}, t0)
	for i := range 3 {
		if s.Add(t0) {
			t.Fatalf("dropped at strike %d of 3 tolerated", i+1)
		}
	}
	if !s.Add(t0) {
		t.Fatal("a fourth strike at once did not drop")
	}
	// One strike a forgiveness period is never dropped.
	s = NewStrikes(Policy{Strikes: 3, Forgive: 10 * time.Second}, t0)
	for i := range 100 {
		if s.Add(t0.Add(time.Duration(i) * 10 * time.Second)) {
			t.Fatalf("dropped at strike %d, one per forgiveness period", i+1)
		}
	}
}

func TestGuard(t *testing.T) {
	g := NewGuard[string](Policy{Strikes: 2, Forgive: time.Second}, Rate{PerSec: 1, Burst: 1}, Rate{PerSec: 100, Burst: 100})
	if !g.Allow(t0, "a", 0, 1) || g.Allow(t0, "a", 0, 1) {
		t.Fatal("kind 0 of a: want one allowed, then none")
	}
	if !g.Allow(t0, "b", 0, 1) {
		t.Fatal("b shares a's bucket")
	}
	if !g.Allow(t0, "a", 1, 100) {
		t.Fatal("kind 1 shares kind 0's bucket")
	}
	if g.Strike(t0, "a") || g.Strike(t0, "a") || !g.Strike(t0, "a") {
		t.Fatal("want a dropped at its third strike")
	}
	// A dropped peer's strikes start clean; its buckets do not.
	if g.Strike(t0, "a") {
		t.Fatal("a dropped again at once")
	}
	if g.Allow(t0, "a", 0, 1) {
		t.Fatal("a's empty bucket was refilled by the drop")
	}
}

// TestGuardForgets: the Guard's memory is that of the peers recently
// active, whatever number of peers came by.
func TestGuardForgets(t *testing.T) {
	g := NewGuard[int](Policy{Strikes: 1, Forgive: time.Second}, Rate{PerSec: 10, Burst: 10})
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		g.Allow(now, i, 0, 10)
	}
	// About 1000 peers were active within the last second.
	if n := g.Len(); n > 2*1000+minSweep {
		t.Fatalf("the Guard remembers %d peers after 100000 came one a millisecond, each idle within a second", n)
	}
}

func TestBans(t *testing.T) {
	b := NewBans[string](2)
	if !b.Ban(t0, "a", t0.Add(time.Minute)) {
		t.Fatal("a first ban is not fresh")
	}
	if b.Ban(t0, "a", t0.Add(2*time.Minute)) {
		t.Fatal("a ban of a banned key is fresh")
	}
	if !b.Banned(t0.Add(90*time.Second), "a") {
		t.Fatal("the longer ban does not hold")
	}
	if b.Banned(t0.Add(2*time.Minute), "a") {
		t.Fatal("a ban holds after it ended")
	}
	if !b.Ban(t0, "a", t0.Add(time.Minute)) {
		t.Fatal("a ban after the last ended is not fresh")
	}
	b.Ban(t0, "b", t0.Add(2*time.Minute))
	b.Ban(t0, "c", t0.Add(3*time.Minute)) // full: a, ending first, makes room
	if b.Banned(t0, "a") || !b.Banned(t0, "b") || !b.Banned(t0, "c") {
		t.Fatal("a full record did not drop the ban ending first")
	}
}

func TestWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Wait(t.Context(), 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("waited %v, want 3s", d)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		if err := Wait(ctx, time.Hour); err != context.Canceled {
			t.Fatalf("cancelled wait: %v", err)
		}
	})
}
