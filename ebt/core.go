package ebt

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// ErrBlocked reports a session with a peer this node blocks.
var ErrBlocked = errors.New("ebt: peer is blocked")

// This file is the replication state machine: events in, actions out. It
// does no I/O, starts no goroutines and reads no clock (the time comes with
// each event), so the same event sequence always yields the same actions.
// The driver (Replicator) owns one core on one goroutine, turns sessions,
// timers and store results into events and carries out the actions.
//
// Contract with the driver: every actAppend and actCheckFork is answered by
// evAppended / evForkChecked before the next other event is handled.

// ---- state ----

// feedState is what the core knows of one feed.
type feedState struct {
	id       feed.ID
	head     feed.Head
	contacts map[feed.ID]feed.Relation
	frozen   bool
	full     bool       // the store refused its entries for a byte quota: not taken any more (until restart)
	tail     uint64     // the first seq the store holds: above 1 once pruned
	rx       *peerState // the one peer asked to push this feed to us; nil if none
	rxAt     time.Time  // when rx was chosen or last delivered
	best     uint64     // the most any peer has claimed to hold
}

// stall records that a peer, as a feed's source, sent nothing of it for
// the timeout while claiming claim. Until it claims more, it is not chosen
// again for stallBackoff timeouts: rotation visits each peer ahead once,
// and a peer that only claims but never sends costs one request per
// stallBackoff timeouts, not one per tick.
type stall struct {
	claim uint64
	at    time.Time
}

// stallBackoff is how many timeouts a stalled source is passed over.
const stallBackoff = 10

// ticksPerTimeout is how many ticks the driver delivers per timeout. The
// time-driven rules run at every tick and count a source as idle once it
// has been silent for timeout - tick, so a stalled source is replaced
// between ¾ and one timeout after its last entry, never later; tick notes
// still go out once per timeout.
const ticksPerTimeout = 4

// ownClaim returns the most of our own feed a connected peer claims to hold
// and has not stalled on (a claim it did not back with entries within a
// timeout of being asked no longer counts, until it claims more).
func (c *core) ownClaim() uint64 {
	var best uint64
	for _, p := range c.order {
		claim := p.claim[c.self]
		if st, ok := p.stalled[c.self]; ok && claim <= st.claim {
			continue
		}
		best = max(best, claim)
	}
	return best
}

// tickPeriod is how often the driver delivers evTick for a timeout.
func tickPeriod(timeout time.Duration) time.Duration { return timeout / ticksPerTimeout }

// peerState is what the core knows of one session.
type peerState struct {
	id       feed.ID
	acceptor bool
	open     bool // notes may be sent: always for the acceptor, after the peer's first notes otherwise
	flush    bool // send a NOTES message even if no note is pending

	their   map[feed.ID]Note   // the last note the peer sent per feed (for quiet feeds: as stored)
	claim   map[feed.ID]uint64 // how far the peer is known to have each feed (its notes and entries)
	sent    map[feed.ID]Note   // the last note we sent per feed in this session
	pending map[feed.ID]Note   // notes not yet handed to the driver
	quiet   map[feed.ID]bool   // feeds neither side announced: both held the stored seq at the start
	push    map[feed.ID]uint64 // feeds we push to the peer → highest seq queued
	rx      map[feed.ID]bool   // feeds this peer pushes to us (it is their source)
	bad     map[feed.ID]bool   // feeds it sent an invalid entry of: never our source again
	stalled map[feed.ID]stall  // feeds it stalled on as source: not chosen again for a while unless it claims more
	have    map[feed.ID]bool   // feeds we moved ahead on: maybe tell the peer at the next tick
	shared  int                // feeds whose last note we sent (or, quiet, would send) is not DontReplicate
	refused map[feed.ID]Note   // out-of-scope feeds answered with -1 → the peer's note, taken up if the feed joins the scope

	received, invalid int64
	duplicate         int64 // entries received that we held already

	strikes *limit.Strikes // its offences (limits.go); nil before the first
	dropped bool           // past its strikes: its session is being closed
}

// core is the EBT state machine of one node.
type core struct {
	self feed.ID
	hops int
	want map[feed.ID]bool // feeds in scope beyond the follows (evWant)
	// lazy are the wanted feeds not in scope by follows: their live
	// entries come by another path (context gossip), so they take a
	// source only from a peer ahead, and drop it on a duplicate. EBT
	// fills what that path lost, within about a timeout.
	lazy    map[feed.ID]bool
	timeout time.Duration
	abuse   limit.Policy // when a peer's offences drop it (limits.go); zero: never
	notedAt time.Time    // when tickNotes last ran
	log     *slog.Logger
	m       *Metrics // counts duplicates, invalid entries, stalls and freezes (nil: none)

	now       time.Time
	feeds     map[feed.ID]*feedState
	scope     map[feed.ID]bool
	scopeList []feed.ID // scope, sorted
	peers     map[feed.ID]*peerState
	order     []*peerState // peers sorted by ID: the fixed order of every choice

	start, current, target int64 // progress, over the scope

	out []any // actions of the event being handled
}

func newCore(self feed.ID, hops int, timeout time.Duration, log *slog.Logger) *core {
	return &core{
		self:    self,
		hops:    hops,
		timeout: timeout,
		log:     log,
		feeds:   map[feed.ID]*feedState{},
		scope:   map[feed.ID]bool{},
		peers:   map[feed.ID]*peerState{},
	}
}

// handle applies one event at time now and returns the actions it causes,
// in the order the driver must carry them out.
func (c *core) handle(now time.Time, ev any) []any {
	c.now = now
	c.out = nil
	switch ev := ev.(type) {
	case evInit:
		c.onInit(ev)
	case evConnect:
		c.onConnect(ev)
	case evDisconnect:
		c.onDisconnect(ev.peer)
	case evNotes:
		c.onNotes(ev)
	case evEntries:
		c.onEntries(ev)
	case evAppended:
		c.onAppended(ev)
	case evForkChecked:
		c.onForkChecked(ev)
	case evLocal:
		c.onLocal(ev)
	case evWant:
		c.want = ev.feeds
		c.updateScope()
	case evTick:
		c.onTick()
	default:
		panic("ebt: unknown event")
	}
	c.flushNotes()
	out := c.out
	c.out = nil
	return out
}

func (c *core) emit(a any) { c.out = append(c.out, a) }

// feed returns the state of id, creating an empty one.
func (c *core) feed(id feed.ID) *feedState {
	fs := c.feeds[id]
	if fs == nil {
		fs = &feedState{id: id}
		c.feeds[id] = fs
	}
	return fs
}

// ---- notes ----

// note queues note n for feed f to peer p unless it is what p last got.
func (c *core) note(p *peerState, f feed.ID, n Note) {
	old, ok := p.sent[f]
	if ok && old == n {
		return
	}
	c.unquiet(p, f)
	if ok && old != DontReplicate {
		p.shared--
	}
	if n != DontReplicate {
		p.shared++
	}
	p.sent[f] = n
	p.pending[f] = n
}

// forget drops what we told p about f (p declined f and stopped listening).
func (c *core) forget(p *peerState, f feed.ID) {
	c.unquiet(p, f)
	if old, ok := p.sent[f]; ok {
		if old != DontReplicate {
			p.shared--
		}
		delete(p.sent, f)
		delete(p.pending, f)
	}
}

// unquiet ends the quiet state of f with p: a note is about to tell p our
// state of f, or f is no longer shared with p.
func (c *core) unquiet(p *peerState, f feed.ID) {
	if p.quiet[f] {
		delete(p.quiet, f)
		p.shared--
	}
}

// flushNotes hands pending notes to the driver, one action per peer.
func (c *core) flushNotes() {
	for _, p := range c.order {
		if !p.open || (len(p.pending) == 0 && !p.flush) {
			continue
		}
		ids := slices.SortedFunc(maps.Keys(p.pending), feed.ID.Compare)
		notes := make([]feedNote, len(ids))
		for i, f := range ids {
			notes[i] = feedNote{Feed: f, Note: p.pending[f]}
		}
		clear(p.pending)
		p.flush = false
		c.emit(actNotes{peer: p.id, notes: notes})
	}
}

// ourNote is our note for f to p, given the current source.
func (c *core) ourNote(p *peerState, fs *feedState) Note {
	return MakeNote(fs.head.Seq, fs.rx == p)
}

// share tells p our state of f (which must be shared with p).
func (c *core) share(p *peerState, f feed.ID) {
	if !c.shared(f, p.id) {
		c.decline(p, f)
		return
	}
	fs := c.feed(f)
	c.note(p, f, c.ourNote(p, fs))
}

// decline stops replicating f with p: no pushing, no receiving, and -1 if
// p was told anything else.
func (c *core) decline(p *peerState, f feed.ID) {
	c.stopPush(p, f)
	c.unquiet(p, f)
	fs := c.feed(f)
	if fs.rx == p {
		c.unsetSource(fs)
		c.reselect(fs, p, true)
	}
	if n, ok := p.sent[f]; ok && n != DontReplicate {
		c.note(p, f, DontReplicate)
	}
}

// ---- sources ----

// candidate reports whether p may be the source of fs; with ahead, only if
// it claims more than we have and did not stall as fs's source at that
// claim already.
func (c *core) candidate(p *peerState, fs *feedState, ahead bool) bool {
	if !p.open || p.bad[fs.id] || !c.shared(fs.id, p.id) {
		return false
	}
	if n, ok := p.their[fs.id]; ok && n == DontReplicate {
		return false
	}
	if !ahead {
		return true
	}
	claim := p.claim[fs.id]
	if st, ok := p.stalled[fs.id]; ok && claim <= st.claim && c.now.Sub(st.at) < stallBackoff*c.timeout {
		return false
	}
	return claim > fs.head.Seq
}

// ahead reports whether p claims more of fs than we hold.
func (c *core) ahead(fs *feedState, p *peerState) bool {
	return p.claim[fs.id] > fs.head.Seq
}

// idle reports whether fs's source has not been chosen and has delivered
// nothing for the timeout.
func (c *core) idle(fs *feedState) bool {
	return c.now.Sub(fs.rxAt) >= c.timeout-tickPeriod(c.timeout)
}

// tentative reports whether fs may take a source that is not ahead, so that
// live entries are pushed to us as they come: any feed but our own, which
// only a peer holding more of it than we do (we lost data) can send us,
// and the lazy ones, which another path (context gossip) brings live.
func (c *core) tentative(fs *feedState) bool { return fs.id != c.self && !c.lazy[fs.id] }

// setSource makes p the one peer that pushes fs to us.
func (c *core) setSource(fs *feedState, p *peerState) {
	if fs.rx == p {
		return
	}
	if old := fs.rx; old != nil {
		c.unsetSource(fs)
		if c.shared(fs.id, old.id) {
			c.note(old, fs.id, MakeNote(fs.head.Seq, false))
		}
	}
	fs.rx = p
	fs.rxAt = c.now
	p.rx[fs.id] = true
	c.note(p, fs.id, MakeNote(fs.head.Seq, true))
}

// unsetSource forgets fs's source without telling it.
func (c *core) unsetSource(fs *feedState) {
	if fs.rx != nil {
		delete(fs.rx.rx, fs.id)
		fs.rx = nil
	}
}

// dropSource turns rx off with fs's source.
func (c *core) dropSource(fs *feedState) {
	if old := fs.rx; old != nil {
		c.unsetSource(fs)
		if c.shared(fs.id, old.id) {
			c.note(old, fs.id, MakeNote(fs.head.Seq, false))
		}
	}
}

// bestAhead returns the peer other than except that claims the most of fs
// beyond our head (the first in the fixed order on a tie), or nil.
func (c *core) bestAhead(fs *feedState, except *peerState) *peerState {
	var best *peerState
	for _, p := range c.order {
		if p != except && c.candidate(p, fs, true) && (best == nil || p.claim[fs.id] > best.claim[fs.id]) {
			best = p
		}
	}
	return best
}

// reselect chooses a new source for fs, which has none, avoiding except:
// the peer furthest ahead, or with tentative the first peer in the fixed
// order that announced fs in this session, so that it pushes what it gets
// later; not one that asked us to push fs (it could only pass on what we
// send it).
func (c *core) reselect(fs *feedState, except *peerState, tentative bool) {
	if fs.rx != nil || !c.wantRx(fs) {
		return
	}
	if p := c.bestAhead(fs, except); p != nil {
		c.setSource(fs, p)
		return
	}
	if !tentative || !c.tentative(fs) {
		return
	}
	for _, p := range c.order {
		n, told := p.their[fs.id]
		if p != except && told && !n.Rx() && !p.quiet[fs.id] && c.candidate(p, fs, false) {
			c.setSource(fs, p)
			return
		}
	}
}

// markBad records that p sent an invalid entry of fs: p is not fs's source
// again in this session.
func (c *core) markBad(p *peerState, fs *feedState, err error) {
	p.invalid++
	c.m.add(cInvalid, 1)
	if p.bad[fs.id] {
		c.log.Debug("ebt: invalid entry", "peer", p.id, "feed", fs.id, "err", err)
		return
	}
	c.log.Info("ebt: rejected invalid entry", "peer", p.id, "feed", fs.id, "err", err)
	p.bad[fs.id] = true
	if fs.rx == p {
		c.dropSource(fs)
		c.reselect(fs, p, true)
	}
}

// ---- pushing ----

// startPush pushes f to p from after seq.
func (c *core) startPush(p *peerState, f feed.ID, seq uint64) {
	if cur, ok := p.push[f]; ok {
		if seq <= cur {
			return // already queued that far
		}
		c.emit(actCancel{peer: p.id, author: f})
	}
	p.push[f] = seq
	c.pushMore(p, c.feed(f), c.feed(f).head.Seq)
}

// pushMore queues entries of fs up to limit that p has neither been sent
// nor is known to hold.
func (c *core) pushMore(p *peerState, fs *feedState, limit uint64) {
	cur, ok := p.push[fs.id]
	if !ok {
		return
	}
	cur = max(cur, p.claim[fs.id])
	if limit > cur {
		c.emit(actSend{peer: p.id, author: fs.id, from: cur + 1, to: limit})
	}
	p.push[fs.id] = max(cur, limit)
}

func (c *core) stopPush(p *peerState, f feed.ID) {
	if _, ok := p.push[f]; ok {
		delete(p.push, f)
		c.emit(actCancel{peer: p.id, author: f})
	}
}

// ---- progress ----

// targetOf is how far fs counts toward the progress target: as far as any
// peer has claimed, except a feed frozen by a fork or full (a quota), which
// never moves on.
func (c *core) targetOf(fs *feedState) int64 {
	if fs.frozen || fs.full {
		return int64(fs.head.Seq)
	}
	return int64(max(fs.head.Seq, fs.best))
}

// retarget applies change to fs, keeping the progress target in step.
func (c *core) retarget(fs *feedState, change func()) {
	if !c.scope[fs.id] {
		change()
		return
	}
	c.target -= c.targetOf(fs)
	change()
	c.target += c.targetOf(fs)
}

func (c *core) recountProgress() {
	c.current, c.target = 0, 0
	for f := range c.scope {
		fs := c.feed(f)
		c.current += int64(fs.head.Seq)
		c.target += c.targetOf(fs)
	}
}

// setHead moves fs's head, keeping progress counts.
func (c *core) setHead(fs *feedState, h feed.Head) {
	if c.scope[fs.id] {
		c.current += int64(h.Seq) - int64(fs.head.Seq)
	}
	c.retarget(fs, func() { fs.head = h })
}

// raiseClaim records that p holds f at least up to seq.
func (c *core) raiseClaim(p *peerState, fs *feedState, seq uint64) {
	if seq > p.claim[fs.id] {
		p.claim[fs.id] = seq
	}
	if seq > fs.best {
		c.retarget(fs, func() { fs.best = seq })
	}
}

// ---- event handlers ----

func (c *core) onInit(ev evInit) {
	for id, s := range ev.feeds {
		fs := c.feed(id)
		fs.head, fs.frozen, fs.tail = s.head, s.frozen, s.tail
		fs.contacts = maps.Clone(s.contacts)
	}
	c.setScope(c.computeScope())
	c.recountProgress()
	c.start = c.current
}

func (c *core) onConnect(ev evConnect) {
	if ev.peer == c.self || c.relation(c.self, ev.peer) == feed.RelBlock {
		c.emit(actClose{peer: ev.peer, err: ErrBlocked})
		return
	}
	if c.peers[ev.peer] != nil {
		c.onDisconnect(ev.peer)
	}
	p := &peerState{
		id:       ev.peer,
		acceptor: ev.acceptor,
		their:    map[feed.ID]Note{},
		claim:    map[feed.ID]uint64{},
		sent:     map[feed.ID]Note{},
		pending:  map[feed.ID]Note{},
		quiet:    map[feed.ID]bool{},
		push:     map[feed.ID]uint64{},
		rx:       map[feed.ID]bool{},
		bad:      map[feed.ID]bool{},
		stalled:  map[feed.ID]stall{},
		have:     map[feed.ID]bool{},
		refused:  map[feed.ID]Note{},
	}
	// Request skipping: a feed the peer was known to hold at the very seq
	// we hold now is not announced. The stored clock only says what the
	// peer held (its notes and entries), and seqs only grow: if the peer
	// skips the feed too, both hold that seq. If it does not, its note
	// for the feed gets our answer (onNote) as any first note does.
	for f, n := range ev.clock {
		fs := c.feeds[f]
		if fs == nil || !n.Replicate() || n.Seq() != fs.head.Seq || !c.shared(f, p.id) {
			continue
		}
		p.their[f] = MakeNote(n.Seq(), false)
		p.claim[f] = n.Seq()
		p.quiet[f] = true
		p.shared++
	}
	c.peers[p.id] = p
	i, _ := slices.BinarySearchFunc(c.order, p.id, func(q *peerState, id feed.ID) int { return feed.ID.Compare(q.id, id) })
	c.order = slices.Insert(c.order, i, p)
	if ev.acceptor {
		c.open(p)
	}
}

// open starts the note exchange with p: every shared feed in scope but
// the quiet ones.
func (c *core) open(p *peerState) {
	p.open = true
	p.flush = true
	for _, f := range c.scopeList {
		if _, done := p.sent[f]; !done && !p.quiet[f] && c.shared(f, p.id) && p.their[f] != DontReplicate {
			c.share(p, f)
		}
	}
}

func (c *core) onDisconnect(id feed.ID) {
	p := c.peers[id]
	if p == nil {
		return
	}
	delete(c.peers, id)
	c.order = slices.DeleteFunc(c.order, func(q *peerState) bool { return q == p })
	if clock := c.clockOf(p); len(clock) > 0 {
		c.emit(actSaveClock{peer: id, clock: clock})
	}
	for _, f := range slices.SortedFunc(maps.Keys(p.rx), feed.ID.Compare) {
		fs := c.feed(f)
		c.unsetSource(fs)
		c.reselect(fs, nil, true)
	}
}

// clockOf is p's clock as far as we know it, to store for request
// skipping: per feed it replicates with us, how far it is known to be.
func (c *core) clockOf(p *peerState) map[feed.ID]int64 {
	clock := make(map[feed.ID]int64, len(p.their))
	for f, n := range p.their {
		if n != DontReplicate {
			n = MakeNote(p.claim[f], n.Rx())
		}
		clock[f] = int64(n)
	}
	return clock
}

func (c *core) onNotes(ev evNotes) {
	p := c.peers[ev.peer]
	if p == nil {
		return
	}
	first := !p.open
	if first {
		// The initiator answers the acceptor's first notes with its own.
		p.open = true
		p.flush = true
	}
	for _, n := range ev.notes {
		c.onNote(p, n.Feed, n.Note)
	}
	if first {
		c.open(p)
	}
}

// maxRefused bounds the out-of-scope feeds a session answers with -1, so
// a peer naming endless feeds cannot grow our state.
const maxRefused = 1 << 16

// onNote handles p's note n for feed f.
func (c *core) onNote(p *peerState, f feed.ID, n Note) {
	if !c.scope[f] {
		// Not ours to replicate: answer -1 once, and keep nothing else
		// but the note, for if f joins the scope (updateScope).
		if _, told := p.sent[f]; !told && n != DontReplicate && len(p.refused) < maxRefused {
			p.refused[f] = n
			c.note(p, f, DontReplicate)
		}
		return
	}
	prev, had := p.their[f]
	p.their[f] = n
	if !c.shared(f, p.id) {
		// The author blocks p.
		c.stopPush(p, f)
		if n != DontReplicate {
			c.note(p, f, DontReplicate)
		}
		return
	}
	fs := c.feed(f)
	if n == DontReplicate {
		c.stopPush(p, f)
		if fs.rx == p {
			c.unsetSource(fs)
			c.reselect(fs, p, true)
		}
		c.forget(p, f)
		return
	}
	seq := n.Seq()
	p.claim[f] = seq // where the peer is now, even if a stored clock said more
	c.raiseClaim(p, fs, seq)
	if n.Rx() && seq+1 < fs.tail {
		// It asks for entries we pruned: we cannot push it the feed.
		c.stopPush(p, f)
		if fs.rx == p {
			c.unsetSource(fs)
			c.reselect(fs, p, true)
		}
		c.note(p, f, DontReplicate)
		return
	}
	if sent, told := p.sent[f]; !told || (had && prev == DontReplicate) || sent == DontReplicate {
		c.share(p, f)
	}
	if n.Rx() {
		c.startPush(p, f, seq)
	} else {
		c.stopPush(p, f)
		if fs.head.Seq > seq && p.sent[f].Seq() < fs.head.Seq {
			// The peer is behind and does not know we are ahead.
			c.note(p, f, c.ourNote(p, fs))
		}
	}
	if c.wantRx(fs) && fs.rx != p && c.candidate(p, fs, true) && (fs.rx == nil || c.idle(fs)) {
		// No source, or one that has had nothing for us for a while:
		// take the peer furthest ahead. A source that is sending, or
		// was chosen or sent last only recently, keeps the feed: it may
		// have entries on the way, and switching now would have both
		// peers send them. If it stalls, a tick rotates away from it.
		c.setSource(fs, c.bestAhead(fs, nil))
	}
}

// batch is the entries of one author accepted from one message.
type batch struct {
	fs      *feedState
	entries []*feed.Entry
	ids     []feed.Hash // ids[i] is entries[i].ID()
	head    feed.Head
}

// onEntries takes the runs of an ENTRIES message. The session verified
// each run on its own (links and the last signature); what is left here
// is where a run meets the feed's head: the part after the head is
// appended if it links to it, the part at or below it is a duplicate or
// a fork.
func (c *core) onEntries(ev evEntries) {
	p := c.peers[ev.peer]
	if p == nil || c.offendEntries(p, ev) {
		return
	}
	p.received += int64(ev.malformed)
	p.invalid += int64(ev.malformed)
	c.m.add(cInvalid, ev.malformed)
	var (
		batches  []*batch
		byAuthor = map[feed.ID]*batch{}
		dup      = map[feed.ID]bool{}
		checked  = map[feed.ID]bool{}
	)
	for _, r := range ev.runs {
		p.received += int64(r.n)
		a := r.author
		fs := c.feeds[a]
		if fs == nil || !c.wantRx(fs) {
			// Not asked for: out of scope or frozen.
			if r.err != nil {
				p.invalid++
				c.m.add(cInvalid, 1)
			}
			continue
		}
		b := byAuthor[a]
		if b == nil {
			b = &batch{fs: fs, head: fs.head}
			byAuthor[a] = b
			batches = append(batches, b)
		}
		c.takeRun(p, b, r, dup, checked)
		if r.err != nil {
			c.markBad(p, fs, r.err)
		}
	}
	for _, b := range batches {
		if len(b.entries) > 0 {
			c.emit(actAppend{peer: p.id, entries: b.entries, ids: b.ids, head: b.head})
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(dup), feed.ID.Compare) {
		c.onDuplicate(p, c.feeds[a])
	}
}

// takeRun adds to b the entries of the verified run r that extend b's
// head, and notes duplicates (dup) and possible forks (one fork check per
// author and message: checked). A run is a hash chain, so one comparison
// covers all of its entries at or below a head.
func (c *core) takeRun(p *peerState, b *batch, r run, dup, checked map[feed.ID]bool) {
	fs, es, ids := b.fs, r.entries, r.ids
	if k := atOrBelow(es, fs.head.Seq); k > 0 {
		dup[fs.id] = true
		p.duplicate += int64(k)
		c.m.add(cDuplicate, k)
		e := es[k-1]
		c.raiseClaim(p, fs, e.Seq)
		if e.Seq != fs.head.Seq || ids[k-1] != fs.head.ID {
			// Below the head, or another entry at it: maybe a fork. The
			// driver compares it with the stored entry.
			if !checked[fs.id] {
				checked[fs.id] = true
				c.emit(actCheckFork{peer: p.id, entry: e})
			}
			return
		}
		es, ids = es[k:], ids[k:]
	}
	if k := atOrBelow(es, b.head.Seq); k > 0 {
		dup[fs.id] = true // taken from another run of this message
		p.duplicate += int64(k)
		c.m.add(cDuplicate, k)
		es, ids = es[k:], ids[k:]
	}
	if len(es) == 0 || es[0].Seq > b.head.Seq+1 {
		return // nothing new, or a gap: the peer pushes from further than we are
	}
	if es[0].Prev != b.head.ID {
		c.markBad(p, fs, fmt.Errorf("%w: seq %d", feed.ErrWrongPrev, es[0].Seq))
		return
	}
	// The rest of the run links to the head: take it whole. Its last entry
	// is the one whose signature authenticated the run.
	b.entries = append(b.entries, es...)
	b.ids = append(b.ids, ids...)
	b.head = feed.Head{Seq: es[len(es)-1].Seq, ID: ids[len(ids)-1]}
	c.raiseClaim(p, fs, b.head.Seq)
}

// atOrBelow returns how many of es, entries with consecutive seqs, have a
// seq of at most seq.
func atOrBelow(es []*feed.Entry, seq uint64) int {
	if len(es) == 0 || es[0].Seq > seq {
		return 0
	}
	return int(min(seq-es[0].Seq+1, uint64(len(es))))
}

// onDuplicate handles p sending entries of fs we already hold: rx goes off
// with p unless no other peer is ahead.
func (c *core) onDuplicate(p *peerState, fs *feedState) {
	if fs.rx != p {
		if _, told := p.sent[fs.id]; !told && c.shared(fs.id, p.id) {
			c.note(p, fs.id, MakeNote(fs.head.Seq, false))
		}
		return
	}
	if other := c.bestAhead(fs, p); other != nil {
		c.setSource(fs, other)
	} else if c.lazy[fs.id] {
		// Another path was first: pull from now on, when a peer is ahead.
		c.dropSource(fs)
	}
}

func (c *core) onAppended(ev evAppended) {
	es := ev.act.entries
	fs := c.feed(es[0].Author)
	p := c.peers[ev.act.peer]
	if ev.err != nil {
		// Another path (an own publish, context gossip) may have stored
		// these entries first: the feed moved all the same, and the peers
		// we push it to must get what it moved by. If it stored only some
		// of them, the rest is appended now: the peer sent it once and
		// will not again.
		c.log.Debug("ebt: append failed", "feed", fs.id, "seq", es[0].Seq, "err", ev.err)
		old := fs.head
		c.reload(fs, ev.state)
		if fs.head.Seq > old.Seq {
			c.advanced(fs, nil)
		}
		if _, full := quotaFit(ev.err); full {
			c.fill(fs, p)
			return
		}
		if k := atOrBelow(es, fs.head.Seq); k > 0 && k < len(es) && ev.act.ids[k-1] == fs.head.ID && c.wantRx(fs) {
			c.emit(actAppend{peer: ev.act.peer, entries: es[k:], ids: ev.act.ids[k:], head: ev.act.head})
		}
		return
	}
	c.setHead(fs, ev.act.head)
	if p != nil && fs.rx == p {
		fs.rxAt = c.now
	}
	// Contact entries change the graph as the store indexed them. A peer
	// the author blocks gets nothing from the block entry on.
	var blockAt map[feed.ID]uint64
	changed := false
	for _, e := range es {
		if e.Type != feed.TypeContact {
			continue
		}
		ct, err := feed.DecodeContact(e.Body)
		if err != nil {
			continue
		}
		if fs.contacts == nil {
			fs.contacts = map[feed.ID]feed.Relation{}
		}
		if ct.Rel == feed.RelNone {
			delete(fs.contacts, ct.Target)
		} else {
			fs.contacts[ct.Target] = ct.Rel
		}
		if ct.Rel == feed.RelBlock {
			if blockAt == nil {
				blockAt = map[feed.ID]uint64{}
			}
			if _, ok := blockAt[ct.Target]; !ok {
				blockAt[ct.Target] = e.Seq
			}
		}
		changed = true
	}
	if changed {
		c.authorChanged(fs.id)
	}
	c.advanced(fs, blockAt)
}

// advanced pushes fs's new entries to the peers that want them (up to
// before any block of theirs in blockAt) and notes owed have-notes.
func (c *core) advanced(fs *feedState, blockAt map[feed.ID]uint64) {
	for _, p := range c.order {
		if _, ok := p.push[fs.id]; ok {
			limit := fs.head.Seq
			if k, ok := blockAt[p.id]; ok {
				limit = min(limit, k-1)
			}
			c.pushMore(p, fs, limit)
			continue
		}
		if n, ok := p.their[fs.id]; ok && n != DontReplicate && c.shared(fs.id, p.id) {
			p.have[fs.id] = true
		}
	}
}

// fill stops taking entries of fs: the store refused them for a byte
// quota. The peer that sent them, and the source if another, are told -1
// (do not replicate this feed with me), so they stop sending it; the feed
// no longer counts toward the progress target, so it is not stuck.
func (c *core) fill(fs *feedState, sender *peerState) {
	if fs.full {
		return
	}
	c.log.Warn("ebt: feed reached its byte quota; not taking more of it", "feed", fs.id, "seq", fs.head.Seq)
	c.retarget(fs, func() { fs.full = true })
	src := fs.rx
	c.unsetSource(fs)
	for _, p := range []*peerState{sender, src} {
		if p != nil && p.open && c.peers[p.id] == p {
			c.stopPush(p, fs.id)
			c.note(p, fs.id, DontReplicate)
		}
	}
}

// reload replaces what the core knows of fs with the stored state.
func (c *core) reload(fs *feedState, s feedSnapshot) {
	old := fs.contacts
	fs.tail = s.tail
	c.setHead(fs, s.head)
	fs.contacts = maps.Clone(s.contacts)
	if s.frozen && !fs.frozen {
		c.freeze(fs)
	}
	if !maps.Equal(old, fs.contacts) {
		c.authorChanged(fs.id)
	}
}

// freeze stops taking entries of fs: a fork proof exists.
func (c *core) freeze(fs *feedState) {
	c.m.add(cForkFreezes, 1)
	c.retarget(fs, func() { fs.frozen = true })
	c.dropSource(fs)
}

func (c *core) onForkChecked(ev evForkChecked) {
	e := ev.act.entry
	fs := c.feed(e.Author)
	switch ev.result {
	case forkProven:
		c.log.Warn("ebt: feed forked; frozen", "feed", fs.id, "seq", e.Seq, "peer", ev.act.peer)
		c.freeze(fs)
	case forkInvalid:
		if p := c.peers[ev.act.peer]; p != nil {
			c.markBad(p, fs, feed.ErrBadSignature)
		}
	}
}

func (c *core) onLocal(ev evLocal) {
	fs := c.feed(ev.author)
	old := fs.head
	c.reload(fs, ev.state)
	if fs.head.Seq > old.Seq {
		c.advanced(fs, nil)
	}
}

func (c *core) onTick() {
	c.tickNotes()
	// A feed some peer is ahead on must not stay stuck: request it if it
	// has no source, move it from a source with nothing more for us, or
	// rotate away from a source that is ahead but silent for the timeout.
	c.checkSources()
}

// tickNotes tells peers how far we got since, once per timeout and feed,
// where they do not know it: peers that are behind (they may need another
// source) and our source (so that each side knows the other's clock when
// the session ends, for request skipping). A peer we push the feed to
// learns it from the entries.
func (c *core) tickNotes() {
	if c.now.Sub(c.notedAt) < c.timeout-tickPeriod(c.timeout) {
		return
	}
	c.notedAt = c.now
	for _, p := range c.order {
		for _, f := range slices.SortedFunc(maps.Keys(p.have), feed.ID.Compare) {
			delete(p.have, f)
			fs := c.feed(f)
			n, ok := p.their[f]
			if _, pushing := p.push[f]; pushing || !ok || n == DontReplicate || !c.shared(f, p.id) || p.sent[f].Seq() >= fs.head.Seq {
				continue
			}
			if p.claim[f] < fs.head.Seq || fs.rx == p {
				c.note(p, f, c.ourNote(p, fs))
			}
		}
	}
}

// checkSources applies the time-driven source rules to every feed in scope.
func (c *core) checkSources() {
	for _, f := range c.scopeList {
		fs := c.feed(f)
		if !c.wantRx(fs) {
			continue
		}
		switch rx := fs.rx; {
		case rx == nil:
			c.reselect(fs, nil, true)
		case !c.idle(fs):
		case !c.ahead(fs, rx):
			// Nothing more to get from it: move to the peer furthest ahead.
			if p := c.bestAhead(fs, nil); p != nil {
				c.setSource(fs, p)
			}
		default:
			// Not chosen again for f until it claims more.
			rx.stalled[f] = stall{claim: rx.claim[f], at: c.now}
			c.m.add(cStalls, 1)
			if next := c.nextAhead(fs); next != nil {
				c.log.Debug("ebt: source stalled; rotating", "feed", f, "from", rx.id, "to", next.id)
				c.setSource(fs, next)
			}
		}
	}
}

// nextAhead returns the first peer after fs's source in the fixed order
// that claims more of fs than we have, or nil.
func (c *core) nextAhead(fs *feedState) *peerState {
	i := slices.Index(c.order, fs.rx)
	for j := 1; j < len(c.order); j++ {
		p := c.order[(i+j)%len(c.order)]
		if c.candidate(p, fs, true) {
			return p
		}
	}
	return nil
}

// ---- views ----

// Progress returns replication progress over the scope.
func (c *core) progress() Progress {
	return Progress{Start: c.start, Current: c.current, Target: c.target}
}

// peerStatus returns the status of every session, in the fixed order.
func (c *core) peerStatus() []PeerStatus {
	out := make([]PeerStatus, 0, len(c.order))
	for _, p := range c.order {
		st := "handshake"
		if p.open {
			st = "replicating"
		}
		out = append(out, PeerStatus{
			ID:        p.id,
			Acceptor:  p.acceptor,
			State:     st,
			Feeds:     p.shared,
			Rx:        len(p.rx),
			Tx:        len(p.push),
			Received:  p.received,
			Invalid:   p.invalid,
			Duplicate: p.duplicate,
		})
	}
	return out
}
