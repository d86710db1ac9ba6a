package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// boundsStore is what the bounds suite needs: every interface.
type boundsStore interface {
	Store
	Contexts
	Objects
	Bounds
}

// testBounds is the conformance suite every Bounds implementation passes.
// open returns a new empty store, closed at the end of the test.
func testBounds(t *testing.T, open func(t *testing.T) boundsStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s boundsStore)
	}{
		{"FeedQuota", testFeedQuota},
		{"CtxQuota", testCtxQuota},
		{"Prune", testPrune},
		{"DeleteFeed", testDeleteFeed},
		{"DeleteObject", testDeleteObject},
		{"Closed", testBoundsClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// encSize is the bytes of the entries' encodings.
func encSize(es ...*feed.Entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(e.EncodedSize())
	}
	return n
}

func mustFeedBytes(t *testing.T, s boundsStore, id feed.ID, want int64) {
	t.Helper()
	if n, err := s.FeedBytes(id); err != nil || n != want {
		t.Fatalf("FeedBytes = %d, %v; want %d", n, err, want)
	}
}

// verifyRemains reads what s holds of a's feed and checks it as a reader
// of a pruned copy does: the first entry held (the boundary, the new
// trust root) by its own signature, and every entry from it to the head
// by its hash links and the head's signature. It returns the entries.
func verifyRemains(t *testing.T, s boundsStore, id feed.ID) []*feed.Entry {
	t.Helper()
	tail, err := s.Tail(id)
	if err != nil {
		t.Fatal(err)
	}
	head, err := s.Head(id)
	if err != nil || tail == 0 || head.Seq < tail {
		t.Fatalf("Tail %d, Head %d, %v", tail, head.Seq, err)
	}
	es, err := s.Range(id, tail, int(head.Seq-tail+1))
	if err != nil || uint64(len(es)) != head.Seq-tail+1 || es[0].Seq != tail {
		t.Fatalf("Range from the tail %d: %d entries, %v", tail, len(es), err)
	}
	if err := es[0].VerifySignature(); err != nil {
		t.Fatalf("boundary entry %d: %v", tail, err)
	}
	ids, err := feed.VerifyRun(id, feed.Head{Seq: tail - 1, ID: es[0].Prev}, es)
	if err != nil {
		t.Fatalf("what remains does not verify: %v", err)
	}
	if got := (feed.Head{Seq: head.Seq, ID: ids[len(ids)-1]}); got != head {
		t.Fatalf("verified head %v, stored %v", got, head)
	}
	return es
}

func testFeedQuota(t *testing.T, s boundsStore) {
	self, a, ex := newAuthor(t, 1), newAuthor(t, 2), newAuthor(t, 3)
	first := a.posts(3)
	quota := encSize(first...) + 10
	s.SetQuotas(Quotas{FeedBytes: quota, Self: self.id, Exempt: func(id feed.ID) bool { return id == ex.id }})
	mustAppend(t, s, first...)
	mustFeedBytes(t, s, a.id, encSize(first...))

	over := a.posts(2)
	err := s.Append(over)
	var qe *QuotaError
	if !errors.Is(err, ErrQuota) || !errors.As(err, &qe) || qe.Author != a.id || !qe.Context.IsZero() ||
		qe.Held != encSize(first...) || qe.Adding != encSize(over...) || qe.Quota != quota || qe.Fit != 0 {
		t.Fatalf("Append past the quota: %v", err)
	}
	// Nothing of the refused batch is stored; what is verifies.
	mustFeedBytes(t, s, a.id, encSize(first...))
	if _, err := s.Get(a.id, 4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a refused entry: %v", err)
	}
	if es := verifyRemains(t, s, a.id); len(es) != 3 {
		t.Fatalf("%d entries remain, want 3", len(es))
	}
	// The node's own feed and the exempt ones are never refused.
	for _, w := range []*author{self, ex} {
		mustAppend(t, s, w.posts(5)...)
	}
	// Fit counts the leading entries within the quota.
	s.SetQuotas(Quotas{FeedBytes: encSize(first...) + encSize(over[0])})
	if err := s.Append(over); !errors.As(err, &qe) || qe.Fit != 1 {
		t.Fatalf("Append with room for one: %v", err)
	}
	mustFeedBytes(t, s, a.id, encSize(first...))
	// Raising the quota lets the feed go on.
	s.SetQuotas(Quotas{FeedBytes: 2 * quota})
	mustAppend(t, s, over...)
	mustFeedBytes(t, s, a.id, encSize(first...)+encSize(over...))
}

func testCtxQuota(t *testing.T, s boundsStore) {
	self, a, b := newAuthor(t, 1), newAuthor(t, 2), newAuthor(t, 3)
	room, other := newAuthor(t, 9).id, newAuthor(t, 8).id
	am := []*feed.Entry{a.msg(room, "a1"), a.msg(room, "a2")}
	own := self.msg(room, "mine, not counted")
	quota := encSize(am...) + encSize(am[0])/2
	s.SetQuotas(Quotas{CtxBytes: quota, Self: self.id})
	mustAppend(t, s, am...)
	mustAppend(t, s, own)
	if n, err := s.CtxBytes(room); err != nil || n != encSize(am...)+encSize(own) {
		t.Fatalf("CtxBytes = %d, %v", n, err)
	}
	// b's message would pass the room's quota of other authors' bytes.
	bm := b.msg(room, "b1")
	err := s.Append([]*feed.Entry{bm})
	var qe *QuotaError
	if !errors.As(err, &qe) || qe.Context != room || qe.Author != b.id || qe.Held != encSize(am...) || qe.Fit != 0 {
		t.Fatalf("Append past the context quota: %v", err)
	}
	if h, _ := s.Head(b.id); h.Seq != 0 {
		t.Fatalf("refused message stored: head %d", h.Seq)
	}
	// Another context, and the node's own messages, are not bound by it.
	b.head = feed.Head{}
	mustAppend(t, s, b.msg(other, "elsewhere"))
	mustAppend(t, s, self.msg(room, "mine again"))
	if got := refs(t, s, room, 0, 10, false); len(got) != 4 {
		t.Fatalf("room holds %d messages, want 4", len(got))
	}
}

func testPrune(t *testing.T, s boundsStore) {
	a, b := newAuthor(t, 2), newAuthor(t, 3)
	room := newAuthor(t, 9).id
	var es []*feed.Entry
	for i := range 10 {
		if i%2 == 0 {
			es = append(es, a.msg(room, "m"))
		} else {
			es = append(es, a.posts(1)...)
		}
	}
	mustAppend(t, s, es...)
	bm := b.msg(room, "b")
	mustAppend(t, s, bm)
	if tail, err := s.Tail(a.id); err != nil || tail != 1 {
		t.Fatalf("Tail before pruning = %d, %v", tail, err)
	}

	freed, err := s.Prune(a.id, 6)
	if err != nil || freed != encSize(es[:5]...) {
		t.Fatalf("Prune = %d, %v; want %d", freed, err, encSize(es[:5]...))
	}
	// The pruned entries are gone, with their bytes.
	mustFeedBytes(t, s, a.id, encSize(es[5:]...))
	if tail, err := s.Tail(a.id); err != nil || tail != 6 {
		t.Fatalf("Tail = %d, %v; want 6", tail, err)
	}
	var pe *PrunedError
	if _, err := s.Get(a.id, 3); !errors.As(err, &pe) || pe.Tail != 6 || !errors.Is(err, ErrPruned) {
		t.Fatalf("Get of a pruned entry: %v", err)
	}
	for _, from := range []uint64{0, 1, 5} {
		if _, err := s.Range(a.id, from, 10); !errors.Is(err, ErrPruned) {
			t.Fatalf("Range from %d: %v, want ErrPruned", from, err)
		}
		if _, err := s.RangeEncoded(a.id, from, 10, 1<<20); !errors.Is(err, ErrPruned) {
			t.Fatalf("RangeEncoded from %d: %v, want ErrPruned", from, err)
		}
	}
	// The room's index skips the pruned messages; its bytes drop.
	var want []CtxRef
	for _, r := range refs(t, s, room, 0, 100, false) {
		if r.Author == a.id && r.Seq < 6 {
			t.Fatalf("pruned message %d still listed", r.Seq)
		}
		want = append(want, r)
	}
	if len(want) != 3 { // a's 7 and 9, b's
		t.Fatalf("room lists %v", want)
	}
	if got := refs(t, s, room, 0, 2, true); !slices.Equal(got, []CtxRef{want[2], want[1]}) {
		t.Fatalf("newest two = %v", got)
	}
	if n, _ := s.CtxBytes(room); n != encSize(es[6], es[8], bm) {
		t.Fatalf("CtxBytes after pruning = %d, want %d", n, encSize(es[6], es[8], bm))
	}
	// What remains verifies from the boundary on, and the feed goes on.
	verifyRemains(t, s, a.id)
	more := a.posts(2)
	mustAppend(t, s, more...)
	// Pruning again, past the head, keeps the head entry: the feed's
	// signed boundary.
	if _, err := s.Prune(a.id, 100); err != nil {
		t.Fatal(err)
	}
	if es := verifyRemains(t, s, a.id); len(es) != 1 || es[0].Seq != 12 {
		t.Fatalf("after pruning everything: %d entries", len(es))
	}
	mustFeedBytes(t, s, a.id, encSize(more[1]))
	if n, err := s.Prune(a.id, 100); err != nil || n != 0 {
		t.Fatalf("Prune again = %d, %v", n, err)
	}
	if n, err := s.Prune(newAuthor(t, 4).id, 100); err != nil || n != 0 {
		t.Fatalf("Prune of an unknown feed = %d, %v", n, err)
	}
}

func testDeleteFeed(t *testing.T, s boundsStore) {
	a, b, peer := newAuthor(t, 2), newAuthor(t, 3), newAuthor(t, 4)
	room := newAuthor(t, 9).id
	o := newTestObject(t, 1, 2*testChunk)
	o.put(t, s)
	mustAppend(t, s, a.posts(2)...)
	mustAppend(t, s, a.contact(b.id, feed.RelFollow), a.msg(room, "a"), leaseEntry(a, o.id, testNow.Add(time.Hour)))
	bm := b.msg(room, "b")
	mustAppend(t, s, bm, leaseEntry(b, o.id, testNow.Add(time.Hour)), b.contact(a.id, feed.RelFollow))
	if err := s.SetPeerClock(peer.id, map[feed.ID]int64{a.id: 10, b.id: 6}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddForkProof(a.forkProof("x")); err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteFeed(a.id); err != nil {
		t.Fatal(err)
	}
	// Nothing of a is left ...
	if h, err := s.Head(a.id); err != nil || h.Seq != 0 {
		t.Fatalf("Head = %v, %v", h, err)
	}
	if hs, _ := s.Heads(); len(hs) != 1 {
		t.Fatalf("Heads lists %d feeds, want b's", len(hs))
	}
	for seq := range uint64(6) {
		if _, err := s.Get(a.id, seq+1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get %d: %v", seq+1, err)
		}
	}
	if es, err := s.Range(a.id, 0, 10); err != nil || len(es) != 0 {
		t.Fatalf("Range = %d, %v", len(es), err)
	}
	if cs, _ := s.Contacts(a.id); len(cs) != 0 {
		t.Fatalf("Contacts = %v", cs)
	}
	if _, err := s.ForkProof(a.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ForkProof: %v", err)
	}
	if c, _ := s.PeerClock(peer.id); len(c) != 1 || c[b.id] != 6 {
		t.Fatalf("PeerClock = %v", c)
	}
	if got := refs(t, s, room, 0, 10, false); len(got) != 1 || got[0].Author != b.id {
		t.Fatalf("room = %v", got)
	}
	if ms, _ := s.CtxMembers(room); len(ms) != 1 || ms[0].Author != b.id {
		t.Fatalf("members = %v", ms)
	}
	if n, _ := s.CtxBytes(room); n != encSize(bm) {
		t.Fatalf("CtxBytes = %d, want %d", n, encSize(bm))
	}
	checkLeases(t, s, o.id, map[feed.ID]time.Time{b.id: testNow.Add(time.Hour).Truncate(time.Millisecond)})
	mustFeedBytes(t, s, a.id, 0)
	if tail, err := s.Tail(a.id); err != nil || tail != 0 {
		t.Fatalf("Tail = %d, %v", tail, err)
	}
	// ... and the rest is whole.
	verifyRemains(t, s, b.id)
	if rel, _ := s.Relation(b.id, a.id); rel != feed.RelFollow {
		t.Fatalf("b's contact on a lost: %v", rel)
	}
	// The feed can be fetched again from scratch.
	a.head = feed.Head{}
	mustAppend(t, s, a.posts(3)...)
	verifyRemains(t, s, a.id)
	if err := s.DeleteFeed(newAuthor(t, 5).id); err != nil {
		t.Fatalf("DeleteFeed of an unknown feed: %v", err)
	}
}

func testDeleteObject(t *testing.T, s boundsStore) {
	o, keep := newTestObject(t, 1, 3*testChunk), newTestObject(t, 2, 2*testChunk)
	a := newAuthor(t, 2)
	o.put(t, s)
	keep.put(t, s)
	lease(t, s, a, o.id, testNow.Add(time.Hour))
	if err := s.Pin(o.id); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(o.id); err != nil {
		t.Fatal(err)
	}
	checkGone(t, s, o)
	if err := s.Delete(o.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete again: %v", err)
	}
	// The other object is whole.
	for i := range keep.tree.Chunks() {
		c, err := s.AppendChunks(nil, keep.id, i, 1)
		if err != nil || string(c) != string(keep.chunk(t, i)) {
			t.Fatalf("chunk %d of the kept object: %v", i, err)
		}
	}
	// The lease stays: it is what a's feed says; putting the object
	// again finds it.
	o.put(t, s)
	checkLeases(t, s, o.id, map[feed.ID]time.Time{a.id: testNow.Add(time.Hour)})
}

func testBoundsClosed(t *testing.T, s boundsStore) {
	a := newAuthor(t, 2)
	mustAppend(t, s, a.posts(3)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"FeedBytes":  func() error { _, err := s.FeedBytes(a.id); return err },
		"CtxBytes":   func() error { _, err := s.CtxBytes(a.id); return err },
		"Tail":       func() error { _, err := s.Tail(a.id); return err },
		"Prune":      func() error { _, err := s.Prune(a.id, 2); return err },
		"DeleteFeed": func() error { return s.DeleteFeed(a.id) },
		"Usage":      func() error { _, err := s.Usage(); return err },
		"Delete":     func() error { return s.Delete(newTestObject(t, 1, testChunk).id) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s on a closed store: %v, want ErrClosed", name, err)
		}
	}
	s.Compact() // a no-op, not a panic
}

func TestBoundsMem(t *testing.T) {
	testBounds(t, func(t *testing.T) boundsStore {
		m := NewMem()
		t.Cleanup(func() { m.Close() })
		return m
	})
}

func TestBoundsBadger(t *testing.T) {
	testBounds(t, func(t *testing.T) boundsStore { return openBadger(t, t.TempDir()) })
}
