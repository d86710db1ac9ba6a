package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// testClock is a node clock that moves only when told to.
type testClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// putFile stores size random bytes as an object on n and returns its ID.
func putFile(t *testing.T, ctx context.Context, n *Node, size int) cid.Cid {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	put, err := n.PutObject(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	id, err := cid.Decode(put.CID)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// mustGet makes n fetch id.
func mustGet(t *testing.T, ctx context.Context, n *Node, id cid.Cid) {
	t.Helper()
	if _, err := n.GetObject(ctx, id, "", nil); err != nil {
		t.Fatalf("%s gets %s: %v", n.id.Short(), id, err)
	}
}

// mustStatObject returns what n holds of id.
func mustStatObject(t *testing.T, n *Node, id cid.Cid) api.Object {
	t.Helper()
	st, err := n.StatObject(id)
	if err != nil {
		t.Fatalf("%s: stat %s: %v", n.id.Short(), id, err)
	}
	return st
}

// checkHeld checks which of ids n holds after an eviction pass.
func checkHeld(t *testing.T, n *Node, held map[cid.Cid]bool) {
	t.Helper()
	n.evictCache()
	for id, want := range held {
		_, err := n.StatObject(id)
		if got := err == nil; got != want {
			t.Errorf("%s holds %s: %v, want %v (%v)", n.id.Short(), id, got, want, err)
		} else if err != nil && !errors.Is(err, api.ErrNotFound) {
			t.Errorf("%s: stat %s: %v", n.id.Short(), id, err)
		}
	}
}

// ownHead returns the seq of n's own feed.
func ownHead(t *testing.T, n *Node) uint64 {
	t.Helper()
	h, err := n.store.Head(n.id)
	if err != nil {
		t.Fatal(err)
	}
	return h.Seq
}

// TestPinLeases: pin, put, unpin and the heartbeat write lease entries to
// the node's own feed only when the lease needs it; Publish refuses the
// type.
func TestPinLeases(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clock := newTestClock()
	n, _ := startNodeWith(t, ctx, Config{Now: clock.Now})
	if _, err := n.Publish(ctx, feed.TypeLease, nil); !errors.Is(err, ErrReservedType) {
		t.Errorf("publishing a lease entry directly: %v", err)
	}

	id := putFile(t, ctx, n, 40_000)
	st := mustStatObject(t, n, id)
	if !st.Pinned || st.Leases != 1 || !st.LeasedUntil.Equal(clock.Now().Add(leaseTTL)) {
		t.Fatalf("after put: %+v", st)
	}
	seq := ownHead(t, n)
	checkLease(t, n, seq, id, clock.Now().Add(leaseTTL))
	if err := n.PinObject(ctx, id); err != nil {
		t.Fatal(err)
	}
	n.heartbeat()
	if got := ownHead(t, n); got != seq {
		t.Fatalf("pin and heartbeat with a fresh lease wrote %d entries", got-seq)
	}

	// Half the lease gone: the heartbeat renews it.
	clock.advance(leaseTTL - leaseRenew + time.Millisecond)
	n.heartbeat()
	if got := ownHead(t, n); got != seq+1 {
		t.Fatalf("heartbeat with a lease due wrote %d entries, want 1", got-seq)
	}
	checkLease(t, n, seq+1, id, clock.Now().Add(leaseTTL))

	if err := n.UnpinObject(id); err != nil {
		t.Fatal(err)
	}
	checkLease(t, n, seq+2, id, time.Time{})
	if st := mustStatObject(t, n, id); st.Pinned || st.Leases != 0 || !st.Cached() {
		t.Fatalf("after unpin: %+v", st)
	}
	n.heartbeat()
	if got := ownHead(t, n); got != seq+2 {
		t.Fatalf("heartbeat after unpin wrote %d entries", got-seq-2)
	}
}

// checkLease checks that entry seq of n's own feed leases id until until.
func checkLease(t *testing.T, n *Node, seq uint64, id cid.Cid, until time.Time) {
	t.Helper()
	e, err := n.store.Get(n.id, seq)
	if err != nil {
		t.Fatal(err)
	}
	l, err := feed.DecodeLease(e.Body)
	if e.Type != feed.TypeLease || err != nil {
		t.Fatalf("entry %d: type %q, %v", seq, e.Type, err)
	}
	if string(l.Object) != string(id.Bytes()) || !l.Until.Equal(until) {
		t.Fatalf("entry %d leases %x until %v, want %s until %v", seq, l.Object, l.Until, id, until)
	}
}

// TestEvictLRU: a node whose cache holds two and a half objects fetches
// four, pinning the first: the least recently fetched unpinned one goes.
// Every get asks for an eviction pass in the background, so each step
// is one whose outcome does not depend on when those passes run.
func TestEvictLRU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	const size = 40_000
	a := startNode(t, ctx)
	b, _ := startNodeWith(t, ctx, Config{CacheBytes: 5 * size / 2, Now: newTestClock().Now})
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	var ids []cid.Cid
	for range 4 {
		ids = append(ids, putFile(t, ctx, a, size))
	}
	mustGet(t, ctx, b, ids[0])
	if err := b.PinObject(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids[1:] {
		mustGet(t, ctx, b, id)
	}
	checkHeld(t, b, map[cid.Cid]bool{ids[0]: true, ids[1]: false, ids[2]: true, ids[3]: true})
	// Unpinned, the first is now the least recently used.
	if err := b.UnpinObject(ids[0]); err != nil {
		t.Fatal(err)
	}
	checkHeld(t, b, map[cid.Cid]bool{ids[0]: false, ids[2]: true, ids[3]: true})
	// The source kept every object it pinned, under its default cache.
	checkHeld(t, a, map[cid.Cid]bool{ids[0]: true, ids[1]: true, ids[2]: true, ids[3]: true})
}

// TestLeaseKeepsCopies: B follows A and holds copies of A's objects with a
// cache too small for any. B keeps those A leases, evicts the one A
// unpinned, keeps what A's heartbeat renews, and evicts it once the lease
// lapses on B's clock.
func TestLeaseKeepsCopies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	clockA, clockB := newTestClock(), newTestClock()
	a, _ := startNodeWith(t, ctx, Config{Now: clockA.Now})
	b, _ := startNodeWith(t, ctx, Config{CacheBytes: 1, Now: clockB.Now})
	leased, unpinned, later := putFile(t, ctx, a, 40_000), putFile(t, ctx, a, 20_000), putFile(t, ctx, a, 20_000)
	if err := a.UnpinObject(unpinned); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Contact(ctx, a.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	// B holds A's leases before the copies: every get is followed by an
	// eviction pass, which would take a copy whose lease has not come yet.
	waitHead(t, ctx, b, a.ID(), ownHead(t, a))
	for _, id := range []cid.Cid{leased, unpinned, later} {
		mustGet(t, ctx, b, id)
	}
	st := mustStatObject(t, b, leased)
	if st.Pinned || st.Leases != 1 || !st.LeasedUntil.Equal(clockA.Now().Add(leaseTTL)) || st.Cached() {
		t.Fatalf("B's copy of a leased object: %+v", st)
	}
	checkHeld(t, b, map[cid.Cid]bool{leased: true, unpinned: false, later: true})

	// A unpins: its ended lease reaches B, and B's copy becomes cache.
	if err := a.UnpinObject(later); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, a.ID(), ownHead(t, a))
	checkHeld(t, b, map[cid.Cid]bool{leased: true, later: false})

	// A's heartbeat renews its lease; B keeps its copy past the first end.
	clockA.advance(leaseTTL - leaseRenew + time.Millisecond)
	a.heartbeat()
	waitHead(t, ctx, b, a.ID(), ownHead(t, a))
	renewed := clockA.Now().Add(leaseTTL)
	if st := mustStatObject(t, b, leased); !st.LeasedUntil.Equal(renewed) {
		t.Fatalf("B sees the lease end at %v, want %v", st.LeasedUntil, renewed)
	}
	clockB.advance(leaseTTL + time.Millisecond)
	checkHeld(t, b, map[cid.Cid]bool{leased: true})

	// A stops renewing (it is not asked to beat again): once the lease
	// lapses on B's clock, B evicts its copy. A keeps its own.
	clockB.advance(renewed.Sub(clockB.Now()))
	checkHeld(t, b, map[cid.Cid]bool{leased: false})
	checkHeld(t, a, map[cid.Cid]bool{leased: true})
}

// TestCacheConfig: cache_bytes comes from config.json; a negative size is
// refused.
func TestCacheConfig(t *testing.T) {
	home := t.TempDir()
	if _, err := Init(home); err != nil {
		t.Fatal(err)
	}
	fc, err := LoadFileConfig(home)
	if err != nil || fc.CacheBytes != DefaultCacheBytes {
		t.Fatalf("a new home's cache_bytes: %d (%v), want %d", fc.CacheBytes, err, DefaultCacheBytes)
	}
	if _, err := New(Config{Home: home, CacheBytes: -1}); err == nil {
		t.Fatal("New accepted a negative cache size")
	}
}
