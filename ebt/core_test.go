package ebt

import (
	"log/slog"
	"maps"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// harness drives a core like the Replicator does, answering appends and
// fork checks at once.
type harness struct {
	t    *testing.T
	c    *core
	now  time.Time
	fork forkResult // answer to actCheckFork
}

// snap is the stored state of a chain's first n entries.
func snap(c *chain, n int) feedSnapshot {
	s := feedSnapshot{contacts: map[feed.ID]feed.Relation{}}
	for _, e := range c.entries[:n] {
		if ct, err := feed.DecodeContact(e.Body); e.Type == feed.TypeContact && err == nil {
			if ct.Rel == feed.RelNone {
				delete(s.contacts, ct.Target)
			} else {
				s.contacts[ct.Target] = ct.Rel
			}
		}
	}
	if n > 0 {
		s.head = c.entries[n-1].Next()
	}
	return s
}

// newHarness starts a core for self holding the given feeds (all entries
// of each chain).
func newHarness(t *testing.T, self feed.ID, hops int, stored ...*chain) *harness {
	h := &harness{t: t, c: newCore(self, hops, 3*time.Second, slog.New(slog.DiscardHandler)), now: time.Unix(1000, 0)}
	ev := evInit{feeds: map[feed.ID]feedSnapshot{}}
	for _, c := range stored {
		ev.feeds[c.id] = snap(c, len(c.entries))
	}
	if acts := h.do(ev); len(acts) != 0 {
		t.Fatalf("init acted: %v", acts)
	}
	return h
}

func (h *harness) do(ev any) []any {
	h.t.Helper()
	var out []any
	for _, a := range h.c.handle(h.now, ev) {
		out = append(out, a)
		switch a := a.(type) {
		case actAppend:
			out = append(out, h.do(evAppended{act: a})...)
		case actCheckFork:
			out = append(out, h.do(evForkChecked{act: a, result: h.fork})...)
		}
	}
	return out
}

func (h *harness) connect(p feed.ID, acceptor bool) []any {
	return h.do(evConnect{peer: p, acceptor: acceptor})
}

func (h *harness) notes(p feed.ID, ns map[feed.ID]Note) []any {
	ev := evNotes{peer: p}
	for f, n := range ns {
		ev.notes = append(ev.notes, feedNote{Feed: f, Note: n})
	}
	return h.do(ev)
}

func (h *harness) entries(p feed.ID, es ...*feed.Entry) []any {
	return h.do(evEntries{peer: p, runs: newVerifier().verify(es)})
}

// notesTo merges the notes sent to p; ok reports whether any NOTES action
// (even an empty one) was addressed to p.
func notesTo(acts []any, p feed.ID) (m map[feed.ID]Note, ok bool) {
	m = map[feed.ID]Note{}
	for _, a := range acts {
		if n, is := a.(actNotes); is && n.peer == p {
			ok = true
			for _, fn := range n.notes {
				m[fn.Feed] = fn.Note
			}
		}
	}
	return m, ok
}

func of[T any](acts []any, keep func(T) bool) []T {
	var out []T
	for _, a := range acts {
		if v, ok := a.(T); ok && (keep == nil || keep(v)) {
			out = append(out, v)
		}
	}
	return out
}

func sendsTo(acts []any, p feed.ID) []actSend {
	return of(acts, func(s actSend) bool { return s.peer == p })
}

func wantNotes(t *testing.T, acts []any, p feed.ID, want map[feed.ID]Note) {
	t.Helper()
	got, _ := notesTo(acts, p)
	if !maps.Equal(got, want) {
		t.Errorf("notes to %s = %v, want %v", p.Short(), got, want)
	}
}

func (h *harness) source(f feed.ID) feed.ID {
	if fs := h.c.feeds[f]; fs != nil && fs.rx != nil {
		return fs.rx.id
	}
	return feed.ID{}
}

// world is the usual cast: me follows a; p1, p2, p3 are peers.
type world struct {
	me, a, x     *chain
	p1, p2, p3   feed.ID
	meHead       uint64
	withA        int // entries of a stored
	storedChains []*chain
}

func newWorld(t *testing.T, aEntries, aStored int) *world {
	w := &world{me: newChain(t, "me"), a: newChain(t, "a"), x: newChain(t, "x")}
	w.p1, w.p2, w.p3 = newChain(t, "p1").id, newChain(t, "p2").id, newChain(t, "p3").id
	w.me.contact(w.a.id, feed.RelFollow)
	w.a.add(aEntries)
	w.x.add(2)
	return w
}

// harness starts me holding aStored of a's entries.
func (w *world) harness(t *testing.T, aStored int) *harness {
	h := newHarness(t, w.me.id, 1, w.me)
	if aStored > 0 {
		a := *w.a
		a.entries = w.a.entries[:aStored]
		h.do(evLocal{author: w.a.id, state: snap(&a, aStored)})
	}
	return h
}

func TestCoreChooseSource(t *testing.T) {
	w := newWorld(t, 30, 0)
	h := w.harness(t, 0)
	me, a := w.me.id, w.a.id

	// The acceptor sends its notes at once, asking no one before it knows
	// who is ahead.
	acts := h.connect(w.p1, true)
	wantNotes(t, acts, w.p1, map[feed.ID]Note{me: MakeNote(1, false), a: MakeNote(0, false)})
	if h.source(a) != (feed.ID{}) {
		t.Fatalf("source = %v before any peer claimed a", h.source(a))
	}
	// The first peer ahead becomes the source.
	acts = h.notes(w.p1, map[feed.ID]Note{a: MakeNote(5, false)})
	wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(0, true)})

	// A peer further ahead does not take over while p1 is sending...
	h.connect(w.p2, true)
	acts = h.notes(w.p2, map[feed.ID]Note{a: MakeNote(10, false)})
	if got, _ := notesTo(acts, w.p2); h.source(a) != w.p1 || len(got) != 0 {
		t.Fatalf("switched to p2 (notes %v) while p1 has entries for us", got)
	}
	h.entries(w.p1, w.a.entries[:5]...)
	// ...nor right after p1 sent all it has (more may be on the way)...
	if acts := h.do(evTick{}); h.source(a) != w.p1 {
		t.Fatalf("source = %v right after p1 delivered (%v)", h.source(a), acts)
	}
	// ...but once p1 has had nothing for us for the timeout, the peer
	// furthest ahead does.
	h.now = h.now.Add(3 * time.Second)
	acts = h.do(evTick{})
	wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(5, false)})
	wantNotes(t, acts, w.p2, map[feed.ID]Note{a: MakeNote(5, true)})
	if h.source(a) != w.p2 {
		t.Fatalf("source = %v, want p2", h.source(a))
	}
	// A peer claiming less than the source does not take over.
	acts = h.connect(w.p3, true)
	acts = append(acts, h.notes(w.p3, map[feed.ID]Note{a: MakeNote(7, false)})...)
	if h.source(a) != w.p2 {
		t.Fatalf("source = %v, want p2", h.source(a))
	}
	if got, _ := notesTo(acts, w.p3); got[a].Rx() {
		t.Errorf("p3 asked to push: %v", got)
	}
	if p := h.c.progress(); p.Current != 6 || p.Target != 11 || p.Start != 1 {
		t.Errorf("progress = %+v, want start 1 current 6 target 11", p)
	}
}

func TestCoreInitiatorWaitsForNotes(t *testing.T) {
	w := newWorld(t, 3, 0)
	h := w.harness(t, 0)
	if _, ok := notesTo(h.connect(w.p1, false), w.p1); ok {
		t.Fatal("initiator sent notes before receiving the acceptor's")
	}
	acts := h.notes(w.p1, nil)
	wantNotes(t, acts, w.p1, map[feed.ID]Note{w.me.id: MakeNote(1, false), w.a.id: MakeNote(0, false)})
	// Later notes from the peer that change nothing cause no NOTES message.
	if _, ok := notesTo(h.notes(w.p1, nil), w.p1); ok {
		t.Error("notes sent for nothing")
	}
}

func TestCoreNotesForUnknownFeeds(t *testing.T) {
	w := newWorld(t, 3, 0)
	w.a.contact(w.p1, feed.RelBlock) // a blocks p1
	h := w.harness(t, len(w.a.entries))
	h.connect(w.p1, true)
	h.connect(w.p2, true)
	tests := []struct {
		name string
		peer feed.ID
		f    feed.ID
		want Note
	}{
		{"out of scope", w.p2, w.x.id, DontReplicate},
		{"author blocks peer", w.p1, w.a.id, DontReplicate},
	}
	for _, tt := range tests {
		acts := h.notes(tt.peer, map[feed.ID]Note{tt.f: MakeNote(0, true)})
		if got, _ := notesTo(acts, tt.peer); got[tt.f] != tt.want {
			t.Errorf("%s: answered %v, want %v", tt.name, got[tt.f], tt.want)
		}
		if s := sendsTo(acts, tt.peer); len(s) != 0 {
			t.Errorf("%s: pushed %v", tt.name, s)
		}
	}
	// p1 never even heard of a from us.
	if _, told := h.c.peers[w.p1].sent[w.a.id]; told && h.c.peers[w.p1].sent[w.a.id] != DontReplicate {
		t.Errorf("a shared with p1, whom a blocks")
	}
}

// relayWorld: me holds 5 of a's 7 entries, in sessions with p1 and with
// p2, which holds a's feed up to 5 too.
func relayWorld(t *testing.T) (*world, *harness) {
	w := newWorld(t, 7, 0)
	h := w.harness(t, 5)
	h.connect(w.p1, true)
	h.connect(w.p2, true)
	h.notes(w.p2, map[feed.ID]Note{w.a.id: MakeNote(5, false)})
	return w, h
}

func TestCorePush(t *testing.T) {
	w, h := relayWorld(t)
	a := w.a.id

	acts := h.notes(w.p1, map[feed.ID]Note{a: MakeNote(2, true)})
	if s := sendsTo(acts, w.p1); len(s) != 1 || s[0].from != 3 || s[0].to != 5 {
		t.Fatalf("sends = %+v, want 3..5", s)
	}
	// Entries received from p2 are relayed to p1, never echoed to p2.
	acts = h.entries(w.p2, w.a.entries[5:7]...)
	if ap := of[actAppend](acts, nil); len(ap) != 1 || len(ap[0].entries) != 2 {
		t.Fatalf("appends = %+v", ap)
	}
	if s := sendsTo(acts, w.p1); len(s) != 1 || s[0].from != 6 || s[0].to != 7 {
		t.Fatalf("relay = %+v, want 6..7", s)
	}
	if s := sendsTo(acts, w.p2); len(s) != 0 {
		t.Fatalf("echoed to the sender: %+v", s)
	}
	// noRx stops pushing.
	acts = h.notes(w.p1, map[feed.ID]Note{a: MakeNote(7, false)})
	if c := of(acts, func(c actCancel) bool { return c.peer == w.p1 && c.author == a }); len(c) != 1 {
		t.Fatalf("no cancel: %v", acts)
	}
	if len(h.c.peers[w.p1].push) != 0 {
		t.Errorf("still pushing to p1")
	}
}

func TestCoreDuplicate(t *testing.T) {
	for _, other := range []bool{false, true} {
		w := newWorld(t, 10, 0)
		h := w.harness(t, 3)
		a := w.a.id
		h.connect(w.p1, true) // tentative source
		h.notes(w.p1, map[feed.ID]Note{a: MakeNote(10, false)})
		if other {
			h.connect(w.p2, true)
			h.notes(w.p2, map[feed.ID]Note{a: MakeNote(9, false)})
		}
		if h.source(a) != w.p1 {
			t.Fatalf("source = %v", h.source(a))
		}
		h.fork = forkDuplicate
		acts := h.entries(w.p1, w.a.entries[1])
		if len(of[actCheckFork](acts, nil)) != 1 {
			t.Errorf("duplicate below the head not checked against the store")
		}
		if !other {
			// p1 is the only peer ahead: keep it.
			if h.source(a) != w.p1 {
				t.Errorf("only peer ahead lost rx")
			}
			continue
		}
		wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(3, false)})
		wantNotes(t, acts, w.p2, map[feed.ID]Note{a: MakeNote(3, true)})
		if h.source(a) != w.p2 {
			t.Errorf("source = %v, want p2", h.source(a))
		}
	}
}

func TestCoreInvalidEntry(t *testing.T) {
	w := newWorld(t, 5, 0)
	h := w.harness(t, 0)
	a := w.a.id
	h.connect(w.p1, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(5, false)})

	bad := *w.a.entries[1]
	bad.Sig[0] ^= 1
	acts := h.entries(w.p1, w.a.entries[0], &bad, w.a.entries[2])
	ap := of[actAppend](acts, nil)
	if len(ap) != 1 || len(ap[0].entries) != 1 || ap[0].entries[0].Seq != 1 {
		t.Fatalf("appends = %+v, want just seq 1", ap)
	}
	if len(of[actClose](acts, nil)) != 0 {
		t.Fatal("session closed over an invalid entry")
	}
	if st := h.c.peerStatus()[0]; st.Invalid != 1 || st.Received != 3 {
		t.Errorf("status = %+v, want 1 invalid of 3", st)
	}
	if h.source(a) == w.p1 {
		t.Error("p1 still the source after an invalid entry")
	}
	wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(0, false)})
	// Valid entries from p1 are still welcome, but p1 is not asked again.
	acts = h.entries(w.p1, w.a.entries[1:5]...)
	if ap := of[actAppend](acts, nil); len(ap) != 1 || len(ap[0].entries) != 4 {
		t.Fatalf("appends = %+v", ap)
	}
	h.connect(w.p2, true)
	acts = h.notes(w.p1, map[feed.ID]Note{a: MakeNote(9, false)})
	if h.source(a) == w.p1 {
		t.Error("p1 chosen as source again")
	}
}

func TestCoreFork(t *testing.T) {
	w := newWorld(t, 4, 0)
	h := w.harness(t, 4)
	a := w.a.id
	h.connect(w.p1, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(6, false)})
	// Another entry at seq 4, validly signed by a.
	fork := &chain{t: t, key: w.a.key, id: a, entries: append([]*feed.Entry(nil), w.a.entries[:3]...)}
	e4 := fork.next("post", []byte("the other branch"))
	h.fork = forkProven
	acts := h.entries(w.p1, e4)
	if c := of[actCheckFork](acts, nil); len(c) != 1 || c[0].entry != e4 {
		t.Fatalf("fork checks = %+v", c)
	}
	if !h.c.feeds[a].frozen {
		t.Fatal("feed not frozen")
	}
	wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(4, false)})
	// Nothing is appended to a frozen feed.
	w.a.add(1)
	if ap := of[actAppend](h.entries(w.p1, w.a.entries[4]), nil); len(ap) != 0 {
		t.Errorf("appended to a frozen feed: %+v", ap)
	}
	// Nor is it requested on a tick.
	h.now = h.now.Add(time.Hour)
	got, _ := notesTo(h.do(evTick{}), w.p1)
	if n, ok := got[a]; ok && n.Rx() || h.source(a) != (feed.ID{}) {
		t.Errorf("frozen feed requested: %v", got)
	}
}

func TestCoreBlockStopsPush(t *testing.T) {
	w := newWorld(t, 5, 0)
	h := w.harness(t, 5)
	a := w.a.id
	h.connect(w.p1, true)
	h.connect(w.p2, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(5, true)}) // p1 wants a pushed
	h.notes(w.p2, map[feed.ID]Note{a: MakeNote(5, false)})

	w.a.add(1)                       // 6
	w.a.contact(w.p1, feed.RelBlock) // 7: a blocks p1
	w.a.add(1)                       // 8
	acts := h.entries(w.p2, w.a.entries[5:8]...)
	for _, s := range sendsTo(acts, w.p1) {
		if s.to >= 7 {
			t.Errorf("sent %d..%d to p1 after a blocked it", s.from, s.to)
		}
	}
	if got, _ := notesTo(acts, w.p1); got[a] != DontReplicate {
		t.Errorf("p1 told %v, want -1", got[a])
	}
	if _, pushing := h.c.peers[w.p1].push[a]; pushing {
		t.Error("still pushing a to p1")
	}
	// p1 asking again gets -1, not entries.
	acts = h.notes(w.p1, map[feed.ID]Note{a: MakeNote(6, true)})
	if s := sendsTo(acts, w.p1); len(s) != 0 {
		t.Errorf("pushed to a blocked peer: %+v", s)
	}
}

func TestCoreSelfBlocks(t *testing.T) {
	w := newWorld(t, 1, 0)
	h := w.harness(t, 0)
	h.connect(w.p1, true)
	w.me.contact(w.p1, feed.RelBlock)
	acts := h.do(evLocal{author: w.me.id, state: snap(w.me, len(w.me.entries))})
	if c := of[actClose](acts, nil); len(c) != 1 || c[0].peer != w.p1 {
		t.Fatalf("closes = %+v, want p1", c)
	}
	h.do(evDisconnect{peer: w.p1})
	if c := of[actClose](h.connect(w.p1, false), nil); len(c) != 1 {
		t.Fatal("blocked peer's session accepted")
	}
}

func TestCoreHops(t *testing.T) {
	// me follows a; a follows b; b follows c.
	me, a, b, c := newChain(t, "me"), newChain(t, "a"), newChain(t, "b"), newChain(t, "c")
	me.contact(a.id, feed.RelFollow)
	a.contact(b.id, feed.RelFollow)
	b.contact(c.id, feed.RelFollow)
	for _, tt := range []struct {
		hops int
		want []feed.ID
	}{
		{1, []feed.ID{me.id, a.id}},
		{2, []feed.ID{me.id, a.id, b.id}},
		{3, []feed.ID{me.id, a.id, b.id, c.id}},
	} {
		h := newHarness(t, me.id, tt.hops, me, a, b)
		if len(h.c.scope) != len(tt.want) {
			t.Errorf("hops %d: scope has %d feeds, want %d", tt.hops, len(h.c.scope), len(tt.want))
		}
		for _, f := range tt.want {
			if !h.c.scope[f] {
				t.Errorf("hops %d: %s not in scope", tt.hops, f.Short())
			}
		}
	}
	// With hops 2, a contact entry arriving by replication widens the scope.
	a2 := newChain(t, "a")
	me2 := newChain(t, "me")
	me2.contact(a2.id, feed.RelFollow)
	h := newHarness(t, me2.id, 2, me2)
	p := newChain(t, "p").id
	h.connect(p, true)
	h.notes(p, map[feed.ID]Note{a2.id: MakeNote(1, false)})
	a2.contact(b.id, feed.RelFollow)
	acts := h.entries(p, a2.entries...)
	if !h.c.scope[b.id] {
		t.Fatal("b not in scope after a's follow arrived")
	}
	if got, _ := notesTo(acts, p); got[b.id] != MakeNote(0, false) {
		t.Errorf("b not announced: %v", got)
	}
	// The peer has it: it is asked for it.
	acts = h.notes(p, map[feed.ID]Note{b.id: MakeNote(1, false)})
	if got, _ := notesTo(acts, p); got[b.id] != MakeNote(0, true) {
		t.Errorf("b not requested: %v", got)
	}
}

func TestCoreTick(t *testing.T) {
	w := newWorld(t, 10, 0)
	h := w.harness(t, 2)
	a := w.a.id
	h.connect(w.p1, true)
	h.connect(w.p2, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(10, false)})
	h.notes(w.p2, map[feed.ID]Note{a: MakeNote(10, false)})
	if h.source(a) != w.p1 {
		t.Fatalf("source = %v", h.source(a))
	}
	// Not silent for long enough: nothing changes.
	h.now = h.now.Add(2 * time.Second)
	if len(h.do(evTick{})) != 0 {
		t.Error("tick acted before the timeout")
	}
	// p1 stays silent past the timeout while p2 claims more: rotate.
	h.now = h.now.Add(2 * time.Second)
	acts := h.do(evTick{})
	if h.source(a) != w.p2 {
		t.Fatalf("source after stall = %v, want p2", h.source(a))
	}
	wantNotes(t, acts, w.p1, map[feed.ID]Note{a: MakeNote(2, false)})
	wantNotes(t, acts, w.p2, map[feed.ID]Note{a: MakeNote(2, true)})

	// A feed left without a source while a peer is ahead is re-requested.
	h.c.dropSource(h.c.feeds[a])
	h.c.flushNotes()
	acts = h.do(evTick{})
	if h.source(a) == (feed.ID{}) {
		t.Fatal("feed with a peer ahead left without a source after a tick")
	}
	_ = acts
}

func TestCoreHaveNotes(t *testing.T) {
	w := newWorld(t, 6, 0)
	h := w.harness(t, 2)
	a := w.a.id
	h.connect(w.p1, true)
	h.connect(w.p2, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(6, false)})
	h.notes(w.p2, map[feed.ID]Note{a: MakeNote(2, false)}) // p2 has 2, pulls from elsewhere
	acts := h.entries(w.p1, w.a.entries[2:6]...)
	if _, ok := notesTo(acts, w.p2); ok {
		t.Error("have-note sent before the tick")
	}
	acts = h.do(evTick{})
	wantNotes(t, acts, w.p2, map[feed.ID]Note{a: MakeNote(6, false)})
	if len(sendsTo(acts, w.p2)) != 0 {
		t.Error("pushed to a peer that did not ask")
	}
}

func TestCoreDisconnectReselects(t *testing.T) {
	w := newWorld(t, 10, 0)
	h := w.harness(t, 0)
	a := w.a.id
	h.connect(w.p1, true)
	h.connect(w.p2, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(10, false)})
	h.notes(w.p2, map[feed.ID]Note{a: MakeNote(4, false)})
	acts := h.do(evDisconnect{peer: w.p1})
	if h.source(a) != w.p2 {
		t.Fatalf("source = %v, want p2", h.source(a))
	}
	wantNotes(t, acts, w.p2, map[feed.ID]Note{a: MakeNote(0, true)})
}
