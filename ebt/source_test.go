package ebt

import (
	"slices"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// Core tests of source choice, ticks and request skipping.

func TestCoreTentativeSourceAtTick(t *testing.T) {
	w := newWorld(t, 5, 0)
	h := w.harness(t, 3)
	me, a := w.me.id, w.a.id
	peers := []feed.ID{w.p1, w.p2, w.p3}
	slices.SortFunc(peers, feed.ID.Compare)
	for _, p := range peers {
		h.connect(p, true)
	}
	// Nobody is ahead; the first peer in ID order asks us to push a.
	h.notes(peers[0], map[feed.ID]Note{a: MakeNote(2, true), me: MakeNote(1, false)})
	h.notes(peers[1], map[feed.ID]Note{a: MakeNote(1, false), me: MakeNote(1, false)})
	h.notes(peers[2], map[feed.ID]Note{a: MakeNote(3, false)})
	if h.source(a) != (feed.ID{}) {
		t.Fatalf("source chosen before the tick")
	}
	// At the tick the first peer that does not take a from us is asked to
	// push what it gets later; our own feed is never asked for so.
	acts := h.do(evTick{})
	if h.source(a) != peers[1] {
		t.Fatalf("source = %v, want the second peer", h.source(a))
	}
	wantNotes(t, acts, peers[1], map[feed.ID]Note{a: MakeNote(3, true)})
	if got, _ := notesTo(acts, peers[0]); len(got) != 0 {
		t.Errorf("notes to the peer we push to: %v", got)
	}
	if h.source(me) != (feed.ID{}) {
		t.Errorf("own feed requested with no peer ahead")
	}
	// A later tick changes nothing.
	h.now = h.now.Add(time.Hour)
	if acts := h.do(evTick{}); len(acts) != 0 {
		t.Errorf("idle tick acted: %v", acts)
	}
}

func TestCoreOwnFeedBack(t *testing.T) {
	// me lost its store: it holds nothing of its own feed; p1 holds 3.
	me := newChain(t, "me")
	me.add(3)
	h := newHarness(t, me.id, 1)
	p1 := newChain(t, "p1").id
	h.connect(p1, true)
	acts := h.notes(p1, map[feed.ID]Note{me.id: MakeNote(3, false)})
	wantNotes(t, acts, p1, map[feed.ID]Note{me.id: MakeNote(0, true)})
	acts = h.entries(p1, me.entries...)
	if ap := of[actAppend](acts, nil); len(ap) != 1 || len(ap[0].entries) != 3 {
		t.Fatalf("own entries not taken back: %v", acts)
	}
	if h.c.feeds[me.id].head.Seq != 3 {
		t.Errorf("own head = %d", h.c.feeds[me.id].head.Seq)
	}
}

func TestCoreTickNotes(t *testing.T) {
	w := newWorld(t, 8, 0)
	h := w.harness(t, 2)
	a := w.a.id
	for _, p := range []feed.ID{w.p1, w.p2, w.p3} {
		h.connect(p, true)
	}
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(8, false)}) // our source
	h.notes(w.p2, map[feed.ID]Note{a: MakeNote(2, false)}) // behind, pulls from elsewhere
	h.notes(w.p3, map[feed.ID]Note{a: MakeNote(8, false)}) // as far as p1
	h.entries(w.p1, w.a.entries[2:8]...)
	acts := h.do(evTick{})
	// The source learns how far we got (for request skipping), the peer
	// behind learns we are ahead, the peer that already has it all
	// learns nothing.
	wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(8, true)})
	wantNotes(t, acts, w.p2, map[feed.ID]Note{a: MakeNote(8, false)})
	if _, ok := notesTo(acts, w.p3); ok {
		t.Errorf("notes to p3, which has all we have")
	}
	// Nothing new: the next tick says nothing again.
	if _, ok := notesTo(h.do(evTick{}), w.p1); ok {
		t.Errorf("notes repeated")
	}
}

func TestCoreStalledPeerClaimsMore(t *testing.T) {
	w := newWorld(t, 10, 0)
	h := w.harness(t, 0)
	a := w.a.id
	h.connect(w.p1, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(5, false)})
	h.now = h.now.Add(3 * time.Second)
	h.do(evTick{}) // p1 stalled; nobody else: it stays, marked
	if _, ok := h.c.peers[w.p1].stalled[a]; !ok || h.source(a) != w.p1 {
		t.Fatal("p1 not kept and marked stalled")
	}
	h.connect(w.p2, true)
	h.notes(w.p2, map[feed.ID]Note{a: MakeNote(5, false)})
	if h.source(a) != w.p2 {
		t.Fatalf("source = %v, want p2 over the stalled p1", h.source(a))
	}
	// p1 claims more later: it may be chosen again when p2 stalls.
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(9, false)})
	h.now = h.now.Add(3 * time.Second)
	h.do(evTick{})
	if h.source(a) != w.p1 {
		t.Errorf("source = %v, want p1 after p2 stalled", h.source(a))
	}
}

func TestCoreRequestSkipping(t *testing.T) {
	w := newWorld(t, 8, 0)
	x := newChain(t, "x2")
	x.add(4)
	w.me.contact(x.id, feed.RelFollow)
	h := newHarness(t, w.me.id, 1, w.me, x)
	a := w.a.id
	a5 := *w.a
	h.do(evLocal{author: a, state: snap(&a5, 5)})
	me := w.me.id
	// The stored clock of p1: a and our own feed as we hold them now, x
	// behind.
	clock := map[feed.ID]Note{
		a:    MakeNote(5, true),
		me:   MakeNote(uint64(len(w.me.entries)), false),
		x.id: MakeNote(2, false),
	}
	acts := h.do(evConnect{peer: w.p1, acceptor: true, clock: clock})
	got, ok := notesTo(acts, w.p1)
	if !ok || len(got) != 1 || got[x.id] != MakeNote(4, false) {
		t.Fatalf("notes on reconnecting = %v, want only x's", got)
	}
	if st := h.c.peerStatus()[0]; st.Feeds != 3 {
		t.Errorf("status counts %d shared feeds, want 3", st.Feeds)
	}
	// A quiet feed the peer announces after all gets our answer...
	acts = h.notes(w.p1, map[feed.ID]Note{a: MakeNote(7, false)})
	if got, _ := notesTo(acts, w.p1); got[a] != MakeNote(5, true) {
		t.Errorf("answer to a note for a quiet feed = %v, want a request from 5", got)
	}
	// ...and a peer that lost its store (it holds less than its clock
	// said) is pushed everything.
	acts = h.notes(w.p1, map[feed.ID]Note{me: MakeNote(0, true)})
	if s := sendsTo(acts, w.p1); len(s) != 1 || s[0].from != 1 {
		t.Errorf("sends = %+v, want our feed from 1", s)
	}
	// At the end, what we know of its clock is stored.
	h.entries(w.p1, w.a.entries[5:7]...)
	acts = h.do(evDisconnect{peer: w.p1})
	// (x: the peer said nothing of it in this session, so the stored
	// value stays.)
	saves := of[actSaveClock](acts, nil)
	if len(saves) != 1 {
		t.Fatalf("clock saves = %+v", saves)
	}
	if _, hasX := saves[0].clock[x.id]; Note(saves[0].clock[a]).Seq() != 7 || Note(saves[0].clock[me]).Seq() != 0 || hasX {
		t.Errorf("saved clock = %v", saves[0].clock)
	}
}

func TestCoreScopeMinusBlocks(t *testing.T) {
	// me follows a; a follows b and c; me blocks c.
	me, a, b, c := newChain(t, "me"), newChain(t, "a"), newChain(t, "b"), newChain(t, "c")
	me.contact(a.id, feed.RelFollow)
	me.contact(c.id, feed.RelBlock)
	a.contact(b.id, feed.RelFollow)
	a.contact(c.id, feed.RelFollow)
	h := newHarness(t, me.id, 2, me, a)
	for f, want := range map[feed.ID]bool{me.id: true, a.id: true, b.id: true, c.id: false} {
		if h.c.scope[f] != want {
			t.Errorf("%s in scope: %v, want %v", f.Short(), h.c.scope[f], want)
		}
	}
	// Unblocking c brings it in.
	me.contact(c.id, feed.RelNone)
	h.do(evLocal{author: me.id, state: snap(me, len(me.entries))})
	if !h.c.scope[c.id] {
		t.Error("c not in scope after the unblock")
	}
}
