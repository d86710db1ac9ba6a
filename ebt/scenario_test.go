package ebt

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
)

// Scenarios over the in-memory network, under synctest's fake clock. The
// other memlink scenarios (pair, chain, triangle, ring, blocks, cuts) are
// in replicator_test.go.

// noteLog records the notes for one feed that a raw peer receives.
type noteLog struct {
	mu    sync.Mutex
	at    []time.Time
	notes []Note
}

// watch reads everything nd sends to p from now on, recording the notes
// for f; the test goroutine may still send on p.
func (n *testNet) watch(p *rawPeer, f feed.ID) *noteLog {
	l := &noteLog{}
	n.wg.Go(func() {
		for {
			b, err := p.c.Recv(p.ctx)
			if err != nil {
				return
			}
			m, err := decodeMessage(b)
			if err != nil {
				continue
			}
			for _, fn := range m.notes {
				if fn.Feed == f {
					l.mu.Lock()
					l.at = append(l.at, time.Now())
					l.notes = append(l.notes, fn.Note)
					l.mu.Unlock()
				}
			}
		}
	})
	return l
}

// requests returns when the peer was asked to push the feed.
func (l *noteLog) requests() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for i, n := range l.notes {
		if n.Rx() {
			out = append(out, l.at[i])
		}
	}
	return out
}

// follower returns a node that follows a new author a of the given number
// of entries, which no node holds yet.
func (n *testNet) follower(name string, entries int) (*testNode, *chain) {
	nd := n.node(name, 0)
	a := newChain(n.t, "a")
	a.add(entries)
	nd.setContact(a.id, feed.RelFollow)
	return nd, a
}

// rawAhead dials nd from a raw peer that claims to hold claim entries of
// a's feed, and watches what nd tells it of a.
func (n *testNet) rawAhead(name string, nd *testNode, a *chain, claim uint64) (*rawPeer, feed.ID, *noteLog) {
	m, id := n.dialRaw(name, nd)
	m.handshake(feedNote{Feed: a.id, Note: MakeNote(claim, false)})
	return m, id, n.watch(m, a.id)
}

// holder returns a node that follows a and holds all of a's entries.
func (n *testNet) holder(name string, a *chain) *testNode {
	n.t.Helper()
	nd := n.node(name, 0)
	if err := nd.st.Append(a.entries); err != nil {
		n.t.Fatal(err)
	}
	nd.r.Appended(a.id)
	nd.setContact(a.id, feed.RelFollow)
	return nd
}

func TestStalledSourceRotatesThroughAll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const T = DefaultTimeout
		n := newTestNet(t)
		b, a := n.follower("b", 20)
		// Three peers claim far more of a than anyone has and never send
		// any of it.
		var logs []*noteLog
		for i := range 3 {
			_, _, log := n.rawAhead(fmt.Sprintf("m%d", i), b, a, 100)
			logs = append(logs, log)
		}
		start := time.Now()
		advance(stallBackoff * T)
		synctest.Wait()
		var asked []time.Time
		for i, l := range logs {
			rs := l.requests()
			if len(rs) != 1 {
				t.Errorf("m%d asked %d times, want once", i, len(rs))
			}
			asked = append(asked, rs...)
		}
		slices.SortFunc(asked, time.Time.Compare)
		if len(asked) != 3 {
			t.Fatalf("requests at %v, want one per peer", asked)
		}
		// A stalled source is replaced within one timeout of being asked
		// (and not before ¾ of one: the tick period is a quarter timeout);
		// once every peer ahead stalled, nothing more is asked for
		// stallBackoff timeouts (no loop).
		if d := asked[0].Sub(start); d > 100*time.Millisecond {
			t.Errorf("first request after %v", d)
		}
		for i := 1; i < len(asked); i++ {
			if d := asked[i].Sub(asked[i-1]); d < T-T/ticksPerTimeout || d > T {
				t.Errorf("request %d came %v after the one before, want within [%v, %v]", i, d, T-T/ticksPerTimeout, T)
			}
		}
		// A peer that has the feed gets it asked of at once.
		c := n.holder("c", a)
		n.connect(b, c)
		settle(t, time.Second, "b did not get a's feed from c", func() bool { return b.has(a, 20) })
	})
}

func TestHolderMissingFirstEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b, a := n.follower("b", 20)
		// m claims a's feed but lacks entry 1: what it sends cannot be
		// appended.
		m, _, log := n.rawAhead("m", b, a, 20)
		advance(100 * time.Millisecond)
		synctest.Wait()
		if len(log.requests()) != 1 {
			t.Fatalf("m not asked for a")
		}
		c := n.holder("c", a)
		n.connect(b, c)
		m.entries(a.entries[1:]...)
		advance(time.Second)
		synctest.Wait()
		if h := b.headOf(a.id); h.Seq != 0 {
			t.Fatalf("b appended from a holder without entry 1: %+v", h)
		}
		settle(t, 2*DefaultTimeout, "b did not turn to the peer that has entry 1", func() bool { return b.has(a, 20) })
		advance(5 * DefaultTimeout)
		synctest.Wait()
		if rs := log.requests(); len(rs) != 1 {
			t.Errorf("m asked %d times, want once", len(rs))
		}
	})
}

func TestBadSignatureHonestCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b, a := n.follower("b", 5)
		m, mid, log := n.rawAhead("m", b, a, 5)
		c := n.holder("c", a)
		n.connect(b, c)
		synctest.Wait()
		if len(log.requests()) != 1 {
			t.Fatal("m, first ahead, not asked for a")
		}
		bad := *a.entries[0]
		bad.Sig[9] ^= 1
		m.entries(&bad)
		// The honest copy comes from c without waiting for a timeout.
		settle(t, 200*time.Millisecond, "b did not get the honest copy from c", func() bool { return b.has(a, 5) })
		advance(5 * DefaultTimeout)
		synctest.Wait()
		if rs := log.requests(); len(rs) != 1 {
			t.Errorf("m asked %d times for a after sending a bad entry, want once before", len(rs))
		}
		var st PeerStatus
		for _, p := range b.r.Peers() {
			if p.ID == mid {
				st = p
			}
		}
		if st.ID != mid || st.Invalid != 1 {
			t.Errorf("m's session: %+v, want alive with 1 invalid entry", st)
		}
	})
}

func TestForkNoRequestLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b, a := n.follower("b", 3)
		c := n.holder("c", a)
		n.connect(b, c)
		settle(t, time.Second, "no sync", func() bool { return b.has(a, 3) })
		// a signs another entry 3 and m brings it: a fork.
		m, mid, _ := n.rawAhead("m", b, a, 3)
		other := &chain{t: t, key: a.key, id: a.id, entries: append([]*feed.Entry(nil), a.entries[:2]...)}
		m.entries(other.next("post", []byte("fork")))
		settle(t, time.Second, "no fork proof", func() bool {
			_, err := b.st.ForkProof(a.id)
			return err == nil
		})
		// a goes on on c's side; b, frozen, asks no one for more.
		a.add(2)
		if err := c.st.Append(a.entries[3:]); err != nil {
			t.Fatal(err)
		}
		c.r.Appended(a.id)
		advance(5 * DefaultTimeout)
		synctest.Wait()
		if !b.has(a, 3) {
			t.Errorf("frozen feed moved to %+v", b.headOf(a.id))
		}
		if fs := b.r.core.feeds[a.id]; fs.rx != nil {
			t.Errorf("frozen feed has a source")
		}
		// c holds more of a, but a frozen feed is not waited for.
		if p := b.r.Progress(); p.Current != p.Target {
			t.Errorf("progress %+v: a frozen feed counts what peers claim", p)
		}
		if _, pushing := c.r.core.peers[b.id].push[a.id]; pushing {
			t.Errorf("c pushes the frozen feed to b")
		}
		if ps := b.r.Peers(); len(ps) != 2 || (ps[0].ID != mid && ps[1].ID != mid) {
			t.Errorf("sessions after the fork: %+v", ps)
		}
	})
}

func TestLostStoreResyncsOwnFeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b := n.node("a", 0), n.node("b", 0)
		a.setContact(b.id, feed.RelFollow)
		b.setContact(a.id, feed.RelFollow)
		a.publish(10)
		b.publish(5)
		n.connect(b, a)
		settle(t, time.Second, "no sync", func() bool { return b.has(a.chain, 11) && a.has(b.chain, 6) })

		// a loses its store and comes back with its key only.
		a.stop()
		settle(t, time.Second, "a's session did not end", func() bool { return len(b.r.Peers()) == 0 })
		a2 := n.node("a", 0)
		if a2.id != a.id || a2.headOf(a.id).Seq != 0 {
			t.Fatal("not the same identity with an empty store")
		}
		n.connect(a2, b)
		// Its own feed comes back first (its follows are in it), then what
		// it follows.
		settle(t, 2*time.Second, "a did not get its own feed back", func() bool { return a2.has(a.chain, 11) })
		settle(t, 2*time.Second, "a did not get b's feed back", func() bool { return a2.has(b.chain, 6) })
		if p := a2.r.Progress(); p.Current != p.Target {
			t.Errorf("progress %+v", p)
		}
		// It publishes on from its head.
		a2.chain = a.chain
		a2.publish(1)
		settle(t, 2*DefaultTimeout, "b did not get a's new entry", func() bool { return b.has(a.chain, 12) })
	})
}

func TestReconnectSkipsRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const feeds = 1000
		n := newTestNet(t)
		a, b := n.node("a", 0), n.node("b", 0)
		authors := make([]*chain, feeds)
		for i := range authors {
			authors[i] = newChain(t, fmt.Sprintf("author %d", i))
			authors[i].add(1)
		}
		// a and b follow each other and every author; a holds each
		// author's first entry.
		for _, nd := range []*testNode{a, b} {
			other := a.id
			if nd == a {
				other = b.id
			}
			es := []*feed.Entry{nd.contact(other, feed.RelFollow)}
			for _, au := range authors {
				es = append(es, nd.contact(au.id, feed.RelFollow))
			}
			if err := nd.st.Append(es); err != nil {
				t.Fatal(err)
			}
			nd.r.ScopeChanged()
		}
		for _, au := range authors {
			if err := a.st.Append(au.entries); err != nil {
				t.Fatal(err)
			}
			a.r.Appended(au.id)
		}
		n.connect(b, a)
		settle(t, 5*time.Second, "first sync", func() bool {
			for _, au := range authors {
				if !b.has(au, 1) {
					return false
				}
			}
			return a.has(b.chain, feeds+1)
		})
		advance(2 * DefaultTimeout) // each side tells the other what it holds now
		n.mem.Cut(a.id, b.id)
		settle(t, time.Second, "sessions did not end", func() bool { return len(a.r.Peers())+len(b.r.Peers()) == 0 })

		// One feed moves on at a while apart.
		k := authors[feeds/2]
		k.add(1)
		if err := a.st.Append(k.entries[1:]); err != nil {
			t.Fatal(err)
		}
		a.r.Appended(k.id)
		n.mem.Heal(a.id, b.id)
		n.connect(b, a)
		settle(t, time.Second, "the new entry did not arrive", func() bool { return b.has(k, 2) })
		advance(3 * DefaultTimeout)
		synctest.Wait()
		for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
			nd, cc := pair[0], pair[0].counter(pair[1].id)
			if got := cc.notes.Load(); got > 2 {
				t.Errorf("%s sent %d note entries on reconnecting, want at most 2", nd.id.Short(), got)
			}
			if got := cc.sent[msgNotes].Load(); got < 1 {
				t.Errorf("%s sent no NOTES message", nd.id.Short())
			}
			t.Logf("%s sent %d note entries in %d NOTES messages and %d entries", nd.id.Short(), cc.notes.Load(), cc.sent[msgNotes].Load(), cc.entries.Load())
		}
		if got := a.counter(b.id).entries.Load(); got != 1 {
			t.Errorf("a sent %d entries, want the new one", got)
		}
	})
}

// TestOwnFeedBehind: while a peer claims more of a node's own feed than the
// node holds (it lost its store), the node knows not to publish; a claim
// the peer does not back with entries stops counting after a timeout.
func TestOwnFeedBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b := n.node("b", 0)
		b.publish(3)
		if _, behind := b.r.OwnFeedBehind(3); behind {
			t.Fatal("behind with no peer")
		}
		// m claims 10 entries of b's own feed and never sends any.
		_, _, log := n.rawAhead("m", b, b.chain, 10)
		advance(100 * time.Millisecond)
		synctest.Wait()
		if best, behind := b.r.OwnFeedBehind(3); !behind || best != 10 {
			t.Fatalf("OwnFeedBehind = %d, %v; want 10, true", best, behind)
		}
		if len(log.requests()) != 1 {
			t.Fatal("b did not ask m for its own feed")
		}
		advance(DefaultTimeout)
		synctest.Wait()
		if best, behind := b.r.OwnFeedBehind(3); behind {
			t.Fatalf("m's unbacked claim of %d still counts after a timeout", best)
		}
	})
}
