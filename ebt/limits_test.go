package ebt

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/store"
)

var testPolicy = limit.Policy{Strikes: 3, Forgive: 10 * time.Second, Cooldown: time.Minute}

// closes returns the actClose actions for p.
func closes(acts []any, p feed.ID) []actClose {
	return of(acts, func(c actClose) bool { return c.peer == p })
}

// TestLimitsUnaskedEntriesDrop: a peer that keeps pushing entries of a feed
// nobody asked it for is tolerated for Policy.Strikes messages, then its
// session is closed with ErrAbuse, and what it sent after is not handled.
func TestLimitsUnaskedEntriesDrop(t *testing.T) {
	w := newWorld(t, 5, 0)
	h := w.harness(t, 0)
	h.c.abuse = testPolicy
	h.connect(w.p1, true)
	x := w.x.entries // x is not in scope
	for i := range testPolicy.Strikes {
		if acts := h.entries(w.p1, x...); len(closes(acts, w.p1)) != 0 {
			t.Fatalf("closed at message %d of %d tolerated", i+1, testPolicy.Strikes)
		}
	}
	acts := h.entries(w.p1, x...)
	cl := closes(acts, w.p1)
	if len(cl) != 1 || !errors.Is(cl[0].err, ErrAbuse) {
		t.Fatalf("after %d strikes: closes %v, want one with ErrAbuse", testPolicy.Strikes+1, cl)
	}
	t.Logf("closed: %v", cl[0].err)
	// Further messages of the dropped peer are not handled, not even
	// entries we want.
	acts = h.notes(w.p1, map[feed.ID]Note{w.a.id: MakeNote(5, false)})
	h.entries(w.p1, w.a.entries...)
	if got := h.c.feeds[w.a.id].head.Seq; got != 0 {
		t.Errorf("a dropped peer's entries were appended: head %d", got)
	}
	if len(closes(acts, w.p1)) != 0 {
		t.Errorf("closed twice")
	}
}

// TestLimitsStrikesForgiven: one bad message per forgiveness period is
// never dropped.
func TestLimitsStrikesForgiven(t *testing.T) {
	w := newWorld(t, 5, 0)
	h := w.harness(t, 0)
	h.c.abuse = testPolicy
	h.connect(w.p1, true)
	for i := range 20 {
		h.now = h.now.Add(testPolicy.Forgive)
		if acts := h.entries(w.p1, w.x.entries...); len(closes(acts, w.p1)) != 0 {
			t.Fatalf("closed at message %d, one per forgiveness period", i+1)
		}
	}
}

// TestLimitsInvalidEntriesDrop: entries whose signatures fail count too.
func TestLimitsInvalidEntriesDrop(t *testing.T) {
	w := newWorld(t, 5, 0)
	h := w.harness(t, 0)
	h.c.abuse = testPolicy
	h.connect(w.p1, true)
	h.notes(w.p1, map[feed.ID]Note{w.a.id: MakeNote(5, false)})
	forged := *w.a.entries[0]
	forged.Sig[0] ^= 1
	var acts []any
	for range testPolicy.Strikes + 1 {
		acts = append(acts, h.entries(w.p1, &forged)...)
	}
	if cl := closes(acts, w.p1); len(cl) != 1 || !errors.Is(cl[0].err, ErrAbuse) {
		t.Fatalf("closes %v, want one with ErrAbuse", cl)
	}
}

// TestLimitsHonestSync: a peer that serves a large sync as asked, in
// full messages, and then live entries, is never struck.
func TestLimitsHonestSync(t *testing.T) {
	w := newWorld(t, 10_000, 0)
	h := w.harness(t, 0)
	h.c.abuse = testPolicy
	h.connect(w.p1, true)
	h.notes(w.p1, map[feed.ID]Note{w.a.id: MakeNote(10_000, false), w.me.id: MakeNote(1, false)})
	var acts []any
	for es := w.a.entries; len(es) > 0; {
		k := min(len(es), MaxEntriesPerMsg)
		acts = append(acts, h.entries(w.p1, es[:k]...)...)
		es = es[k:]
	}
	if got := h.c.feeds[w.a.id].head.Seq; got != 10_000 {
		t.Fatalf("head %d after the sync, want 10000", got)
	}
	// Live entries, one message each, come well within the limits.
	for _, e := range w.a.add(100) {
		acts = append(acts, h.entries(w.p1, e)...)
	}
	if cl := closes(acts, w.p1); len(cl) != 0 || h.c.peers[w.p1].strikes != nil {
		t.Fatalf("an honest peer was struck: closes %v", cl)
	}
}

// msgPipe is one end of an in-memory message channel.
type msgPipe struct {
	in, out chan []byte
	done    chan struct{}
}

func pipe() (a, b *msgPipe) {
	x, y, done := make(chan []byte, 64), make(chan []byte, 64), make(chan struct{})
	return &msgPipe{in: x, out: y, done: done}, &msgPipe{in: y, out: x, done: done}
}

func (c *msgPipe) Send(ctx context.Context, m []byte) error {
	select {
	case c.out <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *msgPipe) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-c.in:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *msgPipe) Close() error { return nil }

// notesMsg encodes a NOTES message naming n new random-looking feeds
// from the i-th on.
func notesMsg(i, n int) []byte {
	ns := make([]feedNote, n)
	for k := range ns {
		v := i + k
		ns[k].Feed = feed.ID{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24), 0xfe}
		ns[k].Note = MakeNote(1, false)
	}
	return appendNotes(nil, ns)
}

// TestLimitsSessionNotes: a session's reader slows a peer over its rate of
// notes to that rate, ends the session with ErrAbuse once the peer names
// more than MaxFeeds feeds, and stores no clock of feeds out of scope.
func TestLimitsSessionNotes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		me := newChain(t, "me")
		st := store.NewMem()
		r, err := New(Config{Self: me.id, Store: st, Logger: testLogger(t), Limits: Limits{
			NotesPerSec: 1000, MaxFeeds: 5000, Policy: testPolicy,
		}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go r.Run(ctx)
		local, remote := pipe()
		peer := newChain(t, "flooder").id
		done := make(chan error, 1)
		go func() { done <- r.Serve(ctx, local, peer, true) }()
		remote.Send(ctx, appendHello(nil, Capability))
		start := time.Now()
		// The burst (MaxFeeds notes) goes at once, the next 1000 wait
		// a second.
		for i := 0; i < 6; i++ {
			remote.Send(ctx, notesMsg(i*1000, 1000))
		}
		err = <-done
		if !errors.Is(err, ErrAbuse) {
			t.Fatalf("session ended with %v, want ErrAbuse", err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("notes within the burst waited %v", d)
		}
		t.Logf("ended: %v", err)
		// Nothing of what it named (none of it in scope) was stored.
		if clock, err := st.PeerClock(peer); err != nil || len(clock) != 0 {
			t.Errorf("stored clock of the flooder: %d feeds (%v)", len(clock), err)
		}

		// A peer over the rate but within MaxFeeds is slowed, not
		// dropped: 4000 notes go at once (the burst is 5000), the same
		// 4000 again wait 3 s, the next 4000 (one feed new) 4 s more.
		// (Another peer: the flooder's bucket is empty, across sessions.)
		local, remote = pipe()
		go func() { done <- r.Serve(ctx, local, newChain(t, "eager").id, true) }()
		remote.Send(ctx, appendHello(nil, Capability))
		start = time.Now()
		remote.Send(ctx, notesMsg(0, 4000))
		remote.Send(ctx, notesMsg(0, 4000))
		remote.Send(ctx, notesMsg(1, 4000))
		last := notesMsg(4000, 1)[2:34] // the feed the last message names first
		for answered := false; !answered; {
			b, err := remote.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m, err := decodeMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range m.notes {
				answered = answered || string(n.Feed[:]) == string(last)
			}
		}
		if d := time.Since(start); d != 7*time.Second {
			t.Errorf("12000 notes at 1000/s with a burst of 5000 were handled after %v, want 7s", d)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the slowed session ended with %v", err)
		}
	})
}
