package ebt

import (
	"errors"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// TestCoreWant: wanted feeds (a context's authors) join the scope without
// a follow, are offered to open sessions, leave it when no longer wanted,
// and a blocked feed never joins.
func TestCoreWant(t *testing.T) {
	w := newWorld(t, 3, 0)
	h := w.harness(t, 0)
	x, b := w.x.id, newChain(t, "b")
	w.me.contact(b.id, feed.RelBlock)
	h.do(evLocal{author: w.me.id, state: snap(w.me, len(w.me.entries))})
	h.connect(w.p1, true)

	acts := h.do(evWant{feeds: map[feed.ID]bool{x: true, b.id: true}})
	if !h.c.scope[x] || h.c.scope[b.id] {
		t.Fatalf("scope after want: x %v, blocked b %v", h.c.scope[x], h.c.scope[b.id])
	}
	sent, ok := notesTo(acts, w.p1)
	if !ok || sent[x] != MakeNote(0, false) {
		t.Fatalf("p1 was not asked for x: %v", sent)
	}
	if _, ok := sent[b.id]; ok {
		t.Fatal("a blocked feed was offered")
	}
	h.notes(w.p1, map[feed.ID]Note{x: MakeNote(2, false)})
	if got := h.source(x); got != w.p1 {
		t.Fatalf("source of x = %s, want p1 %s", got.Short(), w.p1.Short())
	}

	// x is lazy: once an entry came by another path, p1's push of it is a
	// duplicate and rx goes off; the tick does not pick a source that is
	// not ahead; one that is ahead is picked.
	h.do(evLocal{author: x, state: snap(w.x, 2)})
	acts = h.entries(w.p1, w.x.entries[:2]...)
	if got := h.source(x); !got.IsZero() {
		t.Fatalf("source of lazy x after a duplicate = %s", got.Short())
	}
	if sent, _ := notesTo(acts, w.p1); sent[x] != MakeNote(2, false) {
		t.Fatalf("rx not turned off with p1: %v", sent)
	}
	h.now = h.now.Add(4 * time.Second)
	h.do(evTick{})
	if got := h.source(x); !got.IsZero() {
		t.Fatalf("tick picked %s for lazy x with nobody ahead", got.Short())
	}
	w.x.add(1)
	h.notes(w.p1, map[feed.ID]Note{x: MakeNote(3, false)})
	h.do(evTick{})
	if got := h.source(x); got != w.p1 {
		t.Fatalf("lazy x with p1 ahead: source %s", got.Short())
	}

	acts = h.do(evWant{feeds: nil})
	if h.c.scope[x] {
		t.Fatal("x stayed in scope after it was no longer wanted")
	}
	if n, _ := notesTo(acts, w.p1); n[x] != DontReplicate {
		t.Fatalf("x not declined to p1: %v", n)
	}
	if !h.c.scope[w.a.id] {
		t.Fatal("a followed feed left the scope")
	}
}

// TestCoreAppendRace: entries a peer sent were stored first by another
// path (context gossip), so the append fails; the feed moved all the
// same, and the peers it is pushed to get the new entries.
func TestCoreAppendRace(t *testing.T) {
	w, h := relayWorld(t)
	a := w.a.id
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(5, true)}) // p1 wants a pushed from 5

	acts := h.c.handle(h.now, evEntries{peer: w.p2, runs: newVerifier().verify(w.a.entries[5:7])})
	ap := of[actAppend](acts, nil)
	if len(ap) != 1 {
		t.Fatalf("appends = %+v", ap)
	}
	acts = h.do(evAppended{act: ap[0], err: errors.New("store: not contiguous"), state: snap(w.a, 7)})
	if s := sendsTo(acts, w.p1); len(s) != 1 || s[0].from != 6 || s[0].to != 7 {
		t.Fatalf("after a lost append race, sends to p1 = %+v, want 6..7", s)
	}
}

// TestCoreWantAfterRefusal: a peer announced a feed before it joined our
// scope, and we answered -1; when the feed joins the scope, the -1 and our
// note may reach the peer as one note (the latest note per feed wins), so
// the peer, having told us its note already, does not tell it again. Its
// refused note must count as if it came now: when it is ahead, it becomes
// our source (in TestContextChain, B refused A's note for the context
// key's feed, seq 1, and so never took it from A, nor C from B); when we
// get further, the tick tells it.
func TestCoreWantAfterRefusal(t *testing.T) {
	w := newWorld(t, 3, 0)
	h := w.harness(t, 0)
	x, y := w.x.id, newChain(t, "y")
	y.add(4)
	h.connect(w.p1, true) // behind on x: it takes x from us later
	h.connect(w.p2, true) // ahead on x
	h.connect(w.p3, true) // ahead on y

	acts := h.notes(w.p1, map[feed.ID]Note{x: MakeNote(0, false)})
	acts = append(acts, h.notes(w.p3, map[feed.ID]Note{y.id: MakeNote(4, false)})...)
	wantNotes(t, acts, w.p1, map[feed.ID]Note{x: DontReplicate})
	wantNotes(t, acts, w.p3, map[feed.ID]Note{y.id: DontReplicate})

	acts = h.do(evWant{feeds: map[feed.ID]bool{x: true, y.id: true}})
	// p1 and p3 get our note in place of the -1 and say nothing more.
	if got, _ := notesTo(acts, w.p1); got[x] != MakeNote(0, false) {
		t.Fatalf("x not offered to p1: %v", got)
	}
	if got := h.source(y.id); got != w.p3 {
		t.Errorf("source of y = %s, want p3 %s, which claimed 4 before y joined the scope", got.Short(), w.p3.Short())
	}

	h.notes(w.p2, map[feed.ID]Note{x: MakeNote(2, false)})
	acts = h.entries(w.p2, w.x.entries[:2]...)
	if ap := of[actAppend](acts, nil); len(ap) != 1 {
		t.Fatalf("appends of x = %+v", ap)
	}
	h.now = h.now.Add(3 * time.Second)
	acts = h.do(evTick{})
	if got, _ := notesTo(acts, w.p1); got[x] != MakeNote(2, false) {
		t.Fatalf("p1, behind on x, was not told we hold 2: %v", got)
	}
}
