package store

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/contextd/contextd/feed"
)

// ctxStore is what the context suite needs: appends and the index.
type ctxStore interface {
	Store
	Contexts
}

// testContexts is the conformance suite every Contexts implementation
// passes. open returns a new empty store, closed at the end of the test.
func testContexts(t *testing.T, open func(t *testing.T) ctxStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s ctxStore)
	}{
		{"Index", testCtxIndex},
		{"Paging", testCtxPaging},
		{"Joined", testCtxJoined},
		{"Concurrent", testCtxConcurrent},
		{"Closed", testCtxClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// msg signs a ctx entry of a in room.
func (a *author) msg(room feed.ID, text string) *feed.Entry {
	a.t.Helper()
	body, err := feed.Ctx{Context: room, Body: []byte(text)}.Encode()
	if err != nil {
		a.t.Fatal(err)
	}
	return a.next(feed.TypeCtx, body)
}

func refs(t *testing.T, s ctxStore, room feed.ID, from uint64, limit int, desc bool) []CtxRef {
	t.Helper()
	rs, err := s.CtxRefs(room, from, limit, desc)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func testCtxIndex(t *testing.T, s ctxStore) {
	a, b := newAuthor(t, 1), newAuthor(t, 2)
	room, other := newAuthor(t, 9).id, newAuthor(t, 8).id
	if c, err := s.CtxCursor(room); err != nil || c != 0 {
		t.Fatalf("cursor of an empty context: %d, %v", c, err)
	}
	if rs := refs(t, s, room, 0, 10, false); len(rs) != 0 {
		t.Fatalf("refs of an empty context: %v", rs)
	}
	// a: post, msg(room), msg(other), msg(room) in one batch; b: msg(room);
	// a bad ctx body is stored but not indexed.
	post := a.posts(1)[0]
	a1, ax, a2 := a.msg(room, "a1"), a.msg(other, "x"), a.msg(room, "a2")
	b1 := b.msg(room, "b1")
	a3 := a.msg(room, "a3")
	mustAppend(t, s, post, a1, ax, a2)
	mustAppend(t, s, b1, b.next(feed.TypeCtx, []byte{1, 2, 3}))
	mustAppend(t, s, a3)

	want := []CtxRef{{1, a.id, 2}, {2, a.id, 4}, {3, b.id, 1}, {4, a.id, 5}}
	if got := refs(t, s, room, 0, 100, false); !slices.Equal(got, want) {
		t.Fatalf("refs = %v, want %v", got, want)
	}
	if got := refs(t, s, other, 1, 100, false); !slices.Equal(got, []CtxRef{{1, a.id, 3}}) {
		t.Fatalf("other refs = %v", got)
	}
	if c, err := s.CtxCursor(room); err != nil || c != 4 {
		t.Fatalf("cursor = %d, %v", c, err)
	}
	ms, err := s.CtxMembers(room)
	if err != nil {
		t.Fatal(err)
	}
	size := func(es ...*feed.Entry) (n uint64) {
		for _, e := range es {
			n += uint64(e.EncodedSize())
		}
		return n
	}
	wantM := []CtxMember{{a.id, 3, 5, size(a1, a2, a3)}, {b.id, 1, 1, size(b1)}}
	slices.SortFunc(wantM, func(x, y CtxMember) int { return x.Author.Compare(y.Author) })
	if !slices.Equal(ms, wantM) {
		t.Fatalf("members = %v, want %v", ms, wantM)
	}
	// A failed append indexes nothing.
	if err := s.Append([]*feed.Entry{b.sign(feed.Head{}, feed.TypeCtx, []byte("x"))}); err == nil {
		t.Fatal("append over an existing seq succeeded")
	}
	if c, _ := s.CtxCursor(room); c != 4 {
		t.Fatalf("cursor after a failed append = %d", c)
	}
}

func testCtxPaging(t *testing.T, s ctxStore) {
	a := newAuthor(t, 1)
	room := newAuthor(t, 9).id
	var es []*feed.Entry
	for i := range 25 {
		es = append(es, a.msg(room, fmt.Sprint(i)))
	}
	mustAppend(t, s, es...)
	cursors := func(rs []CtxRef) (out []uint64) {
		for _, r := range rs {
			if r.Seq != r.Cursor {
				t.Fatalf("ref %v: seq and cursor differ", r)
			}
			out = append(out, r.Cursor)
		}
		return out
	}
	for _, tc := range []struct {
		from  uint64
		limit int
		desc  bool
		want  []uint64
	}{
		{0, 3, false, []uint64{1, 2, 3}},
		{24, 10, false, []uint64{24, 25}},
		{26, 10, false, nil},
		{0, 3, true, []uint64{25, 24, 23}},
		{2, 10, true, []uint64{2, 1}},
		{5, 0, false, nil},
	} {
		if got := cursors(refs(t, s, room, tc.from, tc.limit, tc.desc)); !slices.Equal(got, tc.want) {
			t.Errorf("from %d limit %d desc %v: %v, want %v", tc.from, tc.limit, tc.desc, got, tc.want)
		}
	}
}

func testCtxJoined(t *testing.T, s ctxStore) {
	x, y := newAuthor(t, 3).id, newAuthor(t, 4).id
	for _, step := range []struct {
		id     feed.ID
		joined bool
	}{{x, true}, {y, true}, {x, true}, {y, false}} {
		if err := s.SetJoined(step.id, step.joined); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Joined(); err != nil || !slices.Equal(got, []feed.ID{x}) {
		t.Fatalf("joined = %v, %v", got, err)
	}
	if err := s.SetJoined(y, false); err != nil {
		t.Fatalf("leaving twice: %v", err)
	}
}

// testCtxConcurrent appends messages of many authors to one context at
// once: every message gets one cursor, none is shared or skipped.
func testCtxConcurrent(t *testing.T, s ctxStore) {
	room := newAuthor(t, 9).id
	const authors, each = 8, 20
	var wg sync.WaitGroup
	for i := range authors {
		a := newAuthor(t, byte(10+i))
		wg.Go(func() {
			for j := range each {
				if err := s.Append([]*feed.Entry{a.msg(room, fmt.Sprint(j))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rs := refs(t, s, room, 0, authors*each+1, false)
	if len(rs) != authors*each {
		t.Fatalf("%d refs, want %d", len(rs), authors*each)
	}
	last := map[feed.ID]uint64{}
	for i, r := range rs {
		if r.Cursor != uint64(i+1) || r.Seq != last[r.Author]+1 {
			t.Fatalf("ref %d is %v after seq %d", i, r, last[r.Author])
		}
		last[r.Author] = r.Seq
	}
}

func testCtxClosed(t *testing.T, s ctxStore) {
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	room := newAuthor(t, 9).id
	if _, err := s.CtxRefs(room, 0, 1, false); err == nil {
		t.Error("CtxRefs on a closed store")
	}
	if _, err := s.CtxCursor(room); err == nil {
		t.Error("CtxCursor on a closed store")
	}
	if err := s.SetJoined(room, true); err == nil {
		t.Error("SetJoined on a closed store")
	}
}

func TestContextsMem(t *testing.T) {
	testContexts(t, func(t *testing.T) ctxStore {
		s := NewMem()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestContextsBadger(t *testing.T) {
	testContexts(t, func(t *testing.T) ctxStore { return openBadger(t, t.TempDir()) })
}
