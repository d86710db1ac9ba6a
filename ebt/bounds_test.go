package ebt

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/store"
)

// verifyStored reads what st holds of c's feed and checks it from its
// first stored entry (the trust root of a pruned copy) to the head.
func verifyStored(t *testing.T, st *store.Mem, c *chain) []*feed.Entry {
	t.Helper()
	tail, err := st.Tail(c.id)
	if err != nil {
		t.Fatal(err)
	}
	head, err := st.Head(c.id)
	if err != nil {
		t.Fatal(err)
	}
	es, err := st.Range(c.id, tail, int(head.Seq-tail+1))
	if err != nil || len(es) == 0 {
		t.Fatalf("Range from %d: %d entries, %v", tail, len(es), err)
	}
	if err := es[0].VerifySignature(); err != nil {
		t.Fatal(err)
	}
	if _, err := feed.VerifyRun(c.id, feed.Head{Seq: tail - 1, ID: es[0].Prev}, es); err != nil {
		t.Fatalf("stored copy does not verify: %v", err)
	}
	return es
}

// TestQuotaStopsFeed: a follower whose store refuses a feed past its byte
// quota keeps what fits, tells the sender -1, stops asking for the feed
// and does not count it as behind.
func TestQuotaStopsFeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a := newChain(t, "a")
		a.add(100)
		c := n.holder("c", a)
		b := n.node("b", 0)
		quota := int64(0)
		for _, e := range a.entries[:30] {
			quota += int64(e.EncodedSize())
		}
		b.st.SetQuotas(store.Quotas{FeedBytes: quota, Self: b.id})
		b.setContact(a.id, feed.RelFollow)
		n.connect(b, c)
		settle(t, 2*time.Second, "b did not take a's feed up to its quota", func() bool { return b.has(a, 30) })
		settle(t, time.Second, "c still pushes a to b", func() bool {
			ps := c.r.Peers()
			return len(ps) == 1 && ps[0].Tx == 0
		})
		received := b.r.Peers()[0].Received
		// Nothing more is asked or sent for many timeouts, and the feed
		// does not hold progress back.
		advance(20 * DefaultTimeout)
		synctest.Wait()
		if !b.has(a, 30) {
			t.Fatalf("b's head of a moved past its quota: %+v", b.headOf(a.id))
		}
		if ps := b.r.Peers(); len(ps) != 1 || ps[0].Received != received || ps[0].Rx != 0 {
			t.Fatalf("b went on taking a: %+v (had received %d)", ps, received)
		}
		if p := b.r.Progress(); p.Current != p.Target {
			t.Fatalf("b's progress %+v: the full feed counts as behind", p)
		}
		if es := verifyStored(t, b.st, a); len(es) != 30 {
			t.Fatalf("b holds %d entries of a", len(es))
		}
		if bytes, _ := b.st.FeedBytes(a.id); bytes > quota {
			t.Fatalf("b holds %d bytes of a, quota %d", bytes, quota)
		}
	})
}

// TestPrunedHolder: a node whose copy of a feed was pruned serves only
// what it holds: a peer that needs entries before its copy starts is told
// -1 (and gets the feed from a peer that has it whole), a peer past the
// prune point gets the rest.
func TestPrunedHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a := newChain(t, "a")
		a.add(50)
		p := n.holder("p", a)
		if _, err := p.st.Prune(a.id, 21); err != nil {
			t.Fatal(err)
		}
		p.r.Reload(a.id)

		// b has nothing of a: p cannot serve it and says so.
		b := n.node("b", 0)
		b.setContact(a.id, feed.RelFollow)
		m, _ := n.dialRaw("m", p)
		m.handshake(feedNote{Feed: a.id, Note: MakeNote(0, true)})
		if got := m.notes(); got[a.id] != DontReplicate {
			t.Fatalf("pruned holder answered a request from seq 1 with %v, want -1", got[a.id])
		}
		n.connect(b, p)
		advance(3 * DefaultTimeout)
		synctest.Wait()
		if h := b.headOf(a.id); h.Seq != 0 {
			t.Fatalf("b took entries from a pruned copy without their start: %+v", h)
		}
		p.mu.Lock()
		ended := p.results
		p.mu.Unlock()
		if len(ended) > 0 {
			t.Fatalf("a session with the pruned holder ended: %v", ended)
		}
		full := n.holder("full", a)
		n.connect(b, full)
		settle(t, 2*time.Second, "b did not get a from the whole copy", func() bool { return b.has(a, 50) })

		// d holds a up to 30, past p's prune point: p serves the rest.
		d := n.node("d", 0)
		if err := d.st.Append(a.entries[:30]); err != nil {
			t.Fatal(err)
		}
		d.r.Appended(a.id)
		d.setContact(a.id, feed.RelFollow)
		n.connect(d, p)
		settle(t, 2*time.Second, "d did not get the rest of a from the pruned copy", func() bool { return d.has(a, 50) })
		verifyStored(t, p.st, a)
	})
}

// TestInScope: InScope answers after the changes told before it.
func TestInScope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b := n.node("b", 0)
		a, w := newChain(t, "a"), newChain(t, "w")
		check := func(f feed.ID, in, wanted bool) {
			t.Helper()
			gotIn, gotWanted, err := b.r.InScope(t.Context(), f)
			if err != nil || gotIn != in || gotWanted != wanted {
				t.Fatalf("InScope = %v, %v, %v; want %v, %v", gotIn, gotWanted, err, in, wanted)
			}
		}
		check(a.id, false, false)
		b.setContact(a.id, feed.RelFollow)
		check(a.id, true, false)
		b.r.Want([]feed.ID{w.id, a.id})
		check(w.id, true, true)
		check(a.id, true, false) // followed: not only wanted
		b.setContact(a.id, feed.RelNone)
		check(a.id, true, true)
		b.r.Want(nil)
		check(a.id, false, false)
		check(b.id, true, false)
	})
}
