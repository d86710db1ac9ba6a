package ebt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/store"
)

var _ Conn = (*flitlink.Circuit)(nil)

// MaxEntriesPerMsg must fit one store batch.
var _ = [1]struct{}{}[max(0, MaxEntriesPerMsg-store.MaxBatch)]

// testNet is a memlink network of replicating nodes, each with an
// in-memory store. Everything runs inside a synctest bubble.
type testNet struct {
	t      *testing.T
	ctx    context.Context
	cancel context.CancelFunc
	mem    *memlink.Network
	wg     sync.WaitGroup
	// metrics, if set, is the Metrics of the nodes made from then on.
	metrics *Metrics

	mu    sync.Mutex
	links []*flitlink.Link
}

// testNode is one node: its feed, store, replicator and endpoint.
type testNode struct {
	net      *testNet
	*chain   // its own feed
	st       *store.Mem
	r        *Replicator
	ep       *memlink.Endpoint
	stop     context.CancelFunc // ends its Run and its endpoint: the node is gone
	onAppend atomic.Int64

	mu       sync.Mutex
	results  []error                // what each ended Serve returned
	counters map[feed.ID]*countConn // the last session's conn per peer
}

func newTestNet(t *testing.T) *testNet {
	ctx, cancel := context.WithCancel(t.Context())
	n := &testNet{t: t, ctx: ctx, cancel: cancel, mem: memlink.NewNetwork(memlink.Config{Latency: 5 * time.Millisecond})}
	t.Cleanup(n.stop)
	return n
}

// stop ends every node and link and waits for their goroutines.
func (n *testNet) stop() {
	n.cancel()
	n.mu.Lock()
	links := n.links
	n.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
	n.wg.Wait()
}

func (n *testNet) node(name string, hops int) *testNode {
	nd := &testNode{net: n, chain: newChain(n.t, name), st: store.NewMem(), counters: map[feed.ID]*countConn{}}
	var err error
	nd.r, err = New(Config{
		Self:     nd.id,
		Store:    nd.st,
		Hops:     hops,
		Logger:   testLogger(n.t).With("node", name),
		OnAppend: func(feed.ID, feed.Head) { nd.onAppend.Add(1) },
		Metrics:  n.metrics,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	nd.ep = n.mem.Endpoint(nd.id)
	ctx, stop := context.WithCancel(n.ctx)
	nd.stop = stop
	n.wg.Go(func() {
		if err := nd.r.Run(ctx); err != nil {
			n.t.Errorf("%s: Run: %v", name, err)
		}
	})
	n.wg.Go(func() {
		defer nd.ep.Close()
		for {
			l, err := nd.ep.Accept(ctx)
			if err != nil {
				return
			}
			n.track(l)
			n.wg.Go(func() {
				for {
					c, err := l.Accept(n.ctx)
					if err != nil {
						return
					}
					n.wg.Go(func() { nd.serve(c, l, true) })
				}
			})
		}
	})
	return nd
}

func (n *testNet) track(l *flitlink.Link) {
	n.mu.Lock()
	n.links = append(n.links, l)
	n.mu.Unlock()
}

// serve runs one session and records how it ended; the link dies with it.
func (nd *testNode) serve(c *flitlink.Circuit, l *flitlink.Link, acceptor bool) {
	cc := &countConn{Conn: c}
	nd.mu.Lock()
	nd.counters[l.Remote()] = cc
	nd.mu.Unlock()
	err := nd.r.Serve(nd.net.ctx, cc, l.Remote(), acceptor)
	nd.mu.Lock()
	nd.results = append(nd.results, err)
	nd.mu.Unlock()
	l.Close()
}

// connect dials b from a and starts the EBT session (a initiates).
func (n *testNet) connect(a, b *testNode) {
	n.t.Helper()
	if err := n.tryConnect(a, b); err != nil {
		n.t.Fatal(err)
	}
}

func (n *testNet) tryConnect(a, b *testNode) error {
	l, err := a.ep.Dial(n.ctx, b.id)
	if err != nil {
		return err
	}
	n.track(l)
	c, err := l.Open(n.ctx, Service, flitlink.Data)
	if err != nil {
		return err
	}
	n.wg.Go(func() { a.serve(c, l, false) })
	return nil
}

func TestHopsRing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Five nodes in a ring, each following the next; with hops 2 each
		// also replicates the feed after next, which it learns of only from
		// replicated contact entries, and gets it through its next.
		n := newTestNet(t)
		var nodes []*testNode
		for _, name := range []string{"r0", "r1", "r2", "r3", "r4"} {
			nodes = append(nodes, n.node(name, 2))
		}
		for i, nd := range nodes {
			nd.setContact(nodes[(i+1)%5].id, feed.RelFollow)
			nd.publish(4)
		}
		for i := range 5 {
			n.connect(nodes[i], nodes[(i+1)%5])
		}
		settle(t, 3*time.Second, "ring did not converge", func() bool {
			for i, nd := range nodes {
				for k := 1; k <= 2; k++ {
					o := nodes[(i+k)%5]
					if !nd.has(o.chain, len(o.entries)) {
						return false
					}
				}
			}
			return true
		})
		for i, nd := range nodes {
			if o := nodes[(i+3)%5]; nd.headOf(o.id).Seq != 0 {
				t.Errorf("%d holds feed %d, 3 hops away", i, (i+3)%5)
			}
		}
	})
}

// publish appends n posts to the node's own feed, as node.Publish does.
func (nd *testNode) publish(n int) {
	nd.net.t.Helper()
	if err := nd.st.Append(nd.add(n)); err != nil {
		nd.net.t.Fatal(err)
	}
	nd.r.Appended(nd.id)
}

// setContact publishes a contact entry, as node.Contact does.
func (nd *testNode) setContact(target feed.ID, rel feed.Relation) {
	nd.net.t.Helper()
	if err := nd.st.Append([]*feed.Entry{nd.contact(target, rel)}); err != nil {
		nd.net.t.Fatal(err)
	}
	nd.r.Appended(nd.id)
	nd.r.ScopeChanged()
}

func (nd *testNode) headOf(author feed.ID) feed.Head {
	h, err := nd.st.Head(author)
	if err != nil {
		nd.net.t.Fatal(err)
	}
	return h
}

// has reports whether nd holds c's feed exactly up to seq n with c's IDs.
func (nd *testNode) has(c *chain, n int) bool {
	if n == 0 {
		return nd.headOf(c.id).Seq == 0
	}
	return nd.headOf(c.id) == c.entries[n-1].Next()
}

// settle lets the network run until cond holds, advancing fake time by up
// to limit; it fails the test if cond never holds.
func settle(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	const step = 50 * time.Millisecond
	for waited := time.Duration(0); ; waited += step {
		synctest.Wait()
		if cond() {
			return
		}
		if waited >= limit {
			t.Fatalf("after %v: %s", limit, what)
		}
		advance(step)
	}
}

// advance moves the bubble's fake clock (all other goroutines run while
// the test goroutine waits).
func advance(d time.Duration) { <-time.After(d) }

// counter returns what nd sent in its last session with peer.
func (nd *testNode) counter(peer feed.ID) *countConn {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.counters[peer]
}

// countConn counts the messages sent per type.
type countConn struct {
	Conn
	sent    [256]atomic.Int64
	notes   atomic.Int64 // note entries sent
	entries atomic.Int64 // entries sent
}

func (c *countConn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > 0 {
		c.sent[msg[0]].Add(1)
		if m, err := decodeMessage(msg); err == nil {
			c.notes.Add(int64(len(m.notes)))
			c.entries.Add(int64(len(m.entries)))
		}
	}
	return c.Conn.Send(ctx, msg)
}

func TestPair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b := n.node("a", 0), n.node("b", 0)
		a.publish(50)
		b.setContact(a.id, feed.RelFollow)
		n.connect(b, a)
		settle(t, time.Second, "b did not get a's 50 entries", func() bool { return b.has(a.chain, 50) })
		if got := b.onAppend.Load(); got == 0 {
			t.Error("OnAppend not called")
		}
		if a.has(b.chain, 0) != true {
			t.Error("a got b's feed without following it")
		}
		if p := b.r.Progress(); p.Current != 51 || p.Target != 51 {
			t.Errorf("b progress = %+v, want current = target = 51", p)
		}
		pb, pa := b.r.Peers(), a.r.Peers()
		if len(pb) != 1 || pb[0].ID != a.id || pb[0].Rx != 1 || pb[0].Received != 50 || pb[0].State != "replicating" {
			t.Errorf("b's peers = %+v", pb)
		}
		if len(pa) != 1 || pa[0].Tx != 1 || pa[0].Sent != 50 {
			t.Errorf("a's peers = %+v", pa)
		}

		// The notes each side sent are persisted as its peer clock.
		if clock, err := b.st.PeerClock(a.id); err != nil || Note(clock[a.id]).Seq() != 50 {
			t.Errorf("b's clock of a = %v, %v; want a at 50", clock, err)
		}
		if clock, err := a.st.PeerClock(b.id); err != nil || !Note(clock[a.id]).Rx() {
			t.Errorf("a's clock of b = %v, %v; want a request for a", clock, err)
		}

		// Live: new entries are pushed without waiting for a tick.
		a.publish(5)
		settle(t, 100*time.Millisecond, "live entries not pushed", func() bool { return b.has(a.chain, 55) })
	})
}

func TestChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b, c := n.node("a", 0), n.node("b", 0), n.node("c", 0)
		a.publish(30)
		b.setContact(a.id, feed.RelFollow)
		c.setContact(a.id, feed.RelFollow)
		n.connect(b, a)
		n.connect(c, b) // c reaches a only through b
		settle(t, 2*time.Second, "c did not get a's feed through b", func() bool { return c.has(a.chain, 30) })
		a.publish(10)
		// Live entries are pushed down the chain of sources, no tick
		// needed, each once.
		settle(t, 100*time.Millisecond, "live entries did not reach c", func() bool { return c.has(a.chain, 40) })
		for _, nd := range []*testNode{b, c} {
			var recv int64
			for _, p := range nd.r.Peers() {
				recv += p.Received
			}
			if recv != 40 {
				t.Errorf("%s received %d entries, want 40", nd.id.Short(), recv)
			}
		}
	})
}

func TestTriangle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		nodes := []*testNode{n.node("a", 0), n.node("b", 0), n.node("c", 0)}
		for _, x := range nodes {
			for _, y := range nodes {
				if x != y {
					x.setContact(y.id, feed.RelFollow)
				}
			}
			x.publish(20)
		}
		n.connect(nodes[0], nodes[1])
		n.connect(nodes[1], nodes[2])
		n.connect(nodes[2], nodes[0])
		all := func() bool {
			for _, x := range nodes {
				for _, y := range nodes {
					if !x.has(y.chain, len(y.entries)) {
						return false
					}
				}
			}
			return true
		}
		settle(t, 2*time.Second, "triangle did not converge", all)
		for _, x := range nodes {
			x.publish(3)
		}
		settle(t, time.Second, "live entries did not converge", all)
		var recv, sent int64
		for _, x := range nodes {
			for _, p := range x.r.Peers() {
				recv += p.Received
				sent += p.Sent
			}
		}
		// 3 feeds × 2 receivers × 25 entries; duplicates are possible but
		// must stay rare (the simulator's target: at most 5%).
		if recv < 150 || recv > 157 {
			t.Errorf("received %d entries for 150 needed", recv)
		}
		t.Logf("received %d, sent %d entries for 150 needed", recv, sent)
	})
}

func TestAuthorBlockStopsRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b, c := n.node("a", 0), n.node("b", 0), n.node("c", 0)
		a.publish(5)
		b.setContact(a.id, feed.RelFollow)
		c.setContact(a.id, feed.RelFollow)
		n.connect(b, a)
		n.connect(c, b)
		settle(t, 2*time.Second, "c did not get a's first entries", func() bool { return c.has(a.chain, 5) })

		a.setContact(c.id, feed.RelBlock) // seq 6
		a.publish(5)                      // 7..11
		settle(t, time.Second, "b did not get a's block and later entries", func() bool { return b.has(a.chain, 11) })
		advance(10 * time.Second) // several ticks: nothing may leak
		synctest.Wait()
		if h := c.headOf(a.id); h.Seq > 5 {
			t.Errorf("c got a's feed up to %d, past a's block of c at 6", h.Seq)
		}
	})
}

func TestSelfBlockClosesSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b := n.node("a", 0), n.node("b", 0)
		b.setContact(a.id, feed.RelFollow)
		n.connect(b, a)
		settle(t, time.Second, "session did not start", func() bool { return len(b.r.Peers()) == 1 && len(a.r.Peers()) == 1 })
		b.setContact(a.id, feed.RelBlock)
		settle(t, time.Second, "session with a blocked peer survived", func() bool { return len(b.r.Peers()) == 0 })
		b.mu.Lock()
		res := b.results
		b.mu.Unlock()
		if len(res) != 1 || !errors.Is(res[0], ErrBlocked) {
			t.Errorf("Serve returned %v, want ErrBlocked", res)
		}
		// A new session with the blocked peer is refused at once.
		if err := b.r.Serve(n.ctx, &pipeConn{}, a.id, true); !errors.Is(err, ErrBlocked) {
			t.Errorf("Serve with a blocked peer = %v, want ErrBlocked", err)
		}
		if err := b.r.Serve(n.ctx, &pipeConn{}, b.id, true); !errors.Is(err, ErrSelf) {
			t.Errorf("Serve with self = %v, want ErrSelf", err)
		}
	})
}

// pipeConn is a Conn that never delivers anything.
type pipeConn struct{ closed atomic.Bool }

func (c *pipeConn) Send(ctx context.Context, msg []byte) error { return nil }
func (c *pipeConn) Recv(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (c *pipeConn) Close() error { c.closed.Store(true); return nil }

func TestReconnectSendsNotes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b := n.node("a", 0), n.node("b", 0)
		a.publish(3)
		b.setContact(a.id, feed.RelFollow)
		n.connect(b, a)
		settle(t, time.Second, "no sync", func() bool { return b.has(a.chain, 3) })
		n.mem.Cut(a.id, b.id)
		settle(t, time.Second, "sessions did not end", func() bool { return len(a.r.Peers())+len(b.r.Peers()) == 0 })
		n.mem.Heal(a.id, b.id)
		n.connect(b, a)
		settle(t, time.Second, "no new session", func() bool { return len(a.r.Peers()) == 1 && len(b.r.Peers()) == 1 })
		advance(10 * time.Second)
		synctest.Wait()
		for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
			nd, cc := pair[0], pair[0].counter(pair[1].id)
			if got := cc.sent[msgNotes].Load(); got < 1 {
				t.Errorf("%s sent %d NOTES messages after reconnecting", nd.id.Short(), got)
			}
			if got := cc.sent[msgHello].Load(); got != 1 {
				t.Errorf("%s sent %d HELLO messages", nd.id.Short(), got)
			}
			if got := cc.sent[msgEntries].Load(); got != 0 {
				t.Errorf("%s sent %d ENTRIES messages with nothing new", nd.id.Short(), got)
			}
		}
	})
}

func TestSourceCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		a, b, c := n.node("a", 0), n.node("b", 0), n.node("c", 0)
		b.setContact(a.id, feed.RelFollow)
		c.setContact(a.id, feed.RelFollow)
		a.publish(10)
		n.connect(c, a)
		settle(t, time.Second, "c did not sync", func() bool { return c.has(a.chain, 10) })
		n.connect(b, a)
		n.connect(b, c)
		settle(t, time.Second, "b did not sync", func() bool { return b.has(a.chain, 10) })
		// Whichever is b's source, cut it; a keeps publishing to c.
		fs := b.r.core.feeds[a.id] // read after synctest.Wait: Run is blocked
		if fs.rx == nil {
			t.Fatal("b has no source for a")
		}
		if fs.rx.id == a.id {
			n.mem.Cut(a.id, b.id)
		} else {
			n.mem.Cut(c.id, b.id)
		}
		a.publish(5)
		settle(t, 2*DefaultTimeout, "b stuck after its source was cut", func() bool { return b.has(a.chain, 15) })
	})
}

// rawPeer speaks ebt/1 by hand over a circuit.
type rawPeer struct {
	t   *testing.T
	ctx context.Context
	c   *flitlink.Circuit
}

// dialRaw opens a circuit from a bare endpoint to nd; nd accepts it.
func (n *testNet) dialRaw(name string, nd *testNode) (*rawPeer, feed.ID) {
	id := newChain(n.t, name).id
	ep := n.mem.Endpoint(id)
	l, err := ep.Dial(n.ctx, nd.id)
	if err != nil {
		n.t.Fatal(err)
	}
	n.track(l)
	c, err := l.Open(n.ctx, Service, flitlink.Data)
	if err != nil {
		n.t.Fatal(err)
	}
	return &rawPeer{t: n.t, ctx: n.ctx, c: c}, id
}

func (p *rawPeer) send(m message) {
	p.t.Helper()
	if err := p.c.Send(p.ctx, encodeMessage(m)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *rawPeer) recv() message {
	p.t.Helper()
	b, err := p.c.Recv(p.ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	m, err := decodeMessage(b)
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// handshake does the initiator's side: read HELLO and NOTES, send ours.
func (p *rawPeer) handshake(notes ...feedNote) map[feed.ID]Note {
	p.t.Helper()
	if m := p.recv(); m.typ != msgHello {
		p.t.Fatalf("first message is type %d", m.typ)
	}
	m := p.recv()
	if m.typ != msgNotes {
		p.t.Fatalf("second message is type %d", m.typ)
	}
	p.send(message{typ: msgHello, capability: Capability})
	p.send(message{typ: msgNotes, notes: notes})
	got := map[feed.ID]Note{}
	for _, n := range m.notes {
		got[n.Feed] = n.Note
	}
	return got
}

// notes reads the next message, which must be NOTES.
func (p *rawPeer) notes() map[feed.ID]Note {
	p.t.Helper()
	m := p.recv()
	if m.typ != msgNotes {
		p.t.Fatalf("got message type %d, want NOTES", m.typ)
	}
	got := map[feed.ID]Note{}
	for _, n := range m.notes {
		got[n.Feed] = n.Note
	}
	return got
}

func (p *rawPeer) entries(es ...*feed.Entry) {
	m := message{typ: msgEntries}
	for _, e := range es {
		m.entries = append(m.entries, e.Encode())
	}
	p.send(m)
}

func TestMaliciousPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b := n.node("b", 0)
		a := newChain(t, "a")
		a.add(6)
		b.setContact(a.id, feed.RelFollow)
		m, _ := n.dialRaw("m", b)
		if got := m.handshake(feedNote{Feed: a.id, Note: MakeNote(6, false)}); got[a.id] != MakeNote(0, false) {
			t.Fatalf("b's first note for a = %v, want 0", got[a.id])
		}
		if got := m.notes(); got[a.id] != MakeNote(0, true) {
			t.Fatalf("b's answer for a = %v, want a request", got[a.id])
		}
		bad := *a.entries[1]
		bad.Sig[5] ^= 0x40
		m.entries(a.entries[0], &bad)
		m.send(message{typ: msgEntries, entries: [][]byte{{1, 2, 3}}}) // malformed
		settle(t, time.Second, "invalid entries not counted", func() bool {
			ps := b.r.Peers()
			return len(ps) == 1 && ps[0].Invalid == 2
		})
		if !b.has(a, 1) {
			t.Fatalf("b's head of a = %+v, want seq 1 only", b.headOf(a.id))
		}
		// The session survives: later valid entries are accepted.
		m.entries(a.entries[1:6]...)
		settle(t, time.Second, "valid entries after invalid ones rejected", func() bool { return b.has(a, 6) })
		if ps := b.r.Peers(); len(ps) != 1 {
			t.Fatalf("session gone: %+v", ps)
		}
	})
}

func TestForkFreezesFeed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b := n.node("b", 0)
		a := newChain(t, "a")
		a.add(4)
		b.setContact(a.id, feed.RelFollow)
		m, _ := n.dialRaw("m", b)
		m.handshake(feedNote{Feed: a.id, Note: MakeNote(4, false)})
		m.entries(a.entries[:3]...)
		settle(t, time.Second, "no sync", func() bool { return b.has(a, 3) })
		other := &chain{t: t, key: a.key, id: a.id, entries: append([]*feed.Entry(nil), a.entries[:2]...)}
		m.entries(other.next("post", []byte("fork")))
		settle(t, time.Second, "no fork proof", func() bool {
			_, err := b.st.ForkProof(a.id)
			return err == nil
		})
		proof, _ := b.st.ForkProof(a.id)
		if proof.Seq() != 3 {
			t.Errorf("fork proof at seq %d, want 3", proof.Seq())
		}
		m.entries(a.entries[3])
		advance(time.Second)
		synctest.Wait()
		if !b.has(a, 3) {
			t.Errorf("frozen feed moved to %+v", b.headOf(a.id))
		}
		if err := b.st.Append(a.entries[3:4]); !errors.Is(err, store.ErrForked) {
			t.Errorf("store append to the forked feed: %v", err)
		}
		if len(b.r.Peers()) != 1 {
			t.Error("session ended over a fork")
		}
	})
}

func TestStalledSourceRotated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		b, c := n.node("b", 0), n.node("c", 0)
		a := newChain(t, "a")
		a.add(20)
		if err := c.st.Append(a.entries); err != nil {
			t.Fatal(err)
		}
		c.r.Appended(a.id) // as any writer to the store must
		b.setContact(a.id, feed.RelFollow)
		c.setContact(a.id, feed.RelFollow)
		// m claims far more of a than c has, wins the source, then says nothing.
		m, _ := n.dialRaw("m", b)
		m.handshake(feedNote{Feed: a.id, Note: MakeNote(100, false)})
		advance(100 * time.Millisecond)
		n.connect(b, c)
		advance(time.Second)
		synctest.Wait()
		if b.headOf(a.id).Seq != 0 {
			t.Fatalf("b got a's feed before the timeout: %+v", b.headOf(a.id))
		}
		settle(t, 2*DefaultTimeout, "stalled source not rotated", func() bool { return b.has(a, 20) })
	})
}
