package contexts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// Node is what a Manager needs of the node it runs in. Its methods must be
// safe for concurrent use.
type Node interface {
	// Head returns how far the node holds author's feed.
	Head(author feed.ID) (feed.Head, error)
	// Relation returns what author's latest contact entry says of target
	// (a context bans an author with a block in the context's own feed).
	Relation(author, target feed.ID) (feed.Relation, error)
	// Members returns the authors of ctx's messages the node holds, with
	// the highest seq of each.
	Members(ctx feed.ID) ([]Member, error)
	// Append stores e, an entry whose signature was verified and which
	// extends its author's feed, and tells replication and subscribers.
	Append(e *feed.Entry) error
	// Want sets the feeds replicated beyond the follows.
	Want(feeds []feed.ID)
}

// Member is an author of a context and the highest seq of its messages
// that a node holds.
type Member = member

// Defaults of Config.
const (
	// DefaultMaxHeld bounds the gossiped entries held until the gap before
	// them is filled, over all authors.
	DefaultMaxHeld = 1024
	// maxAhead: an entry further than this ahead of its feed's head is not
	// held (EBT brings it in order).
	maxAhead = 256
	// subBuffer is the gossip subscription's buffer, in messages.
	subBuffer = 1024
	// datagramBuffer is each local datagram reader's buffer.
	datagramBuffer = 64
)

// Config configures a Manager. Zero fields mean the defaults.
type Config struct {
	Key  feed.PrivateKey // required: the node's key; signs datagrams
	Host host.Host       // required: gossip runs over its connections
	Node Node            // required
	// MaxHeld bounds the entries held ahead of a gap; DefaultMaxHeld if 0.
	MaxHeld int
	// Gossip are extra go-libp2p-pubsub options of every router, after
	// GossipOptions.
	Gossip []pubsub.Option
	// Limits bounds the gossip each peer may make the node check
	// (limits.go).
	Limits Limits
	// Drop, if not nil, is called with a peer past its strikes (an error
	// wrapping ErrAbuse says why): the node drops it. It must not block.
	Drop func(peer feed.ID, reason error)
	// Now is the clock datagrams are stamped and judged by; time.Now if nil.
	Now    func() time.Time
	Logger *slog.Logger
	// Metrics, if not nil, counts gossip and filled gaps (metrics.go).
	Metrics *Metrics
}

// Errors callers branch on.
var (
	// ErrNotJoined reports a publish or send to a context not joined.
	ErrNotJoined = errors.New("contexts: context not joined")
	// ErrClosed reports a call on a closed Manager.
	ErrClosed = errors.New("contexts: closed")
)

// Stats counts gossip traffic since the Manager started.
type Stats struct {
	Received   int64 // gossip messages that passed validation (first copies)
	Duplicates int64 // copies of messages already seen, dropped by the gossip layer
	Rejected   int64 // messages that failed validation or were ignored
	Held       int64 // entries held now, waiting for a gap to fill
	Filled     int64 // held entries appended once their gap was filled
}

// Manager runs the contexts a node has joined: their gossip topics (the
// fast path) and the held entries that wait for a gap. It is safe for
// concurrent use.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	self   peer.ID                    // the host's, to tell our own gossip from others'
	selfID feed.ID                    // the node's key, whose blocks gossip honours
	ps     [numFanouts]*pubsub.PubSub // a gossip router per fanout

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // room readers and the drainer

	nonce    atomic.Uint64
	received atomic.Int64
	dups     atomic.Int64
	rejected atomic.Int64
	filled   atomic.Int64
	kick     chan struct{}         // wakes the drainer (capacity 1)
	guard    *limit.Guard[peer.ID] // each relaying peer's gossip rate and strikes (limits.go)
	learned  chan struct{}         // a context was joined or an author learned (capacity 1)

	mu      sync.Mutex // guards everything below
	closed  bool
	rooms   map[feed.ID]*room
	held    map[feed.ID]map[uint64]*feed.Entry // author → seq → entry gossiped ahead of a gap
	nheld   int
	pending map[feed.ID]bool                       // authors whose held entries may now fit
	dgrams  map[feed.ID]map[chan Datagram]struct{} // local datagram readers per context
	authors map[feed.ID]map[feed.ID]bool           // known authors per joined context

	// Gossiped entries are appended on lanes: each author's in order on
	// one lane, different lanes at once, so that the store can commit
	// appends of many authors together.
	lanes  [numLanes]chan *feed.Entry
	laneMu [numLanes]sync.Mutex // serialises the appends of a lane's authors; taken before mu
}

// numLanes is the number of gossip append lanes; laneQueue bounds each.
const (
	numLanes  = 16
	laneQueue = 256
)

// laneOf returns the lane of author's entries.
func laneOf(author feed.ID) int { return int(author[0]) % numLanes }

// room is one joined context.
type room struct {
	id     feed.ID
	fanout Fanout
	ps     *pubsub.PubSub // the router of fanout
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	ctx    context.Context // done when the room closes
	stop   context.CancelFunc
}

// New starts the gossip layer on cfg.Host. Close stops it.
func New(cfg Config) (*Manager, error) {
	if cfg.Key.IsZero() || cfg.Host == nil || cfg.Node == nil {
		return nil, errors.New("contexts: Config.Key, Host and Node are required")
	}
	m := newManager(cfg)
	m.self, m.selfID = cfg.Host.ID(), cfg.Key.Public()
	for f := range numFanouts {
		opts := append(GossipOptions(f), pubsub.WithRawTracer(tracer{m}))
		opts = append(opts, cfg.Gossip...)
		ps, err := pubsub.NewGossipSub(m.ctx, cfg.Host, opts...)
		if err != nil {
			m.cancel()
			m.wg.Wait()
			return nil, fmt.Errorf("contexts: start gossipsub (%s): %w", f, err)
		}
		m.ps[f] = ps
	}
	return m, nil
}

// newManager returns a Manager with cfg's defaults filled in and its
// drainer and append lanes running, but no gossip yet.
func newManager(cfg Config) *Manager {
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = DefaultMaxHeld
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		guard:   newGuard(cfg.Limits),
		cfg:     cfg,
		log:     cfg.Logger,
		kick:    make(chan struct{}, 1),
		learned: make(chan struct{}, 1),
		rooms:   map[feed.ID]*room{},
		held:    map[feed.ID]map[uint64]*feed.Entry{},
		pending: map[feed.ID]bool{},
		dgrams:  map[feed.ID]map[chan Datagram]struct{}{},
		authors: map[feed.ID]map[feed.ID]bool{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Go(m.drainer)
	for i := range m.lanes {
		m.lanes[i] = make(chan *feed.Entry, laneQueue)
		m.wg.Go(func() {
			for {
				select {
				case <-m.ctx.Done():
					return
				case e := <-m.lanes[i]:
					m.receive(e)
				}
			}
		})
	}
	return m
}

// Close leaves every context and stops the gossip layer.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	rooms := slices.Collect(maps.Values(m.rooms))
	m.rooms = map[feed.ID]*room{}
	m.mu.Unlock()
	for _, r := range rooms {
		m.closeRoom(r)
	}
	m.cancel()
	m.wg.Wait()
	return nil
}

// Topic returns the gossip topic of context id.
func Topic(id feed.ID) string { return TopicPrefix + id.String() }

// Join subscribes to id's gossip on the router of fanout f and puts its
// key and known authors in the replication scope. Joining again with the
// same fanout is a no-op; with the other one it moves the context (Move).
func (m *Manager) Join(id feed.ID, f Fanout) error { return m.joinOrMove(id, f, false) }

// Move moves joined context id to the router of fanout f (what gossip
// misses meanwhile, EBT brings). A context not joined stays so.
func (m *Manager) Move(id feed.ID, f Fanout) error { return m.joinOrMove(id, f, true) }

func (m *Manager) joinOrMove(id feed.ID, f Fanout, move bool) error {
	if f >= numFanouts {
		return fmt.Errorf("contexts: join %s: unknown fanout %d", id.Short(), f)
	}
	old, err := m.join(id, f, move)
	if old != nil {
		m.log.Info("contexts: gossip moved to another mesh", "context", id, "fanout", f)
		m.closeRoom(old)
	}
	return err
}

// join is joinOrMove under m.mu; it returns the room a move replaced, for
// the caller to close.
func (m *Manager) join(id feed.ID, f Fanout, move bool) (*room, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	old := m.rooms[id]
	if old != nil && old.fanout == f || old == nil && move {
		return nil, nil
	}
	r, err := m.openRoom(id, f)
	if err != nil {
		return nil, err
	}
	m.rooms[id] = r
	m.wg.Go(func() { m.read(r) })
	if old != nil {
		return old, nil
	}
	known := map[feed.ID]bool{id: true}
	if ms, err := m.cfg.Node.Members(id); err == nil {
		for _, x := range ms {
			known[x.Author] = true
		}
	} else {
		m.log.Warn("contexts: read members", "context", id, "err", err)
	}
	m.authors[id] = known
	m.wantLocked()
	m.signalLearned()
	return nil, nil
}

// openRoom subscribes to id's topic on the router of fanout f.
func (m *Manager) openRoom(id feed.ID, f Fanout) (*room, error) {
	ps, name := m.ps[f], Topic(id)
	if err := ps.RegisterTopicValidator(name, m.guarded(m.validator(id)), pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("contexts: join %s: %w", id.Short(), err)
	}
	t, err := ps.Join(name)
	if err != nil {
		ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("contexts: join %s: %w", id.Short(), err)
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(subBuffer))
	if err != nil {
		t.Close()
		ps.UnregisterTopicValidator(name)
		return nil, fmt.Errorf("contexts: subscribe %s: %w", id.Short(), err)
	}
	ctx, stop := context.WithCancel(m.ctx)
	return &room{id: id, fanout: f, ps: ps, topic: t, sub: sub, ctx: ctx, stop: stop}, nil
}

// Fanout returns the fanout context id is joined with; ok is false if it
// is not joined.
func (m *Manager) Fanout(id feed.ID) (f Fanout, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.rooms[id]; r != nil {
		return r.fanout, true
	}
	return Lean, false
}

// Leave unsubscribes from id; its authors leave the replication scope
// unless another context or a follow keeps them.
func (m *Manager) Leave(id feed.ID) {
	m.mu.Lock()
	r := m.rooms[id]
	delete(m.rooms, id)
	delete(m.authors, id)
	if r != nil {
		m.wantLocked()
	}
	m.mu.Unlock()
	if r != nil {
		m.closeRoom(r)
	}
}

func (m *Manager) closeRoom(r *room) {
	r.stop()
	r.sub.Cancel()
	if err := r.topic.Close(); err != nil {
		m.log.Debug("contexts: close topic", "context", r.id, "err", err)
	}
	r.ps.UnregisterTopicValidator(r.topic.String())
}

// Joined reports whether id is joined.
func (m *Manager) Joined(id feed.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rooms[id] != nil
}

// Rooms returns the joined contexts, ordered by ID.
func (m *Manager) Rooms() []feed.ID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.SortedFunc(maps.Keys(m.rooms), feed.ID.Compare)
}

// MaxAuthors bounds the authors a Manager knows (and so replicates) per
// context, whoever tells it of them.
const MaxAuthors = MaxAnswerMembers

// Learn records authors of a joined context (from a peer's members answer
// or a gossiped message), so that their feeds are replicated; at most
// MaxAuthors per context.
func (m *Manager) Learn(id feed.ID, authors []feed.ID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	known := m.authors[id]
	if known == nil {
		return
	}
	added := false
	for _, a := range authors {
		if !known[a] && len(known) < MaxAuthors {
			known[a] = true
			added = true
		}
	}
	if added {
		m.wantLocked()
		m.signalLearned()
	}
}

// Learned signals (coalesced) that a context was joined or an author of a
// joined context learned: a members exchange would tell peers something
// new.
func (m *Manager) Learned() <-chan struct{} { return m.learned }

func (m *Manager) signalLearned() {
	select {
	case m.learned <- struct{}{}:
	default:
	}
}

// wantLocked hands the union of the joined contexts' keys and authors to
// replication. m.mu must be held.
func (m *Manager) wantLocked() {
	set := map[feed.ID]bool{}
	for _, known := range m.authors {
		maps.Copy(set, known)
	}
	m.cfg.Node.Want(slices.SortedFunc(maps.Keys(set), feed.ID.Compare))
}

// Publish gossips e, a ctx entry the node stored, to its context.
func (m *Manager) Publish(ctx context.Context, id feed.ID, e *feed.Entry) error {
	return m.publish(ctx, id, encodeEntry(e))
}

// Send signs a datagram with body and gossips it to id's members.
func (m *Manager) Send(ctx context.Context, id feed.ID, body []byte) error {
	d, err := signDatagram(m.cfg.Key, id, body, m.cfg.Now(), m.nonce.Add(1)^rand.Uint64())
	if err != nil {
		return err
	}
	return m.publish(ctx, id, d.encode())
}

func (m *Manager) publish(ctx context.Context, id feed.ID, msg []byte) error {
	m.mu.Lock()
	r := m.rooms[id]
	m.mu.Unlock()
	if r == nil {
		return fmt.Errorf("%w: %s", ErrNotJoined, id)
	}
	if err := r.topic.Publish(ctx, msg); err != nil {
		return fmt.Errorf("contexts: gossip to %s: %w", id.Short(), err)
	}
	return nil
}

// Datagrams returns a channel of the datagrams other nodes send to id from
// now on, until stop is called. A reader that falls more than its buffer
// behind loses datagrams.
func (m *Manager) Datagrams(id feed.ID) (<-chan Datagram, func()) {
	ch := make(chan Datagram, datagramBuffer)
	m.mu.Lock()
	if m.dgrams[id] == nil {
		m.dgrams[id] = map[chan Datagram]struct{}{}
	}
	m.dgrams[id][ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.dgrams[id], ch)
		if len(m.dgrams[id]) == 0 {
			delete(m.dgrams, id)
		}
	}
}

// Stats returns the gossip counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	held := m.nheld
	m.mu.Unlock()
	return Stats{
		Received: m.received.Load(), Duplicates: m.dups.Load(), Rejected: m.rejected.Load(),
		Held: int64(held), Filled: m.filled.Load(),
	}
}

// validator checks a message of context id before gossip delivers or
// relays it: it parses, belongs to id, is signed by its author, and its
// author is neither blocked by this node nor banned by the context.
// Malformed or badly signed messages are rejected (the relaying peer is
// penalised); blocked and banned authors and stale datagrams are ignored.
func (m *Manager) validator(id feed.ID) pubsub.ValidatorEx {
	return func(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		g, err := decodeGossip(msg.Data)
		if err != nil {
			m.log.Debug("contexts: bad gossip", "context", id, "from", from, "err", err)
			return pubsub.ValidationReject
		}
		if from == m.self {
			// Our own publish: the node signed it a moment ago, and a
			// check here would only delay its first hop.
			msg.ValidatorData = g
			return pubsub.ValidationAccept
		}
		var author feed.ID
		switch {
		case g.entry != nil:
			if g.ctx.Context != id {
				return pubsub.ValidationReject
			}
			author = g.entry.Author
			if g.entry.VerifySignature() != nil {
				m.log.Debug("contexts: bad signature", "context", id, "from", from, "author", author)
				return pubsub.ValidationReject
			}
		default:
			d := g.dgram
			if d.Context != id || !d.verify() {
				return pubsub.ValidationReject
			}
			author = d.Author
			if age := m.cfg.Now().Sub(time.UnixMilli(d.Timestamp)); age > DatagramWindow || age < -DatagramWindow {
				return pubsub.ValidationIgnore
			}
		}
		if !m.allowed(id, author) {
			return pubsub.ValidationIgnore
		}
		msg.ValidatorData = g
		return pubsub.ValidationAccept
	}
}

// allowed reports whether author's messages in context id are delivered
// and relayed: this node does not block the author and the context does
// not ban it.
func (m *Manager) allowed(id, author feed.ID) bool {
	for _, by := range []feed.ID{m.selfID, id} {
		if rel, err := m.cfg.Node.Relation(by, author); err != nil || rel == feed.RelBlock {
			return false
		}
	}
	return true
}

// read takes r's validated gossip until r closes.
func (m *Manager) read(r *room) {
	ctx := r.ctx
	for {
		msg, err := r.sub.Next(ctx)
		if err != nil {
			return
		}
		g, ok := msg.ValidatorData.(message)
		if !ok {
			continue
		}
		if g.entry != nil {
			m.Learn(r.id, []feed.ID{g.entry.Author})
			select {
			case m.lanes[laneOf(g.entry.Author)] <- g.entry:
			case <-ctx.Done():
				return
			}
			continue
		}
		if msg.ReceivedFrom == m.self {
			continue // our own datagram
		}
		m.deliverDatagram(r.id, *g.dgram)
	}
}

func (m *Manager) deliverDatagram(id feed.ID, d Datagram) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.dgrams[id] {
		select {
		case ch <- d:
		default:
		}
	}
}

// receive stores a gossiped entry if it extends its feed, else holds it
// (bounded) until replication fills the gap before it.
func (m *Manager) receive(e *feed.Entry) {
	mu := &m.laneMu[laneOf(e.Author)]
	mu.Lock()
	defer mu.Unlock()
	head, err := m.cfg.Node.Head(e.Author)
	if err != nil {
		m.log.Warn("contexts: read head", "author", e.Author, "err", err)
		return
	}
	switch {
	case e.Seq <= head.Seq:
		return // held already (came by replication or earlier gossip)
	case e.Seq == head.Seq+1:
		if e.Prev != head.ID {
			m.log.Info("contexts: gossiped entry does not link to the head (fork?)", "author", e.Author, "seq", e.Seq)
			return
		}
		if err := m.cfg.Node.Append(e); err != nil {
			m.log.Debug("contexts: append gossiped entry", "author", e.Author, "seq", e.Seq, "err", err)
			return
		}
		m.drainLocked(e.Author)
	case e.Seq > head.Seq+maxAhead:
		return
	default:
		m.hold(e)
	}
}

// hold keeps e until its gap fills, within MaxHeld.
func (m *Manager) hold(e *feed.Entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	byseq := m.held[e.Author]
	if byseq[e.Seq] != nil || m.nheld >= m.cfg.MaxHeld {
		return
	}
	if byseq == nil {
		byseq = map[uint64]*feed.Entry{}
		m.held[e.Author] = byseq
	}
	byseq[e.Seq] = e
	m.nheld++
}

// Appended tells the Manager that entries of author were stored by another
// path (replication): held entries of it may now fit. It never blocks.
func (m *Manager) Appended(author feed.ID) {
	m.mu.Lock()
	if len(m.held[author]) > 0 {
		m.pending[author] = true
	}
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// drainer appends held entries whose gap replication filled.
func (m *Manager) drainer() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
		}
		m.mu.Lock()
		authors := slices.Collect(maps.Keys(m.pending))
		clear(m.pending)
		m.mu.Unlock()
		for _, a := range authors {
			mu := &m.laneMu[laneOf(a)]
			mu.Lock()
			m.drainLocked(a)
			mu.Unlock()
		}
	}
}

// drainLocked appends author's held entries that now extend its feed and
// drops those at or below its head. author's lane mutex must be held.
func (m *Manager) drainLocked(author feed.ID) {
	for {
		head, err := m.cfg.Node.Head(author)
		if err != nil {
			return
		}
		m.mu.Lock()
		byseq := m.held[author]
		for seq := range byseq {
			if seq <= head.Seq {
				delete(byseq, seq)
				m.nheld--
			}
		}
		next := byseq[head.Seq+1]
		if next != nil {
			delete(byseq, head.Seq+1)
			m.nheld--
		}
		if len(byseq) == 0 {
			delete(m.held, author)
		}
		m.mu.Unlock()
		if next == nil || next.Prev != head.ID {
			return
		}
		if err := m.cfg.Node.Append(next); err != nil {
			m.log.Debug("contexts: append held entry", "author", author, "seq", next.Seq, "err", err)
			return
		}
		m.filled.Add(1)
		m.cfg.Metrics.gapFilled()
	}
}

// tracer counts gossip deliveries and duplicates.
type tracer struct{ m *Manager }

func (t tracer) OnNewOutboundStream(peer.ID, protocol.ID) {}
func (t tracer) OnClosedOutboundStream(peer.ID)           {}
func (t tracer) Join(string)                              {}
func (t tracer) Leave(string)                             {}
func (t tracer) Graft(peer.ID, string)                    {}
func (t tracer) Prune(peer.ID, string)                    {}
func (t tracer) ValidateMessage(*pubsub.Message)          {}
func (t tracer) DeliverMessage(msg *pubsub.Message)       { t.count(msg, &t.m.received, gossipReceived) }
func (t tracer) RejectMessage(msg *pubsub.Message, _ string) {
	t.count(msg, &t.m.rejected, gossipRejected)
}
func (t tracer) DuplicateMessage(msg *pubsub.Message) { t.count(msg, &t.m.dups, gossipDuplicate) }
func (t tracer) ThrottlePeer(peer.ID)                 {}
func (t tracer) RecvRPC(*pubsub.RPC)                  {}
func (t tracer) SendRPC(*pubsub.RPC, peer.ID)         {}
func (t tracer) DropRPC(*pubsub.RPC, peer.ID)         {}
func (t tracer) UndeliverableMessage(*pubsub.Message) {}

// count counts messages of context topics received from other nodes.
func (t tracer) count(msg *pubsub.Message, n *atomic.Int64, k gossipKind) {
	if msg.ReceivedFrom != t.m.self && strings.HasPrefix(msg.GetTopic(), TopicPrefix) {
		n.Add(1)
		t.m.cfg.Metrics.gossiped(k)
	}
}
