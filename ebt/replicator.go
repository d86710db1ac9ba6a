package ebt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// Store is the part of the node's store that replication uses (a subset of
// store.Store). It must be safe for concurrent use: sessions read entries
// and write peer clocks while Run appends.
type Store interface {
	// Append appends consecutive entries of one author that extend its
	// head, atomically; contact entries update the graph in the same
	// transaction. A batch refused for a byte quota fails with an error
	// that has a method QuotaFit() int (store.QuotaError), the number of
	// its leading entries within the quota: those are appended alone, the
	// feed is taken no more, and its senders are told -1.
	Append(entries []*feed.Entry) error
	// AppendIDs is Append of entries whose IDs the caller has computed
	// (ids[i] = entries[i].ID()); it does not hash them again.
	AppendIDs(entries []*feed.Entry, ids []feed.Hash) error
	// Head returns the feed's head (zero for an unknown feed).
	Head(author feed.ID) (feed.Head, error)
	// Heads returns the head of every feed with at least one entry.
	Heads() (map[feed.ID]feed.Head, error)
	// Get returns one entry.
	Get(author feed.ID, seq uint64) (*feed.Entry, error)
	// Tail returns the first seq the store holds of the feed: 1, or more
	// once it pruned the entries before it; 0 for a feed without entries.
	// Reads below it fail with an error that has a method PrunedTail()
	// uint64 (store.PrunedError).
	Tail(author feed.ID) (uint64, error)
	// Range returns at most limit entries with seq >= from, ascending.
	Range(author feed.ID, from uint64, limit int) ([]*feed.Entry, error)
	// RangeEncoded is Range returning canonical encodings, at most
	// maxBytes of them together (but at least one entry if there is one).
	RangeEncoded(author feed.ID, from uint64, limit, maxBytes int) ([][]byte, error)
	// Contacts returns author's relations other than RelNone.
	Contacts(author feed.ID) (map[feed.ID]feed.Relation, error)
	// PeerClock returns peer's stored clock (an empty map if none).
	PeerClock(peer feed.ID) (map[feed.ID]int64, error)
	// SetPeerClock merges notes into peer's stored clock.
	SetPeerClock(peer feed.ID, notes map[feed.ID]int64) error
	// AddForkProof records a fork proof, freezing the feed.
	AddForkProof(p *feed.ForkProof) error
	// ForkProof returns the author's fork proof; an error if there is none.
	ForkProof(author feed.ID) (*feed.ForkProof, error)
	// ForkProofs returns every fork proof.
	ForkProofs() ([]*feed.ForkProof, error)
}

// Defaults for zero Config fields.
const (
	DefaultHops    = 1
	DefaultTimeout = 3 * time.Second
)

// Errors callers branch on.
var (
	// ErrClosed reports a call on a Replicator whose Run has returned.
	ErrClosed = errors.New("ebt: replicator closed")
	// ErrSelf reports a session with this node's own ID.
	ErrSelf = errors.New("ebt: session with self")
	// ErrReplaced ends a session superseded by a newer one with the same peer.
	ErrReplaced = errors.New("ebt: session replaced by a newer one")
)

// Config configures a Replicator. Zero fields mean the defaults.
type Config struct {
	Self    feed.ID       // required: this node's feed
	Store   Store         // required
	Hops    int           // follow hops in scope: 1 = self and its follows, 2 adds theirs; 0 = DefaultHops
	Timeout time.Duration // stall timeout and tick period; 0 = DefaultTimeout
	Logger  *slog.Logger  // nil = discard
	// OnAppend, if set, is called on Run's goroutine after entries of
	// author received from a peer were appended; head is the new head. It
	// must not block for long.
	OnAppend func(author feed.ID, head feed.Head)
	// Metrics, if not nil, counts what replication does (metrics.go).
	Metrics *Metrics
	// Limits bounds what each peer may make the node do (limits.go).
	Limits Limits
}

// Progress counts entries over the feeds in scope, as ssb-ebt does: Start
// is what was held when Run started, Current what is held now, Target
// what is held or claimed by any peer. Current == Target means in sync.
type Progress struct {
	Start, Current, Target int64
}

// PeerStatus is the replication state of one session.
type PeerStatus struct {
	ID        feed.ID
	Acceptor  bool   // we accepted the circuit
	State     string // "handshake" (notes not yet exchanged) or "replicating"
	Feeds     int    // feeds shared with the peer
	Rx        int    // feeds the peer pushes to us (it is their source)
	Tx        int    // feeds we push to the peer
	Received  int64  // entries received, valid or not
	Sent      int64  // entries sent
	Invalid   int64  // invalid entries received
	Duplicate int64  // entries received that the node held already
}

// Replicator runs EBT replication for one node: Run owns the state, each
// Serve call runs one peer session and feeds it events.
type Replicator struct {
	cfg Config
	log *slog.Logger
	st  Store

	events  chan sessionEvent // sessions → Run
	kick    chan struct{}     // Appended/ScopeChanged → Run (capacity 1)
	queries chan func()       // InScope → Run
	done    chan struct{}     // closed when Run has returned
	started atomic.Bool

	// localMu guards local, feeds changed in the store without us, and
	// want, the wanted feeds not yet handed to the core (nil: unchanged).
	localMu sync.Mutex
	local   map[feed.ID]bool
	want    map[feed.ID]bool

	verify *verifier                        // checks received entries for the sessions
	sigs   *sigCache                        // entries known to be validly signed, for the writers
	guard  *limit.Guard[feed.ID]            // each peer's rates of notes and entries (limits.go)
	scope  atomic.Pointer[map[feed.ID]bool] // the core's scope as of the last event (limits.go)

	// mu guards the snapshots Run publishes for Progress, Peers and
	// OwnFeedBehind.
	mu       sync.Mutex
	progress Progress
	status   []PeerStatus
	ownBest  uint64 // core.ownClaim
	sessions map[feed.ID]*session

	// Owned by Run's goroutine.
	core *core
	live map[feed.ID]*session
	now  time.Time
}

// sessionEvent is an event from a session; Run drops events of sessions
// that are no longer live.
type sessionEvent struct {
	s  *session
	ev any // evConnect (with reply), evNotes, evEntries, evDisconnect
}

// New returns a Replicator. Nothing runs until Run.
func New(cfg Config) (*Replicator, error) {
	if cfg.Self.IsZero() {
		return nil, errors.New("ebt: Config.Self is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("ebt: Config.Store is required")
	}
	if cfg.Hops < 0 || cfg.Timeout < 0 {
		return nil, fmt.Errorf("ebt: negative Hops (%d) or Timeout (%v)", cfg.Hops, cfg.Timeout)
	}
	if cfg.Hops == 0 {
		cfg.Hops = DefaultHops
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Limits.fill()
	r := &Replicator{
		cfg:      cfg,
		log:      cfg.Logger,
		st:       cfg.Store,
		events:   make(chan sessionEvent, 16),
		kick:     make(chan struct{}, 1),
		queries:  make(chan func()),
		done:     make(chan struct{}),
		local:    map[feed.ID]bool{},
		sessions: map[feed.ID]*session{},
		live:     map[feed.ID]*session{},
		verify:   newVerifier(),
		sigs:     newSigCache(),
		guard:    newGuard(cfg.Limits),
	}
	r.core = newCore(cfg.Self, cfg.Hops, cfg.Timeout, cfg.Logger)
	r.core.m = cfg.Metrics
	r.core.abuse = cfg.Limits.Policy
	return r, nil
}

// Run owns replication state until ctx is done, then ends every session.
// It returns nil when ctx is done, or the error that stopped it.
func (r *Replicator) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("ebt: Run called twice")
	}
	defer close(r.done)
	defer func() {
		for _, s := range r.live {
			s.cancel(ErrClosed)
		}
	}()
	init, err := r.loadAll()
	if err != nil {
		return err
	}
	r.step(time.Now(), init)
	r.publish()
	t := time.NewTicker(tickPeriod(r.cfg.Timeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-r.events:
			r.onSession(m)
		case <-r.kick:
			r.onLocal(time.Now())
		case q := <-r.queries:
			r.onLocal(time.Now())
			q()
		case <-t.C:
			r.step(time.Now(), evTick{})
		}
		r.publish()
	}
}

// Appended tells the replicator that entries of author were appended
// without it (the node's own publishes). It never blocks.
func (r *Replicator) Appended(author feed.ID) { r.changed(author) }

// Reload tells the replicator that the store deleted or pruned entries of
// author without it (the node's storage bounds): it reads the feed's
// state again. It never blocks.
func (r *Replicator) Reload(author feed.ID) { r.changed(author) }

// InScope reports whether f is in the replication scope once every change
// told so far (ScopeChanged, Want, Appended) is applied, and if so whether
// only as a wanted feed (a context's author or key) rather than by the
// follows. It waits for Run.
func (r *Replicator) InScope(ctx context.Context, f feed.ID) (in, wanted bool, err error) {
	done := make(chan struct{})
	q := func() {
		in, wanted = r.core.scope[f], r.core.lazy[f]
		close(done)
	}
	select {
	case r.queries <- q:
	case <-r.done:
		return false, false, ErrClosed
	case <-ctx.Done():
		return false, false, context.Cause(ctx)
	}
	<-done
	return in, wanted, nil
}

// ScopeChanged tells the replicator that the node's own follows or blocks
// changed: the scope is recomputed and sessions with blocked peers end.
func (r *Replicator) ScopeChanged() { r.changed(r.cfg.Self) }

// Want sets the feeds replicated beyond the follows (the authors and keys
// of the node's contexts): they join the scope unless the node blocks
// them, and leave it when a later call no longer names them. It never
// blocks.
func (r *Replicator) Want(feeds []feed.ID) {
	w := make(map[feed.ID]bool, len(feeds))
	for _, f := range feeds {
		w[f] = true
	}
	r.localMu.Lock()
	r.want = w
	r.localMu.Unlock()
	r.poke()
}

func (r *Replicator) changed(author feed.ID) {
	r.localMu.Lock()
	r.local[author] = true
	r.localMu.Unlock()
	r.poke()
}

func (r *Replicator) poke() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Progress returns replication progress as of the last event Run handled.
func (r *Replicator) Progress() Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.progress
}

// Peers returns the state of each live session, ordered by peer ID.
func (r *Replicator) Peers() []PeerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.status)
	for i := range out {
		if s := r.sessions[out[i].ID]; s != nil {
			out[i].Sent = s.sent.Load()
		}
	}
	return out
}

// OwnFeedBehind returns the most of the node's own feed a connected peer
// claims to hold (and has not stalled on), and whether that is more than
// local, the seq the node holds. A node that lost its store gets its own
// feed back from peers; appending to it before then would fork it, so the
// node must not publish meanwhile. A peer that claims more than it sends
// delays publishing by at most a timeout per claim.
func (r *Replicator) OwnFeedBehind(local uint64) (best uint64, behind bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ownBest, r.ownBest > local
}

// publish copies the core's views for Progress, Peers and OwnFeedBehind.
func (r *Replicator) publish() {
	p, st := r.core.progress(), r.core.peerStatus()
	own := r.core.ownClaim()
	r.mu.Lock()
	r.progress, r.status, r.ownBest = p, st, own
	r.mu.Unlock()
	r.publishScope()
}

// loadAll reads what the core starts from: every stored feed's head and
// contacts, and the fork proofs.
func (r *Replicator) loadAll() (evInit, error) {
	heads, err := r.st.Heads()
	if err != nil {
		return evInit{}, fmt.Errorf("ebt: load heads: %w", err)
	}
	ev := evInit{feeds: make(map[feed.ID]feedSnapshot, len(heads)+1)}
	if _, ok := heads[r.cfg.Self]; !ok {
		heads[r.cfg.Self] = feed.Head{} // our follows make the scope, entries or not
	}
	for id, h := range heads {
		cs, err := r.st.Contacts(id)
		if err != nil {
			return evInit{}, fmt.Errorf("ebt: load contacts of %s: %w", id, err)
		}
		tail, err := r.st.Tail(id)
		if err != nil {
			return evInit{}, fmt.Errorf("ebt: load tail of %s: %w", id, err)
		}
		ev.feeds[id] = feedSnapshot{head: h, contacts: cs, tail: tail}
	}
	proofs, err := r.st.ForkProofs()
	if err != nil {
		return evInit{}, fmt.Errorf("ebt: load fork proofs: %w", err)
	}
	for _, p := range proofs {
		s := ev.feeds[p.Author()]
		s.frozen = true
		ev.feeds[p.Author()] = s
	}
	return ev, nil
}

// snapshot reads one feed's stored state; errors leave parts zero.
func (r *Replicator) snapshot(author feed.ID) feedSnapshot {
	var s feedSnapshot
	var err error
	if s.head, err = r.st.Head(author); err != nil {
		r.log.Warn("ebt: read head", "feed", author, "err", err)
	}
	if s.contacts, err = r.st.Contacts(author); err != nil {
		r.log.Warn("ebt: read contacts", "feed", author, "err", err)
	}
	if s.tail, err = r.st.Tail(author); err != nil {
		r.log.Warn("ebt: read tail", "feed", author, "err", err)
	}
	p, err := r.st.ForkProof(author)
	s.frozen = err == nil && p != nil
	return s
}

// step hands one event to the core and carries out its actions.
func (r *Replicator) step(now time.Time, ev any) {
	r.now = now
	r.apply(r.core.handle(now, ev))
}

// apply carries out actions in order. Appends and fork checks are answered
// at once, so the core sees their results before any other event.
func (r *Replicator) apply(acts []any) {
	for _, a := range acts {
		switch a := a.(type) {
		case actNotes:
			if s := r.live[a.peer]; s != nil {
				s.out.addNotes(a.notes)
			}
		case actSend:
			if s := r.live[a.peer]; s != nil {
				s.out.queue(a.author, a.from, a.to)
			}
		case actCancel:
			if s := r.live[a.peer]; s != nil {
				s.out.cancel(a.author)
			}
		case actClose:
			if s := r.live[a.peer]; s != nil {
				s.cancel(a.err)
			}
		case actSaveClock:
			if err := r.st.SetPeerClock(a.peer, a.clock); err != nil {
				r.log.Warn("ebt: save peer clock", "peer", a.peer, "err", err)
			}
		case actAppend:
			author := a.entries[0].Author
			// The IDs come from verification (verify.go): Append needs
			// not hash the entries again on Run's goroutine.
			ev := evAppended{act: a, err: r.st.AppendIDs(a.entries, a.ids)}
			if k, ok := quotaFit(ev.err); ok && k > 0 {
				// Keep what fits the quota; the core learns the new
				// head from the snapshot below.
				if err := r.st.AppendIDs(a.entries[:k], a.ids[:k]); err == nil {
					r.cfg.Metrics.add(cAppended, k)
					if r.cfg.OnAppend != nil {
						r.cfg.OnAppend(author, feed.Head{Seq: a.entries[k-1].Seq, ID: a.ids[k-1]})
					}
				}
			}
			if ev.err != nil {
				ev.state = r.snapshot(author)
			} else {
				r.cfg.Metrics.add(cAppended, len(a.entries))
				r.sigs.add(author, a.head)
				if r.cfg.OnAppend != nil {
					r.cfg.OnAppend(author, a.head)
				}
			}
			r.apply(r.core.handle(r.now, ev))
		case actCheckFork:
			r.apply(r.core.handle(r.now, evForkChecked{act: a, result: r.checkFork(a)}))
		default:
			panic(fmt.Sprintf("ebt: unknown action %T", a))
		}
	}
}

// checkFork compares a received entry with the stored one at its seq and
// stores a fork proof if they differ and both verify.
func (r *Replicator) checkFork(a actCheckFork) forkResult {
	e := a.entry
	stored, err := r.st.Get(e.Author, e.Seq)
	if pruned(err) {
		return forkDuplicate // nothing to compare it with any more
	}
	if err != nil {
		r.log.Warn("ebt: read entry for fork check", "feed", e.Author, "seq", e.Seq, "err", err)
		return forkDuplicate
	}
	if stored.ID() == e.ID() {
		return forkDuplicate
	}
	proof, err := feed.NewForkProof(stored, e)
	if err != nil {
		return forkInvalid
	}
	if err := r.st.AddForkProof(proof); err != nil {
		r.log.Error("ebt: store fork proof", "feed", e.Author, "seq", e.Seq, "err", err)
	}
	return forkProven
}

// onSession handles an event from a session.
func (r *Replicator) onSession(m sessionEvent) {
	s := m.s
	switch ev := m.ev.(type) {
	case evConnect:
		s.reply <- r.connect(time.Now(), s)
	case evDisconnect:
		if r.live[s.peer] == s {
			r.dropSession(time.Now(), s)
		}
	default:
		if r.live[s.peer] == s {
			r.step(time.Now(), ev)
		}
	}
}

// connect starts session s in the core, replacing a live session with the
// same peer, and returns the core's refusal (ErrBlocked) if any. The
// peer's stored clock goes with the event, for request skipping.
func (r *Replicator) connect(now time.Time, s *session) error {
	if old := r.live[s.peer]; old != nil {
		old.cancel(ErrReplaced)
		r.dropSession(now, old)
	}
	ev := evConnect{peer: s.peer, acceptor: s.acceptor, clock: r.peerClock(s.peer)}
	r.now = now
	acts := r.core.handle(now, ev)
	for _, a := range acts {
		if c, ok := a.(actClose); ok && c.peer == s.peer {
			return c.err
		}
	}
	r.live[s.peer] = s
	r.cfg.Metrics.session(+1)
	r.mu.Lock()
	r.sessions[s.peer] = s
	r.mu.Unlock()
	r.apply(acts)
	return nil
}

// peerClock reads peer's stored clock; nil if there is none or it cannot
// be read (then every feed is announced).
func (r *Replicator) peerClock(peer feed.ID) map[feed.ID]Note {
	stored, err := r.st.PeerClock(peer)
	if err != nil {
		r.log.Warn("ebt: read peer clock", "peer", peer, "err", err)
		return nil
	}
	if len(stored) == 0 {
		return nil
	}
	clock := make(map[feed.ID]Note, len(stored))
	for f, v := range stored {
		if v >= int64(DontReplicate) {
			clock[f] = Note(v)
		}
	}
	return clock
}

// dropSession forgets a live session and tells the core.
func (r *Replicator) dropSession(now time.Time, s *session) {
	delete(r.live, s.peer)
	r.cfg.Metrics.session(-1)
	r.mu.Lock()
	if r.sessions[s.peer] == s {
		delete(r.sessions, s.peer)
	}
	r.mu.Unlock()
	r.step(now, evDisconnect{peer: s.peer})
}

// onLocal reloads the feeds Appended and ScopeChanged named.
func (r *Replicator) onLocal(now time.Time) {
	r.localMu.Lock()
	ids := slices.SortedFunc(maps.Keys(r.local), feed.ID.Compare)
	clear(r.local)
	want := r.want
	r.want = nil
	r.localMu.Unlock()
	if want != nil {
		r.step(now, evWant{feeds: want})
	}
	for _, id := range ids {
		r.step(now, evLocal{author: id, state: r.snapshot(id)})
	}
}

// send delivers a session event to Run.
func (r *Replicator) send(ctx context.Context, m sessionEvent) error {
	select {
	case r.events <- m:
		return nil
	case <-r.done:
		return ErrClosed
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
