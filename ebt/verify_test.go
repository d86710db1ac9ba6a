package ebt

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/store"
)

// unsigned replaces e's signature with garbage in place. Entries signed
// after it in its chain link to it as it is then: its author committed to
// it without signing it.
func unsigned(e *feed.Entry) *feed.Entry {
	for i := range e.Sig {
		e.Sig[i] = byte(i)
	}
	return e
}

func TestSplitRuns(t *testing.T) {
	a, b := newChain(t, "a"), newChain(t, "b")
	a.add(5)
	b.add(2)
	ea, eb := a.entries, b.entries
	got := splitRuns([]*feed.Entry{ea[0], ea[1], eb[0], eb[1], ea[2], ea[4], ea[3], ea[4]})
	want := [][]*feed.Entry{{ea[0], ea[1]}, {eb[0], eb[1]}, {ea[2]}, {ea[4]}, {ea[3], ea[4]}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("splitRuns = %v runs, want %v", len(got), len(want))
	}
	if len(splitRuns(nil)) != 0 {
		t.Fatal("runs of nothing")
	}
}

// TestVerifier checks a message's runs: accepted prefixes, IDs and errors,
// on long runs (hashed in chunks) and short ones.
func TestVerifier(t *testing.T) {
	a := newChain(t, "a")
	a.add(3 * minChunk)
	x := newChain(t, "x")
	x.add(9)
	unsigned(x.next("post", []byte("not signed"))) // 10
	x.add(2)                                       // 11, 12 commit to 10
	forged := *a.entries[2*minChunk+5]
	forged.Sig[0] ^= 1
	lastForged := *a.entries[len(a.entries)-1]
	lastForged.Sig[0] ^= 1
	with := func(es []*feed.Entry, i int, e *feed.Entry) []*feed.Entry {
		out := slices.Clone(es)
		out[i] = e
		return out
	}
	v := newVerifier()
	cases := []struct {
		name   string
		es     []*feed.Entry
		accept []int // accepted entries of each run
		errs   []error
	}{
		{"long run", a.entries, []int{len(a.entries)}, []error{nil}},
		{"two feeds, from the middle", append(slices.Clone(a.entries[10:20]), x.entries[:4]...), []int{10, 4}, []error{nil, nil}},
		{"forged in the third chunk", with(a.entries, 2*minChunk+5, &forged), []int{2*minChunk + 5}, []error{feed.ErrBadSignature}},
		{"last forged", with(a.entries, len(a.entries)-1, &lastForged), []int{len(a.entries) - 1}, []error{feed.ErrBadSignature}},
		{"link broken in the second chunk", with(a.entries, minChunk+7, x.entries[0]), []int{minChunk + 7, 1, len(a.entries) - minChunk - 8}, []error{nil, nil, nil}},
		{"committed unsigned entry", x.entries, []int{12}, []error{nil}},
		{"ends with the unsigned entry", x.entries[:10], []int{9}, []error{feed.ErrBadSignature}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runs := v.verify(c.es)
			if len(runs) != len(c.accept) {
				t.Fatalf("%d runs, want %d", len(runs), len(c.accept))
			}
			for i, r := range runs {
				if len(r.entries) != c.accept[i] || len(r.ids) != c.accept[i] || !errors.Is(r.err, c.errs[i]) || (r.err == nil) != (c.errs[i] == nil) {
					t.Errorf("run %d: accepted %d, %v; want %d, %v", i, len(r.entries), r.err, c.accept[i], c.errs[i])
				}
				for j, e := range r.entries {
					if r.ids[j] != e.ID() || e.Author != r.author {
						t.Fatalf("run %d: entry %d has the wrong ID or author", i, j)
					}
				}
			}
		})
	}
}

// FuzzVerifier checks that the verifier, which hashes long runs in chunks
// on several goroutines, accepts exactly what feed.VerifyRun accepts.
func FuzzVerifier(f *testing.F) {
	a := newChain(f, "a")
	a.add(2*minChunk + 50)
	unsigned(a.entries[minChunk+3])
	// Re-sign the rest so that it commits to the unsigned entry.
	a.entries = a.entries[:minChunk+4]
	a.add(minChunk)
	other := newChain(f, "other")
	other.add(3)
	pool := append(slices.Clone(a.entries), other.entries...)
	v := newVerifier()
	f.Add(uint16(0), uint16(600), uint16(0xffff), uint8(0))
	f.Add(uint16(10), uint16(minChunk), uint16(100), uint8(1))
	f.Add(uint16(0), uint16(minChunk+4), uint16(0xffff), uint8(0))
	f.Add(uint16(300), uint16(500), uint16(400), uint8(2))
	f.Fuzz(func(t *testing.T, start, n, at uint16, how uint8) {
		lo := int(start) % len(a.entries)
		es := slices.Clone(a.entries[lo:min(len(a.entries), lo+1+int(n))])
		if i := int(at); i < len(es) {
			switch how % 4 {
			case 0:
				e := *es[i]
				e.Sig[how%64] ^= 1
				es[i] = &e
			case 1:
				e := *es[i]
				e.Body = append([]byte{how}, e.Body...)
				es[i] = &e
			case 2:
				es[i] = pool[int(how)%len(pool)]
			case 3:
				es = append(es[:i], es[i+1:]...)
			}
		}
		if len(es) == 0 {
			return
		}
		got := v.verifyRun(es)
		ids, err := feed.VerifyRun(es[0].Author, claimedHead(es[0]), es)
		if !slices.Equal(got.ids, ids) || len(got.entries) != len(ids) || (got.err == nil) != (err == nil) || (err != nil && got.err.Error() != err.Error()) {
			t.Fatalf("verifier accepted %d (%v), VerifyRun %d (%v)", len(got.ids), got.err, len(ids), err)
		}
	})
}

// TestSignedEnd checks that a message never ends with an entry whose own
// signature is bad, even one its author committed to.
func TestSignedEnd(t *testing.T) {
	x := newChain(t, "x")
	x.add(4)
	unsigned(x.next("post", nil)) // 5
	x.add(3)                      // 6..8
	for range maxUnsignedTail + 1 {
		unsigned(x.next("post", nil)) // 9..gap
	}
	gap := uint64(len(x.entries))
	last := x.next("post", nil).Seq // commits to all of them
	enc := make([][]byte, len(x.entries))
	for i, e := range x.entries {
		enc[i] = e.Encode()
	}
	sigs := newSigCache()
	for _, c := range []struct{ from, to, want uint64 }{
		{1, 8, 8},
		{1, 5, 4},
		{5, 5, 4}, // nothing to send
		{3, 6, 6},
		{1, 8 + maxUnsignedTail, 8}, // the most unsigned entries it looks back over
		{1, gap, 0},                 // the last maxUnsignedTail+1 are unsigned
		{9, gap, 8},
		{1, last, last},
	} {
		got := signedEnd(x.id, sigs, enc[c.from-1:c.to])
		if want := int(c.want) - int(c.from) + 1; got != max(want, 0) {
			t.Errorf("entries %d..%d: message of %d entries, want up to seq %d", c.from, c.to, got, c.want)
		}
	}
	// Checked signatures are remembered; garbage is not sent.
	if !sigs.has(x.id, x.entries[last-1].Next()) {
		t.Error("checked signature not cached")
	}
	if got := signedEnd(x.id, sigs, [][]byte{{1, 2, 3}}); got != 0 {
		t.Errorf("garbage ends a message: %d", got)
	}
}

// TestOutboxEndsSigned relays a feed whose author committed to an unsigned
// entry: no message ends with it, and a peer verifying each message as a
// run accepts all of them.
func TestOutboxEndsSigned(t *testing.T) {
	st := store.NewMem()
	x := newChain(t, "x")
	x.add(4)
	unsigned(x.next("post", nil)) // 5
	if err := st.Append(x.entries); err != nil {
		t.Fatal(err)
	}
	var o outbox
	o.init(st)
	var head feed.Head
	receive := func(want uint64) {
		t.Helper()
		for _, m := range drain(t, &o) {
			es, errs := feed.DecodeAll(m.entries)
			ids, err := feed.VerifyRun(x.id, head, es)
			if len(errs) > 0 || err != nil {
				t.Fatalf("peer rejects a message: %v %v", errs, err)
			}
			head = feed.Head{Seq: es[len(es)-1].Seq, ID: ids[len(ids)-1]}
		}
		if head.Seq != want {
			t.Fatalf("peer holds %d, want %d", head.Seq, want)
		}
	}
	o.queue(x.id, 1, 5)
	receive(4) // 5 waits for an entry that commits to it
	x.add(2)
	if err := st.Append(x.entries[5:]); err != nil {
		t.Fatal(err)
	}
	o.queue(x.id, 5, 7)
	receive(7)
}

// TestCoreRuns checks where verified runs meet the feed's head: the part
// past the head is appended whole, the part at or below it is a duplicate,
// and a run that does not link to the head is the sender's fault.
func TestCoreRuns(t *testing.T) {
	w := newWorld(t, 12, 0)
	h := w.harness(t, 5)
	a := w.a.id
	h.connect(w.p1, true)
	h.notes(w.p1, map[feed.ID]Note{a: MakeNote(12, false)})

	// 3..8 overlaps the head (5): 6..8 are appended in one batch.
	acts := h.entries(w.p1, w.a.entries[2:8]...)
	ap := of[actAppend](acts, nil)
	if len(ap) != 1 || len(ap[0].entries) != 3 || ap[0].entries[0].Seq != 6 || ap[0].head != w.a.entries[7].Next() {
		t.Fatalf("appends = %+v, want 6..8", ap)
	}
	for i, e := range ap[0].entries {
		if ap[0].ids[i] != e.ID() {
			t.Fatalf("append carries a wrong ID for seq %d", e.Seq)
		}
	}
	if len(of[actCheckFork](acts, nil)) != 0 {
		t.Error("matching entries below the head checked as forks")
	}

	// Two runs of one message that continue each other make one batch.
	acts = h.entries(w.p1, append(slices.Clone(w.a.entries[8:10]), append([]*feed.Entry{w.x.entries[0]}, w.a.entries[10:11]...)...)...)
	if ap := of[actAppend](acts, func(a actAppend) bool { return a.entries[0].Author == w.a.id }); len(ap) != 1 || len(ap[0].entries) != 3 || len(ap[0].ids) != 3 || ap[0].ids[2] != w.a.entries[10].ID() {
		t.Fatalf("appends = %+v, want 9..11 in one batch", ap)
	}

	// A validly signed run after the head that links elsewhere: another
	// branch. Nothing is appended and p1 is no longer the source.
	branch := &chain{t: t, key: w.a.key, id: a, entries: slices.Clone(w.a.entries[:10])}
	branch.next("post", []byte("other")) // 11'
	branch.add(1)                        // 12'
	acts = h.entries(w.p1, branch.entries[11])
	if ap := of[actAppend](acts, nil); len(ap) != 0 {
		t.Fatalf("appended a run that does not link to the head: %+v", ap)
	}
	if h.source(a) == w.p1 || h.c.peerStatus()[0].Invalid != 1 {
		t.Errorf("source %v, status %+v; want p1 marked bad", h.source(a), h.c.peerStatus()[0])
	}

	// Invalid entries of a feed out of scope are counted, nothing else.
	bad := *w.x.entries[1]
	bad.Sig[0] ^= 1
	acts = h.entries(w.p2, &bad)
	if st := h.c.peerStatus(); len(acts) != 0 && len(of[actAppend](acts, nil)) != 0 || st[0].Invalid != 1 {
		t.Errorf("out-of-scope invalid entry: %v, %+v", acts, st)
	}
}

// TestRelayUnsignedEntry relays a feed whose author committed to an
// unsigned entry, where a full message would end, through a chain of
// nodes: every node gets all of it, and no node is marked as sending
// invalid entries.
func TestRelayUnsignedEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b, c := n.node("a", 0), n.node("b", 0), n.node("c", 0)
		x := newChain(t, "x")
		big := make([]byte, feed.MaxBodySize)
		// About this many entries fill a message; the ones around that
		// count are unsigned, so a full message would end with one.
		perMsg := MaxMessageSize / entryFrameSize(len(x.next("post", big).Encode()))
		for len(x.entries) < perMsg-5 {
			x.next("post", big)
		}
		for range 8 {
			unsigned(x.next("post", big))
		}
		for range perMsg {
			x.next("post", big)
		}
		for _, nd := range []*testNode{a, b, c} {
			nd.setContact(x.id, feed.RelFollow)
		}
		if err := a.st.Append(x.entries); err != nil {
			t.Fatal(err)
		}
		a.r.Appended(x.id)
		n.connect(b, a)
		n.connect(c, b)
		// c may learn that b got x only at b's next tick.
		settle(t, 2*DefaultTimeout, "c did not get all of x", func() bool { return c.has(x, len(x.entries)) })
		for _, nd := range []*testNode{a, b, c} {
			for _, p := range nd.r.Peers() {
				if p.Invalid != 0 {
					t.Errorf("peer %s: %d invalid entries", p.ID.Short(), p.Invalid)
				}
			}
		}
	})
}
