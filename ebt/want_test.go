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
