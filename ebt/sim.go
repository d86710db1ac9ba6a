package ebt

import (
	"container/heap"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"time"

	"github.com/contextd/contextd/feed"
)

// The simulator runs many nodes in one goroutine under a virtual clock, as
// a discrete-event simulation: each node is a real Replicator (its core,
// its action handling and its sessions' outboxes) that is never Run; the
// simulator hands it the events Run would (session start and end, received
// messages, local appends, ticks) at virtual times, and carries every
// message its outboxes produce over a simulated link with a fixed one-way
// latency and FIFO order, as flitlink/memlink does. Messages are the real
// encoded ebt/1 messages, decoded and verified by the session code on
// arrival. Nothing sleeps, so a run of minutes of virtual time with 3 s
// stall timers takes milliseconds, and a seed always gives the same run.

// SimConfig configures Simulate. Zero fields mean the defaults.
type SimConfig struct {
	Seed         uint64
	Nodes        int     // at least 2
	ExtraEdges   int     // links added to a random spanning tree
	Authors      int     // nodes that publish, 1..Nodes; every node follows all of them
	History      int     // entries per author, published before the nodes connect
	Live         int     // entries per author, published once the history phase is quiet
	KillFraction float64 // share of the nodes killed at once during the history phase

	Timeout    time.Duration // every node's Config.Timeout (stall timeout and tick); 0 = DefaultTimeout
	MinLatency time.Duration // one-way latency of a link, uniform in [MinLatency, MaxLatency]; 0 = 5 ms
	MaxLatency time.Duration // 0 = 50 ms

	// NewStore returns an empty store for one node (required; the ebt
	// package has no store of its own).
	NewStore func() Store
}

// SimResult is what one simulated run measured.
type SimResult struct {
	// Pairs counts the (node, entry) pairs that should be held at the
	// end: every node of the largest connected component of live nodes
	// (all nodes when none was killed), every entry of another author
	// that some node of that component holds. Delivered counts those held.
	Pairs, Delivered int64
	// Received counts entries that arrived in ENTRIES messages, Needed
	// the entries appended from peers, per phase; Received/Needed - 1 is
	// the redundancy.
	ReceivedHistory, NeededHistory int64
	ReceivedLive, NeededLive       int64
	Notes                          int64 // note entries sent, both phases
	MaxHops                        int   // the longest path an entry took from its author
	// LiveDelay sums, over the live entries appended from peers, the
	// virtual time from their publication; LiveDelayMax is the longest.
	// HistoryDelay sums, over the history entries, the time from the
	// start (when the first link may come up) until they arrived.
	LiveDelay, LiveDelayMax, HistoryDelay time.Duration
	Elapsed                               time.Duration // virtual time from the first link to the last thing any node did
	Settled                               bool          // both phases became quiet within the time limit
}

// Stuck reports whether the run ended with a pair undelivered.
func (r SimResult) Stuck() bool { return !r.Settled || r.Delivered < r.Pairs }

// Add adds o's counts to r (maxima for MaxHops and LiveDelayMax), to sum
// runs; Settled stays true only if both settled.
func (r *SimResult) Add(o SimResult) {
	r.Pairs += o.Pairs
	r.Delivered += o.Delivered
	r.ReceivedHistory += o.ReceivedHistory
	r.NeededHistory += o.NeededHistory
	r.ReceivedLive += o.ReceivedLive
	r.NeededLive += o.NeededLive
	r.Notes += o.Notes
	r.MaxHops = max(r.MaxHops, o.MaxHops)
	r.LiveDelay += o.LiveDelay
	r.LiveDelayMax = max(r.LiveDelayMax, o.LiveDelayMax)
	r.HistoryDelay += o.HistoryDelay
	r.Elapsed += o.Elapsed
	r.Settled = r.Settled && o.Settled
}

// Defaults of SimConfig.
const (
	simMinLatency = 5 * time.Millisecond
	simMaxLatency = 50 * time.Millisecond
	simDialSpread = 200 * time.Millisecond // links come up at random times in [0, simDialSpread)
	simPhaseLimit = time.Hour              // a phase not quiet by then is a failed run
	// simQuietTicks ticks in a row with nothing to do make a node quiet:
	// by then every time-driven rule has had its chance (a stall is
	// detected within one timeout of the last delivery, a stall mark
	// expires after stallBackoff timeouts), so nothing can change without
	// a new event.
	simQuietTicks = (stallBackoff + 2) * ticksPerTimeout
)

// Simulate runs one simulated network to the end: the history phase (the
// authors hold their entries, the links come up, optionally a share of
// the nodes dies at a random time within the first timeout) and the live
// phase (each surviving author publishes its live entries at random times
// within one timeout), each until quiescence: no message in flight and
// every node idle for simQuietTicks ticks, after which nothing can change.
func Simulate(cfg SimConfig) (SimResult, error) {
	switch {
	case cfg.Nodes < 2, cfg.Authors < 1, cfg.Authors > cfg.Nodes, cfg.History < 0, cfg.Live < 0, cfg.ExtraEdges < 0:
		return SimResult{}, fmt.Errorf("ebt: simulate: need 2 ≤ nodes, 1 ≤ authors ≤ nodes, no negative counts (%+v)", cfg)
	case cfg.KillFraction < 0 || cfg.KillFraction >= 1:
		return SimResult{}, fmt.Errorf("ebt: simulate: kill fraction %v not in [0, 1)", cfg.KillFraction)
	case cfg.Timeout < 0 || cfg.MinLatency < 0 || cfg.MaxLatency < 0:
		return SimResult{}, errors.New("ebt: simulate: negative timeout or latency")
	case cfg.NewStore == nil:
		return SimResult{}, errors.New("ebt: simulate: SimConfig.NewStore is required")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MinLatency == 0 {
		cfg.MinLatency = simMinLatency
	}
	if cfg.MaxLatency == 0 {
		cfg.MaxLatency = max(simMaxLatency, cfg.MinLatency)
	}
	s := &sim{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(cfg.Seed, 0x65627473696d)),
		now:   time.Unix(1_700_000_000, 0),
		pubAt: map[feed.ID][]time.Time{},
	}
	if err := s.build(); err != nil {
		return SimResult{}, err
	}
	s.begin = s.now

	// History.
	s.dialAll()
	if k := int(math.Round(cfg.KillFraction * float64(cfg.Nodes))); k > 0 {
		s.at(s.now.Add(s.uniform(0, cfg.Timeout)), func() { s.kill(k) })
	}
	held := s.held()
	s.res.Settled = s.settle()
	s.res.NeededHistory = s.held() - held

	// Live.
	if s.res.Settled {
		s.liveRun = true
		held = s.held()
		for _, a := range s.authors {
			for range cfg.Live {
				s.at(s.now.Add(s.uniform(0, cfg.Timeout)), func() { s.publish(a) })
			}
		}
		s.res.Settled = s.settle()
		s.res.NeededLive = s.held() - held
	}
	s.res.Elapsed = s.last.Sub(s.begin)
	s.measure()
	return s.res, s.err
}

// sim is one run.
type sim struct {
	cfg     SimConfig
	rng     *rand.Rand
	now     time.Time
	queue   simQueue
	seq     uint64    // orders events of equal time: FIFO
	pending int       // scheduled events other than ticks
	busy    int       // live nodes not yet idle for simQuietTicks ticks
	liveRun bool      // the live phase has started
	last    time.Time // when a node last did something
	nodes   []*simNode
	authors []*simNode
	edges   [][2]int
	pubAt   map[feed.ID][]time.Time // when each author published each entry
	begin   time.Time               // when the history phase began
	res     SimResult
	err     error // the first internal failure; ends the run
}

// simNode is one node: a Replicator that is never Run.
type simNode struct {
	idx   int
	key   feed.PrivateKey
	id    feed.ID
	st    Store
	r     *Replicator
	alive bool
	ends  []*simEnd // its end of each link
	idle  int       // ticks in a row with nothing to do since the last other event
	// hops[author][seq-1] is how many links the entry travelled to get
	// here (0 for its author, -1 not held).
	hops map[feed.ID][]int32
}

// simEnd is one node's end of a link: its session with the peer.
type simEnd struct {
	node, peer *simNode
	other      *simEnd
	s          *session // nil until the session started
	lat        time.Duration
	closed     bool
}

// followAll is a node's store in the simulation: the node follows every
// author without contact entries in its feed, so feeds hold only posts.
type followAll struct {
	Store
	self    feed.ID
	follows map[feed.ID]feed.Relation
}

func (s followAll) Contacts(author feed.ID) (map[feed.ID]feed.Relation, error) {
	if author == s.self {
		return maps.Clone(s.follows), nil
	}
	return s.Store.Contacts(author)
}

// build creates the nodes with the authors' history, the graph, and starts
// every Replicator.
func (s *sim) build() error {
	n := s.cfg.Nodes
	for i := range n {
		seed := sha256.Sum256(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte("ebt sim"), s.cfg.Seed), uint64(i)))
		k, err := feed.PrivateKeyFromSeed(seed[:])
		if err != nil {
			return err
		}
		s.nodes = append(s.nodes, &simNode{idx: i, key: k, id: k.Public(), alive: true, hops: map[feed.ID][]int32{}})
	}
	for _, i := range s.rng.Perm(n)[:s.cfg.Authors] {
		s.authors = append(s.authors, s.nodes[i])
	}
	total := s.cfg.History + s.cfg.Live
	for _, nd := range s.nodes {
		follows := map[feed.ID]feed.Relation{}
		for _, a := range s.authors {
			if a != nd {
				follows[a.id] = feed.RelFollow
			}
			hops := make([]int32, total)
			for i := range hops {
				hops[i] = -1
			}
			nd.hops[a.id] = hops
		}
		nd.st = followAll{Store: s.cfg.NewStore(), self: nd.id, follows: follows}
	}
	for _, a := range s.authors {
		for range s.cfg.History {
			if err := s.sign(a); err != nil {
				return err
			}
		}
	}
	for _, nd := range s.nodes {
		r, err := New(Config{Self: nd.id, Store: nd.st, Timeout: s.cfg.Timeout, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		nd.r = r
		init, err := r.loadAll()
		if err != nil {
			return err
		}
		r.step(s.now, init)
		s.busy++
		s.tickAt(nd, s.now.Add(s.uniform(0, s.cfg.Timeout)))
	}

	// A random tree (each node links to a random earlier one in a random
	// order) plus distinct extra links.
	order := s.rng.Perm(n)
	linked := map[[2]int]bool{}
	link := func(a, b int) bool {
		a, b = min(a, b), max(a, b)
		if a == b || linked[[2]int{a, b}] {
			return false
		}
		linked[[2]int{a, b}] = true
		s.edges = append(s.edges, [2]int{a, b})
		return true
	}
	for i := 1; i < n; i++ {
		link(order[i], order[s.rng.IntN(i)])
	}
	for added, tries := 0, 0; added < s.cfg.ExtraEdges && tries < 100*s.cfg.ExtraEdges; tries++ {
		if link(s.rng.IntN(n), s.rng.IntN(n)) {
			added++
		}
	}
	return nil
}

// sign appends author a's next entry to its store.
func (s *sim) sign(a *simNode) error {
	h, err := a.st.Head(a.id)
	if err != nil {
		return err
	}
	body := binary.BigEndian.AppendUint64(make([]byte, 0, 64), h.Seq+1)
	body = append(body, make([]byte, 56)...)
	e, err := feed.Sign(a.key, h, "post", body, s.now)
	if err != nil {
		return err
	}
	if err := a.st.Append([]*feed.Entry{e}); err != nil {
		return err
	}
	a.hops[a.id][e.Seq-1] = 0
	s.pubAt[a.id] = append(s.pubAt[a.id], s.now)
	return nil
}

// ---- events ----

type simEvent struct {
	at   time.Time
	seq  uint64
	tick bool
	fn   func()
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// at schedules fn at time t.
func (s *sim) at(t time.Time, fn func()) {
	s.seq++
	s.pending++
	heap.Push(&s.queue, &simEvent{at: t, seq: s.seq, fn: fn})
}

// tickAt schedules n's next tick.
func (s *sim) tickAt(n *simNode, t time.Time) {
	s.seq++
	heap.Push(&s.queue, &simEvent{at: t, seq: s.seq, tick: true, fn: func() { s.tick(n) }})
}

// settle runs events until the network is quiet; false if it is not by
// the phase's time limit or something failed.
func (s *sim) settle() bool {
	limit := s.now.Add(simPhaseLimit)
	for s.err == nil && (s.pending > 0 || s.busy > 0) {
		ev := heap.Pop(&s.queue).(*simEvent)
		if ev.at.After(limit) {
			return false
		}
		s.now = ev.at
		if !ev.tick {
			s.pending--
		}
		ev.fn()
	}
	return s.err == nil
}

func (s *sim) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// active records that n did something: it is not quiet.
func (s *sim) active(n *simNode) {
	if n.idle >= simQuietTicks {
		s.busy++
	}
	n.idle = 0
	s.last = s.now
}

func (s *sim) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// ---- what happens ----

// dialAll brings every link up at a random time: a random end dials, the
// other accepts one latency later.
func (s *sim) dialAll() {
	for _, e := range s.edges {
		a, b := s.nodes[e[0]], s.nodes[e[1]]
		if s.rng.IntN(2) == 0 {
			a, b = b, a
		}
		lat := s.uniform(s.cfg.MinLatency, s.cfg.MaxLatency)
		s.at(s.now.Add(s.uniform(0, simDialSpread)), func() { s.dial(a, b, lat) })
	}
}

func (s *sim) dial(a, b *simNode, lat time.Duration) {
	if !a.alive || !b.alive {
		return
	}
	ea := &simEnd{node: a, peer: b, lat: lat}
	eb := &simEnd{node: b, peer: a, lat: lat, other: ea}
	ea.other = eb
	a.ends = append(a.ends, ea)
	b.ends = append(b.ends, eb)
	// Scheduled first, so the acceptor's session starts before anything
	// the dialer sends arrives.
	s.at(s.now.Add(lat), func() { s.start(eb, true) })
	s.start(ea, false)
}

// start begins e's session.
func (s *sim) start(e *simEnd, acceptor bool) {
	n := e.node
	if !n.alive || e.closed {
		return
	}
	s.active(n)
	e.s = n.r.newSession(e.peer.id, acceptor, nil, func(error) { s.close(e) })
	if err := n.r.connect(s.now, e.s); err != nil {
		e.s = nil
		s.close(e)
		return
	}
	s.flush(n)
}

// close ends the link of e: at once at e's node, one latency later at the
// other end.
func (s *sim) close(e *simEnd) {
	s.at(s.now, func() { s.drop(e) })
	s.at(s.now.Add(e.lat), func() { s.drop(e.other) })
}

// drop ends the session at e.
func (s *sim) drop(e *simEnd) {
	if e.closed {
		return
	}
	e.closed = true
	n := e.node
	if !n.alive || e.s == nil {
		return
	}
	s.active(n)
	n.r.dropSession(s.now, e.s)
	s.flush(n)
}

// flush sends what n's outboxes hold; it returns how many messages.
func (s *sim) flush(n *simNode) int {
	sent := 0
	for _, e := range n.ends {
		if e.s == nil || e.closed {
			continue
		}
		select {
		case <-e.s.out.wake:
		default:
			continue
		}
		for {
			msg, _, err := e.s.out.next()
			if err != nil {
				s.fail(fmt.Errorf("ebt: simulate: node %d: %w", n.idx, err))
				return sent
			}
			if msg == nil {
				break
			}
			sent++
			if msg[0] == msgNotes {
				count, _ := binary.Uvarint(msg[1:])
				s.res.Notes += int64(count)
			}
			to := e.other
			s.at(s.now.Add(e.lat), func() { s.receive(to, msg) })
		}
	}
	return sent
}

// receive hands a message that arrived at e to its node.
func (s *sim) receive(e *simEnd, msg []byte) {
	n, from := e.node, e.peer
	if !n.alive || !from.alive || e.closed || e.s == nil {
		return
	}
	m, err := decodeMessage(msg)
	if err != nil {
		s.fail(fmt.Errorf("ebt: simulate: node %d got a bad message: %w", n.idx, err))
		return
	}
	s.active(n)
	if m.typ == msgEntries {
		if s.liveRun {
			s.res.ReceivedLive += int64(len(m.entries))
		} else {
			s.res.ReceivedHistory += int64(len(m.entries))
		}
	}
	ev := e.s.event(m)
	if ev == nil {
		return
	}
	runs, _ := ev.(evEntries)
	before := make([]uint64, len(runs.runs))
	for i, r := range runs.runs {
		before[i] = n.head(r.author)
	}
	n.r.step(s.now, ev)
	for i, r := range runs.runs {
		after := n.head(r.author)
		to, ok := n.hops[r.author]
		if !ok {
			continue
		}
		for _, en := range r.entries {
			if en.Seq > before[i] && en.Seq <= after {
				to[en.Seq-1] = max(from.hops[r.author][en.Seq-1], 0) + 1
				if s.liveRun {
					d := s.now.Sub(s.pubAt[r.author][en.Seq-1])
					s.res.LiveDelay += d
					s.res.LiveDelayMax = max(s.res.LiveDelayMax, d)
				} else {
					s.res.HistoryDelay += s.now.Sub(s.begin)
				}
			}
		}
	}
	s.flush(n)
}

// head is how much of author's feed n holds.
func (n *simNode) head(author feed.ID) uint64 {
	if fs := n.r.core.feeds[author]; fs != nil {
		return fs.head.Seq
	}
	return 0
}

func (s *sim) tick(n *simNode) {
	if !n.alive {
		return
	}
	n.r.step(s.now, evTick{})
	if s.flush(n) > 0 {
		s.active(n)
	} else if n.idle++; n.idle == simQuietTicks {
		s.busy--
	}
	s.tickAt(n, s.now.Add(tickPeriod(s.cfg.Timeout)))
}

// publish appends author a's next entry, as node.Publish does.
func (s *sim) publish(a *simNode) {
	if !a.alive {
		return
	}
	if err := s.sign(a); err != nil {
		s.fail(err)
		return
	}
	s.active(a)
	a.r.Appended(a.id)
	a.r.onLocal(s.now)
	s.flush(a)
}

// kill stops k random nodes at once; their peers notice one latency later.
func (s *sim) kill(k int) {
	for _, i := range s.rng.Perm(len(s.nodes))[:k] {
		n := s.nodes[i]
		n.alive = false
		if n.idle < simQuietTicks {
			s.busy--
		}
		for _, e := range n.ends {
			e.closed = true
			s.at(s.now.Add(e.lat), func() { s.drop(e.other) })
		}
	}
	var alive []*simNode
	for _, a := range s.authors {
		if a.alive {
			alive = append(alive, a)
		}
	}
	s.authors = alive
}

// held sums, over all nodes, the entries they hold of other authors.
func (s *sim) held() int64 {
	var sum int64
	for _, n := range s.nodes {
		for f := range n.hops {
			if f != n.id {
				sum += int64(n.head(f))
			}
		}
	}
	return sum
}

// measure fills Pairs, Delivered and MaxHops over the largest connected
// component of live nodes.
func (s *sim) measure() {
	comp := make([]int, len(s.nodes))
	for i := range comp {
		comp[i] = -1
	}
	adj := make([][]int, len(s.nodes))
	for _, e := range s.edges {
		if s.nodes[e[0]].alive && s.nodes[e[1]].alive {
			adj[e[0]] = append(adj[e[0]], e[1])
			adj[e[1]] = append(adj[e[1]], e[0])
		}
	}
	var best []int
	for i, n := range s.nodes {
		if !n.alive || comp[i] >= 0 {
			continue
		}
		members := []int{i}
		comp[i] = i
		for k := 0; k < len(members); k++ {
			for _, j := range adj[members[k]] {
				if comp[j] < 0 {
					comp[j] = i
					members = append(members, j)
				}
			}
		}
		if len(members) > len(best) {
			best = members
		}
	}
	for f := range s.nodes[0].hops {
		var top uint64
		for _, i := range best {
			top = max(top, s.nodes[i].head(f))
		}
		for _, i := range best {
			n := s.nodes[i]
			if n.id == f {
				continue
			}
			s.res.Pairs += int64(top)
			s.res.Delivered += int64(n.head(f))
		}
	}
	for _, n := range s.nodes {
		for _, hs := range n.hops {
			for _, h := range hs {
				s.res.MaxHops = max(s.res.MaxHops, int(h))
			}
		}
	}
}
