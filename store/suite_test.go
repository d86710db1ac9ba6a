package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// testTime is the claimed timestamp of every test entry.
var testTime = time.Unix(1_700_000_000, 0)

// author writes a test feed: it signs entries on its own head.
type author struct {
	t    testing.TB
	key  feed.PrivateKey
	id   feed.ID
	head feed.Head // head of the entries signed so far
}

// newAuthor returns the author whose key has seed n repeated.
func newAuthor(t testing.TB, n byte) *author {
	t.Helper()
	key, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{n}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return &author{t: t, key: key, id: key.Public()}
}

// sign signs an entry after head without moving a's head.
func (a *author) sign(head feed.Head, typ string, body []byte) *feed.Entry {
	a.t.Helper()
	e, err := feed.Sign(a.key, head, typ, body, testTime)
	if err != nil {
		a.t.Fatal(err)
	}
	return e
}

// next signs the entry after a's head and moves the head.
func (a *author) next(typ string, body []byte) *feed.Entry {
	a.t.Helper()
	e := a.sign(a.head, typ, body)
	a.head = e.Next()
	return e
}

// posts signs n post entries.
func (a *author) posts(n int) []*feed.Entry {
	a.t.Helper()
	es := make([]*feed.Entry, n)
	for i := range es {
		es[i] = a.next("post", fmt.Appendf(nil, "post %d by %s", a.head.Seq+1, a.id.Short()))
	}
	return es
}

// contact signs a contact entry.
func (a *author) contact(target feed.ID, rel feed.Relation) *feed.Entry {
	a.t.Helper()
	return a.next(feed.TypeContact, feed.Contact{Target: target, Rel: rel}.Encode())
}

// forkProof returns a proof that a forked at seq 1, distinguished by tag.
func (a *author) forkProof(tag string) *feed.ForkProof {
	a.t.Helper()
	p, err := feed.NewForkProof(a.sign(feed.Head{}, "post", []byte(tag+" one")), a.sign(feed.Head{}, "post", []byte(tag+" two")))
	if err != nil {
		a.t.Fatal(err)
	}
	return p
}

func mustAppend(t testing.TB, s Store, es ...*feed.Entry) {
	t.Helper()
	if err := s.Append(es); err != nil {
		t.Fatalf("Append of %d entries: %v", len(es), err)
	}
}

func sameEntry(a, b *feed.Entry) bool {
	return a != nil && b != nil && bytes.Equal(a.Encode(), b.Encode())
}

// checkFeed checks that s holds exactly want for a's feed.
func checkFeed(t testing.TB, s Store, id feed.ID, want []*feed.Entry) {
	t.Helper()
	var wantHead feed.Head
	if len(want) > 0 {
		wantHead = want[len(want)-1].Next()
	}
	head, err := s.Head(id)
	if err != nil || head != wantHead {
		t.Fatalf("Head = %d %v, %v; want %d", head.Seq, head.ID, err, wantHead.Seq)
	}
	got, err := s.Range(id, 1, len(want)+10)
	if err != nil {
		t.Fatalf("Range: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Range returned %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !sameEntry(got[i], want[i]) {
			t.Fatalf("Range entry %d differs from the appended one", i)
		}
	}
	if _, err := s.Get(id, uint64(len(want))+1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get past the head: %v, want ErrNotFound", err)
	}
}

// testStore is the conformance suite every Store implementation passes.
// open returns a new empty store, closed at the end of the test.
func testStore(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Empty", testEmpty},
		{"AppendAndRead", testAppendAndRead},
		{"Range", testRange},
		{"NotContiguous", testNotContiguous},
		{"BadEntries", testBadEntries},
		{"ManyAuthors", testManyAuthors},
		{"Contacts", testContacts},
		{"BadContactBody", testBadContactBody},
		{"PeerClocks", testPeerClocks},
		{"ForkProofs", testForkProofs},
		{"Closed", testClosed},
		{"ConcurrentAppendsOneFeed", testConcurrentAppendsOneFeed},
		{"ConcurrentAppendsManyFeeds", testConcurrentAppendsManyFeeds},
		{"Copies", testCopies},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func testEmpty(t *testing.T, s Store) {
	a := newAuthor(t, 1)
	if h, err := s.Head(a.id); err != nil || h != (feed.Head{}) {
		t.Errorf("Head of unknown feed = %v, %v; want zero, nil", h, err)
	}
	if hs, err := s.Heads(); err != nil || len(hs) != 0 || hs == nil {
		t.Errorf("Heads = %v, %v; want empty map", hs, err)
	}
	if _, err := s.Get(a.id, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	if es, err := s.Range(a.id, 0, 10); err != nil || len(es) != 0 {
		t.Errorf("Range = %d entries, %v; want none", len(es), err)
	}
	if r, err := s.Relation(a.id, a.id); err != nil || r != feed.RelNone {
		t.Errorf("Relation = %v, %v; want none", r, err)
	}
	if cs, err := s.Contacts(a.id); err != nil || cs == nil || len(cs) != 0 {
		t.Errorf("Contacts = %v, %v; want empty map", cs, err)
	}
	if c, err := s.PeerClock(a.id); err != nil || c == nil || len(c) != 0 {
		t.Errorf("PeerClock = %v, %v; want empty map", c, err)
	}
	if _, err := s.ForkProof(a.id); !errors.Is(err, ErrNotFound) {
		t.Errorf("ForkProof = %v, want ErrNotFound", err)
	}
	if ps, err := s.ForkProofs(); err != nil || len(ps) != 0 {
		t.Errorf("ForkProofs = %d, %v; want none", len(ps), err)
	}
	if err := s.Append(nil); err != nil {
		t.Errorf("Append(nil) = %v", err)
	}
	if err := s.Append([]*feed.Entry{}); err != nil {
		t.Errorf("Append(empty) = %v", err)
	}
	if hs, _ := s.Heads(); len(hs) != 0 {
		t.Errorf("empty Append created a feed")
	}
}

func testAppendAndRead(t *testing.T, s Store) {
	a := newAuthor(t, 1)
	var all []*feed.Entry
	for _, n := range []int{1, 3, 2} {
		es := a.posts(n)
		mustAppend(t, s, es...)
		all = append(all, es...)
		checkFeed(t, s, a.id, all)
	}
	for i, want := range all {
		got, err := s.Get(a.id, uint64(i+1))
		if err != nil || !sameEntry(got, want) {
			t.Fatalf("Get(%d) = %v; differs from the appended entry", i+1, err)
		}
		if got.ID() != want.ID() {
			t.Fatalf("Get(%d) ID differs", i+1)
		}
	}
	if _, err := s.Get(a.id, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(0) = %v, want ErrNotFound", err)
	}
	if hs, err := s.Heads(); err != nil || len(hs) != 1 || hs[a.id] != a.head {
		t.Errorf("Heads = %v, %v; want one feed at %d", hs, err, a.head.Seq)
	}
}

func testRange(t *testing.T, s Store) {
	a := newAuthor(t, 1)
	es := a.posts(5)
	mustAppend(t, s, es...)
	other := newAuthor(t, 2) // a neighbouring feed must not leak into a's range
	mustAppend(t, s, other.posts(3)...)
	tests := []struct {
		from  uint64
		limit int
		want  []uint64
	}{
		{0, 10, []uint64{1, 2, 3, 4, 5}},
		{1, 10, []uint64{1, 2, 3, 4, 5}},
		{1, 5, []uint64{1, 2, 3, 4, 5}},
		{1, 1, []uint64{1}},
		{2, 1, []uint64{2}},
		{3, 2, []uint64{3, 4}},
		{4, 100, []uint64{4, 5}},
		{5, 10, []uint64{5}},
		{6, 10, nil},
		{1 << 40, 10, nil},
		{1, 0, nil},
		{1, -1, nil},
	}
	for _, tc := range tests {
		got, err := s.Range(a.id, tc.from, tc.limit)
		if err != nil {
			t.Fatalf("Range(%d, %d): %v", tc.from, tc.limit, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("Range(%d, %d) returned %d entries, want %d", tc.from, tc.limit, len(got), len(tc.want))
		}
		for i, seq := range tc.want {
			if !sameEntry(got[i], es[seq-1]) {
				t.Fatalf("Range(%d, %d)[%d] is not seq %d", tc.from, tc.limit, i, seq)
			}
		}
		// RangeEncoded returns the same entries, encoded.
		enc, err := s.RangeEncoded(a.id, tc.from, tc.limit, 1<<20)
		if err != nil || len(enc) != len(tc.want) {
			t.Fatalf("RangeEncoded(%d, %d) = %d encodings, %v; want %d", tc.from, tc.limit, len(enc), err, len(tc.want))
		}
		for i, seq := range tc.want {
			if !bytes.Equal(enc[i], es[seq-1].Encode()) {
				t.Fatalf("RangeEncoded(%d, %d)[%d] is not seq %d", tc.from, tc.limit, i, seq)
			}
		}
	}
	// maxBytes stops it before the byte budget is exceeded, but never
	// before the first entry.
	size := len(es[0].Encode())
	for _, tc := range []struct{ maxBytes, want int }{{0, 1}, {size - 1, 1}, {size, 1}, {2 * size, 2}, {3*size - 1, 2}, {1 << 20, 5}} {
		enc, err := s.RangeEncoded(a.id, 1, 10, tc.maxBytes)
		if err != nil || len(enc) != tc.want {
			t.Errorf("RangeEncoded with %d bytes = %d encodings, %v; want %d", tc.maxBytes, len(enc), err, tc.want)
		}
	}
	if enc, err := s.RangeEncoded(other.id, 4, 10, 1<<20); err != nil || len(enc) != 0 {
		t.Errorf("RangeEncoded past the head = %d, %v", len(enc), err)
	}
}

// ids returns the entries' IDs.
func ids(es []*feed.Entry) []feed.Hash {
	out := make([]feed.Hash, len(es))
	for i, e := range es {
		out[i] = e.ID()
	}
	return out
}

func testNotContiguous(t *testing.T, s Store) {
	a := newAuthor(t, 1)
	b := newAuthor(t, 2)
	x := newAuthor(t, 3)
	base := a.posts(2)
	mustAppend(t, s, base...)
	h1 := base[0].Next()
	h2 := a.head
	bogus := feed.Head{Seq: h2.Seq, ID: sha256.Sum256([]byte("not an entry"))}
	follow := func(h feed.Head) *feed.Entry {
		return a.sign(h, feed.TypeContact, feed.Contact{Target: x.id, Rel: feed.RelFollow}.Encode())
	}
	e3 := follow(h2) // a valid next entry that would change the graph
	e4 := a.sign(e3.Next(), "post", []byte("four"))
	e5 := a.sign(e4.Next(), "post", []byte("five"))

	tests := []struct {
		name  string
		batch []*feed.Entry
	}{
		{"seq skips one", []*feed.Entry{a.sign(feed.Head{Seq: h2.Seq + 1, ID: h2.ID}, "post", nil)}},
		{"seq repeats head", []*feed.Entry{a.sign(h1, "post", []byte("again"))}},
		{"seq far behind", []*feed.Entry{a.sign(feed.Head{}, "post", []byte("first again"))}},
		{"wrong prev", []*feed.Entry{a.sign(bogus, "post", nil)}},
		{"new feed at seq 2", []*feed.Entry{b.sign(feed.Head{Seq: 1, ID: bogus.ID}, "post", nil)}},
		{"mixed authors", []*feed.Entry{e3, b.sign(feed.Head{}, "post", nil)}},
		{"mixed authors same seqs", []*feed.Entry{e3, b.sign(e3.Next(), "post", nil)}},
		{"gap inside", []*feed.Entry{e3, e5}},
		{"wrong prev inside", []*feed.Entry{e3, a.sign(feed.Head{Seq: 3, ID: bogus.ID}, "post", nil)}},
		{"repeated entry", []*feed.Entry{e3, e3}},
		{"broken at the end", []*feed.Entry{e3, e4, e5, a.sign(feed.Head{Seq: 5, ID: bogus.ID}, "post", nil)}},
		{"out of order", []*feed.Entry{e4, e3}},
	}
	for _, tc := range tests {
		err := s.Append(tc.batch)
		if !errors.Is(err, ErrNotContiguous) {
			t.Errorf("%s: Append = %v, want ErrNotContiguous", tc.name, err)
		}
		if err := s.AppendIDs(tc.batch, ids(tc.batch)); !errors.Is(err, ErrNotContiguous) {
			t.Errorf("%s: AppendIDs = %v, want ErrNotContiguous", tc.name, err)
		}
		// Nothing was written: a's feed, b's feed and a's contacts are as before.
		checkFeed(t, s, a.id, base)
		checkFeed(t, s, b.id, nil)
		if r, err := s.Relation(a.id, x.id); err != nil || r != feed.RelNone {
			t.Fatalf("%s: failed Append changed the graph: %v, %v", tc.name, r, err)
		}
		if hs, err := s.Heads(); err != nil || len(hs) != 1 {
			t.Fatalf("%s: Heads = %v, %v", tc.name, hs, err)
		}
	}
	// The valid batch still goes in, once; IDs of the wrong number are
	// refused first.
	if err := s.AppendIDs([]*feed.Entry{e3, e4, e5}, ids([]*feed.Entry{e3, e4})); err == nil {
		t.Error("AppendIDs with too few IDs succeeded")
	}
	if err := s.AppendIDs([]*feed.Entry{e3, e4, e5}, ids([]*feed.Entry{e3, e4, e5})); err != nil {
		t.Fatal(err)
	}
	checkFeed(t, s, a.id, append(base, e3, e4, e5))
	if h, err := s.Head(a.id); err != nil || h != e5.Next() {
		t.Errorf("head after AppendIDs = %v, %v", h, err)
	}
	if err := s.Append([]*feed.Entry{e3, e4, e5}); !errors.Is(err, ErrNotContiguous) {
		t.Errorf("second Append of the same batch = %v, want ErrNotContiguous", err)
	}
	if r, _ := s.Relation(a.id, x.id); r != feed.RelFollow {
		t.Errorf("Relation after the valid batch = %v, want follow", r)
	}
}

func testBadEntries(t *testing.T, s Store) {
	a := newAuthor(t, 1)
	e1 := a.sign(feed.Head{}, "post", nil)
	badType := *e1
	badType.Type = "Not A Type"
	badSeq := *e1
	badSeq.Seq = 0
	tests := []struct {
		name  string
		batch []*feed.Entry
		want  error // nil: any error
	}{
		{"nil entry", []*feed.Entry{nil}, nil},
		{"nil after a good one", []*feed.Entry{e1, nil}, nil},
		{"bad type", []*feed.Entry{&badType}, feed.ErrBadType},
		{"seq 0", []*feed.Entry{&badSeq}, feed.ErrBadSeq},
		{"too many", func() []*feed.Entry {
			es := make([]*feed.Entry, MaxBatch+1)
			for i := range es {
				es[i] = e1
			}
			return es
		}(), ErrBatchTooLarge},
	}
	for _, tc := range tests {
		err := s.Append(tc.batch)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: Append = %v, want %v", tc.name, err, tc.want)
		}
		checkFeed(t, s, a.id, nil)
	}
}

func testManyAuthors(t *testing.T, s Store) {
	const n = 24
	want := make(map[feed.ID]feed.Head)
	entries := make(map[feed.ID][]*feed.Entry)
	var authors []*author
	for i := range n {
		a := newAuthor(t, byte(i+1))
		authors = append(authors, a)
		es := a.posts(i%4 + 1)
		mustAppend(t, s, es...)
		want[a.id] = a.head
		entries[a.id] = es
	}
	heads, err := s.Heads()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(heads, want) {
		t.Fatalf("Heads returned %d feeds, want %d (or heads differ)", len(heads), len(want))
	}
	for _, a := range authors {
		checkFeed(t, s, a.id, entries[a.id])
	}
}

func testContacts(t *testing.T, s Store) {
	a, b, c, d := newAuthor(t, 1), newAuthor(t, 2), newAuthor(t, 3), newAuthor(t, 4)
	other := newAuthor(t, 5)
	check := func(step string, from *author, want map[feed.ID]feed.Relation) {
		t.Helper()
		got, err := s.Contacts(from.id)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: Contacts = %v, %v; want %v", step, got, err, want)
		}
		for _, x := range []*author{a, b, c, d, other} {
			r, err := s.Relation(from.id, x.id)
			if err != nil || r != want[x.id] {
				t.Fatalf("%s: Relation → %s = %v, %v; want %v", step, x.id.Short(), r, err, want[x.id])
			}
		}
	}
	mustAppend(t, s, a.contact(b.id, feed.RelFollow))
	check("follow", a, map[feed.ID]feed.Relation{b.id: feed.RelFollow})
	mustAppend(t, s, a.posts(1)[0], a.contact(c.id, feed.RelBlock))
	check("block", a, map[feed.ID]feed.Relation{b.id: feed.RelFollow, c.id: feed.RelBlock})
	mustAppend(t, s, a.contact(b.id, feed.RelNone))
	check("unfollow", a, map[feed.ID]feed.Relation{c.id: feed.RelBlock})
	// Within one batch the latest entry wins.
	mustAppend(t, s, a.contact(d.id, feed.RelFollow), a.contact(d.id, feed.RelBlock), a.contact(c.id, feed.RelNone), a.contact(c.id, feed.RelFollow))
	check("latest wins", a, map[feed.ID]feed.Relation{c.id: feed.RelFollow, d.id: feed.RelBlock})
	mustAppend(t, s, a.contact(d.id, feed.RelNone), a.contact(c.id, feed.RelNone))
	check("all gone", a, map[feed.ID]feed.Relation{})
	// Another author's graph is its own.
	mustAppend(t, s, other.contact(a.id, feed.RelBlock), other.contact(other.id, feed.RelFollow))
	check("other author", other, map[feed.ID]feed.Relation{a.id: feed.RelBlock, other.id: feed.RelFollow})
	check("unchanged", a, map[feed.ID]feed.Relation{})
}

func testBadContactBody(t *testing.T, s Store) {
	a, b := newAuthor(t, 1), newAuthor(t, 2)
	mustAppend(t, s, a.contact(b.id, feed.RelFollow))
	badRel := feed.Contact{Target: b.id, Rel: feed.RelNone}.Encode()
	badRel[33] = 7
	badVersion := feed.Contact{Target: b.id, Rel: feed.RelBlock}.Encode()
	badVersion[0] = 9
	es := []*feed.Entry{
		a.next(feed.TypeContact, []byte("not a contact")),
		a.next(feed.TypeContact, nil),
		a.next(feed.TypeContact, badRel),
		a.next(feed.TypeContact, badVersion),
		a.next("post", feed.Contact{Target: b.id, Rel: feed.RelBlock}.Encode()), // not a contact entry
	}
	mustAppend(t, s, es...)
	if h, _ := s.Head(a.id); h != a.head {
		t.Fatalf("Head = %d, want %d: bad contact bodies must be stored", h.Seq, a.head.Seq)
	}
	for _, e := range es {
		got, err := s.Get(a.id, e.Seq)
		if err != nil || !sameEntry(got, e) {
			t.Fatalf("Get(%d) = %v; want the stored entry", e.Seq, err)
		}
	}
	if r, err := s.Relation(a.id, b.id); err != nil || r != feed.RelFollow {
		t.Errorf("Relation = %v, %v; want follow, unchanged", r, err)
	}
	if cs, _ := s.Contacts(a.id); len(cs) != 1 {
		t.Errorf("Contacts = %v, want only the follow", cs)
	}
}

func testPeerClocks(t *testing.T, s Store) {
	p, q := newAuthor(t, 1).id, newAuthor(t, 2).id
	f1, f2, f3 := newAuthor(t, 3).id, newAuthor(t, 4).id, newAuthor(t, 5).id
	check := func(step string, peer feed.ID, want map[feed.ID]int64) {
		t.Helper()
		got, err := s.PeerClock(peer)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("%s: PeerClock = %v, %v; want %v", step, got, err, want)
		}
	}
	if err := s.SetPeerClock(p, map[feed.ID]int64{f1: 2, f2: -1}); err != nil {
		t.Fatal(err)
	}
	check("first", p, map[feed.ID]int64{f1: 2, f2: -1})
	if err := s.SetPeerClock(p, map[feed.ID]int64{f2: 9, f3: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	check("merge", p, map[feed.ID]int64{f1: 2, f2: 9, f3: 1 << 40})
	if err := s.SetPeerClock(p, nil); err != nil {
		t.Fatal(err)
	}
	check("empty merge", p, map[feed.ID]int64{f1: 2, f2: 9, f3: 1 << 40})
	check("other peer", q, map[feed.ID]int64{})
	if err := s.SetPeerClock(q, map[feed.ID]int64{f1: 0}); err != nil {
		t.Fatal(err)
	}
	check("other peer set", q, map[feed.ID]int64{f1: 0})
	check("first peer unchanged", p, map[feed.ID]int64{f1: 2, f2: 9, f3: 1 << 40})
	// A clock of thousands of feeds is stored whole.
	big := make(map[feed.ID]int64)
	for i := range 5000 {
		var id feed.ID
		copy(id[:], fmt.Appendf(nil, "feed %d", i))
		big[id] = int64(i) << 1
	}
	if err := s.SetPeerClock(q, big); err != nil {
		t.Fatal(err)
	}
	big[f1] = 0
	check("big", q, big)
}

func testForkProofs(t *testing.T, s Store) {
	a, b, c := newAuthor(t, 1), newAuthor(t, 2), newAuthor(t, 3)
	mustAppend(t, s, a.posts(2)...)
	first := a.forkProof("first")
	if err := s.AddForkProof(first); err != nil {
		t.Fatal(err)
	}
	if err := s.AddForkProof(a.forkProof("second")); err != nil {
		t.Fatalf("second proof: %v, want nil (ignored)", err)
	}
	got, err := s.ForkProof(a.id)
	if err != nil || !sameEntry(got.A, first.A) || !sameEntry(got.B, first.B) {
		t.Fatalf("ForkProof = %v; want the first proof", err)
	}
	if err := got.Verify(); err != nil {
		t.Fatalf("stored proof does not verify: %v", err)
	}
	// The feed is frozen, even for a batch that would extend it.
	if err := s.Append(a.posts(1)); !errors.Is(err, ErrForked) {
		t.Fatalf("Append to forked feed = %v, want ErrForked", err)
	}
	if h, _ := s.Head(a.id); h.Seq != 2 {
		t.Fatalf("forked feed's head moved to %d", h.Seq)
	}
	// A forked feed with no entries is frozen too; other feeds are not.
	if err := s.AddForkProof(c.forkProof("c")); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(c.posts(1)); !errors.Is(err, ErrForked) {
		t.Fatalf("Append to forked empty feed = %v, want ErrForked", err)
	}
	mustAppend(t, s, b.posts(1)...)
	if _, err := s.ForkProof(b.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ForkProof(b) = %v, want ErrNotFound", err)
	}
	// Proofs that do not verify are refused.
	same := a.sign(feed.Head{}, "post", []byte("x"))
	tampered := a.forkProof("tampered")
	tampered.B.Body = []byte("changed after signing")
	for name, p := range map[string]*feed.ForkProof{
		"nil":            nil,
		"same entry":     {A: same, B: same},
		"missing entry":  {A: same},
		"two authors":    {A: same, B: b.sign(feed.Head{}, "post", []byte("x"))},
		"bad signature":  tampered,
		"different seqs": {A: same, B: a.sign(same.Next(), "post", nil)},
	} {
		if err := s.AddForkProof(p); err == nil {
			t.Errorf("AddForkProof(%s) = nil, want an error", name)
		}
	}
	if _, err := s.ForkProof(b.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused proof was stored: %v", err)
	}
	ps, err := s.ForkProofs()
	if err != nil || len(ps) != 2 {
		t.Fatalf("ForkProofs = %d, %v; want 2", len(ps), err)
	}
	authors := map[feed.ID]bool{ps[0].Author(): true, ps[1].Author(): true}
	if !authors[a.id] || !authors[c.id] {
		t.Fatalf("ForkProofs are not a's and c's")
	}
	if bytes.Compare(ps[0].Author().PeerIDBytes(), ps[1].Author().PeerIDBytes()) > 0 {
		t.Errorf("ForkProofs not ordered by author")
	}
}

func testClosed(t *testing.T, s Store) {
	a, b := newAuthor(t, 1), newAuthor(t, 2)
	mustAppend(t, s, a.posts(1)...)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"Append":       func() error { return s.Append(a.posts(1)) },
		"Append empty": func() error { return s.Append(nil) },
		"Head":         func() error { _, err := s.Head(a.id); return err },
		"Heads":        func() error { _, err := s.Heads(); return err },
		"Get":          func() error { _, err := s.Get(a.id, 1); return err },
		"Range":        func() error { _, err := s.Range(a.id, 1, 10); return err },
		"Relation":     func() error { _, err := s.Relation(a.id, b.id); return err },
		"Contacts":     func() error { _, err := s.Contacts(a.id); return err },
		"PeerClock":    func() error { _, err := s.PeerClock(a.id); return err },
		"SetPeerClock": func() error { return s.SetPeerClock(a.id, map[feed.ID]int64{b.id: 1}) },
		"AddForkProof": func() error { return s.AddForkProof(b.forkProof("x")) },
		"ForkProof":    func() error { _, err := s.ForkProof(a.id); return err },
		"ForkProofs":   func() error { _, err := s.ForkProofs(); return err },
		"Sync":         s.Sync,
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func testConcurrentAppendsOneFeed(t *testing.T, s Store) {
	const writers, rounds = 16, 50
	a := newAuthor(t, 1)
	for round := range rounds {
		head := a.head
		// Every writer holds a different valid batch over the same head.
		batches := make([][]*feed.Entry, writers)
		for w := range batches {
			e1 := a.sign(head, "post", fmt.Appendf(nil, "round %d writer %d", round, w))
			batches[w] = []*feed.Entry{e1, a.sign(e1.Next(), "post", nil)}
		}
		errs := make([]error, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				<-start
				errs[w] = s.Append(batches[w])
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: writers %d and %d both appended over seq %d", round, winner, w, head.Seq)
			case err == nil:
				winner = w
			case !errors.Is(err, ErrNotContiguous):
				t.Fatalf("round %d: writer %d: %v, want ErrNotContiguous", round, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer appended", round)
		}
		a.head = batches[winner][1].Next()
		if h, err := s.Head(a.id); err != nil || h != a.head {
			t.Fatalf("round %d: head is not the winner's last entry: %v", round, err)
		}
		if got, err := s.Get(a.id, head.Seq+1); err != nil || !sameEntry(got, batches[winner][0]) {
			t.Fatalf("round %d: stored entry is not the winner's: %v", round, err)
		}
	}
}

func testConcurrentAppendsManyFeeds(t *testing.T, s Store) {
	const feeds, batches = 4, 4
	authors := make([]*author, feeds)
	entries := make([][][]*feed.Entry, feeds)
	for i := range authors {
		authors[i] = newAuthor(t, byte(i+1))
		for range batches {
			entries[i] = append(entries[i], authors[i].posts(3))
		}
	}
	errs := make(chan error, feeds*batches)
	var wg sync.WaitGroup
	for i := range authors {
		wg.Go(func() {
			for _, b := range entries[i] {
				if err := s.Append(b); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, a := range authors {
		var all []*feed.Entry
		for _, b := range entries[i] {
			all = append(all, b...)
		}
		checkFeed(t, s, a.id, all)
	}
}

func testCopies(t *testing.T, s Store) {
	a := newAuthor(t, 1)
	es := a.posts(2)
	want := []*feed.Entry{cloneEntry(es[0]), cloneEntry(es[1])}
	mustAppend(t, s, es...)
	// The caller reuses its entries.
	es[0].Body[0] ^= 0xff
	es[1].Type = "changed"
	es[1].Sig[0] ^= 0xff
	checkFeed(t, s, a.id, want)
	// The caller modifies what it was given.
	got, err := s.Get(a.id, 1)
	if err != nil {
		t.Fatal(err)
	}
	got.Body[0] ^= 0xff
	got.Seq = 7
	rs, err := s.Range(a.id, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	rs[1].Body[0] ^= 0xff
	rs[0] = nil
	checkFeed(t, s, a.id, want)

	p := a.forkProof("copy")
	wantA := cloneEntry(p.A)
	if err := s.AddForkProof(p); err != nil {
		t.Fatal(err)
	}
	p.A.Body[0] ^= 0xff
	gp, err := s.ForkProof(a.id)
	if err != nil || !sameEntry(gp.A, wantA) {
		t.Fatalf("stored proof changed with the caller's: %v", err)
	}
	gp.A.Body[0] ^= 0xff
	gp.B = nil
	if gp, err := s.ForkProof(a.id); err != nil || !sameEntry(gp.A, wantA) || gp.B == nil {
		t.Fatalf("stored proof changed with the returned one: %v", err)
	}

	clock := map[feed.ID]int64{a.id: 4}
	if err := s.SetPeerClock(a.id, clock); err != nil {
		t.Fatal(err)
	}
	clock[a.id] = 5
	gc, _ := s.PeerClock(a.id)
	gc[a.id] = 6
	if gc, _ := s.PeerClock(a.id); gc[a.id] != 4 {
		t.Fatalf("stored clock changed with a caller's map: %d", gc[a.id])
	}
}
