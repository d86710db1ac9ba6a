package store

import (
	"bytes"
	"maps"
	"slices"
	"sync"

	"github.com/contextd/contextd/feed"
)

// Mem is an in-memory Store for tests and simulations. It keeps copies of
// everything it is given and hands out copies, so callers cannot corrupt it.
// It is safe for concurrent use.
type Mem struct {
	// mu guards every field below. Append and AddForkProof hold it for
	// writing across their check and their write, which is what makes them
	// atomic and makes concurrent appends over one head exclusive.
	mu       sync.RWMutex
	closed   bool
	feeds    map[feed.ID]*memFeed
	contacts map[feed.ID]map[feed.ID]feed.Relation // author → target → non-none relation
	clocks   map[feed.ID]map[feed.ID]int64         // peer → feed → note
	forks    map[feed.ID]*feed.ForkProof
	ctxs     map[feed.ID]*memCtx // context index (mem_ctx.go)
	joined   map[feed.ID]bool
	quotas   Quotas // mem_bounds.go

	objs memObjects // object storage (mem_objects.go), with its own lock
}

// memFeed is one author's entries; entries[i] has seq base+i+1.
type memFeed struct {
	entries []*feed.Entry
	head    feed.Head
	base    uint64 // entries pruned (Prune)
	bytes   int64  // bytes of the entries' encodings
}

var _ Store = (*Mem)(nil)

// NewMem returns an empty in-memory store.
func NewMem() *Mem {
	return &Mem{
		feeds:    make(map[feed.ID]*memFeed),
		contacts: make(map[feed.ID]map[feed.ID]feed.Relation),
		clocks:   make(map[feed.ID]map[feed.ID]int64),
		forks:    make(map[feed.ID]*feed.ForkProof),
		ctxs:     make(map[feed.ID]*memCtx),
		joined:   make(map[feed.ID]bool),
	}
}

// Append implements Store.
func (m *Mem) Append(entries []*feed.Entry) error { return m.AppendIDs(entries, nil) }

// AppendIDs implements Store; nil ids are computed.
func (m *Mem) AppendIDs(entries []*feed.Entry, ids []feed.Hash) error {
	if err := m.usable(); err != nil {
		return err
	}
	b, err := newBatch(entries, ids)
	if err != nil || b == nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.forks[b.author]; ok {
		return ErrForked
	}
	f := m.feeds[b.author]
	var head feed.Head
	if f != nil {
		head = f.head
	}
	if err := b.extends(head); err != nil {
		return err
	}
	var held int64
	if f != nil {
		held = f.bytes
	}
	if err := b.checkQuotas(&m.quotas, held, m.ctxOthersLocked); err != nil {
		return err
	}
	if f == nil {
		f = &memFeed{}
		m.feeds[b.author] = f
	}
	if b.leases {
		m.objs.mu.Lock()
		defer m.objs.mu.Unlock()
	}
	for i := range b.recs {
		r := &b.recs[i]
		f.entries = append(f.entries, cloneEntry(r.e))
		if r.contact != nil {
			m.setRelationLocked(b.author, *r.contact)
		}
		if l := r.lease; l != nil {
			m.objs.index.setLease(l.id.KeyString(), b.author, l.until)
		}
	}
	if b.ctxs {
		m.indexCtxLocked(b)
	}
	f.head = b.head()
	f.bytes += b.bytes()
	return nil
}

// setRelationLocked records one contact; m.mu must be held for writing.
func (m *Mem) setRelationLocked(author feed.ID, c feed.Contact) {
	rels := m.contacts[author]
	if c.Rel == feed.RelNone {
		delete(rels, c.Target)
		return
	}
	if rels == nil {
		rels = make(map[feed.ID]feed.Relation)
		m.contacts[author] = rels
	}
	rels[c.Target] = c.Rel
}

// usable returns ErrClosed once the store is closed.
func (m *Mem) usable() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Head implements Store.
func (m *Mem) Head(author feed.ID) (feed.Head, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return feed.Head{}, ErrClosed
	}
	if f := m.feeds[author]; f != nil {
		return f.head, nil
	}
	return feed.Head{}, nil
}

// Heads implements Store.
func (m *Mem) Heads() (map[feed.ID]feed.Head, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	heads := make(map[feed.ID]feed.Head, len(m.feeds))
	for id, f := range m.feeds {
		heads[id] = f.head
	}
	return heads, nil
}

// Get implements Store.
func (m *Mem) Get(author feed.ID, seq uint64) (*feed.Entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	f := m.feeds[author]
	if f == nil || seq == 0 || seq > f.head.Seq {
		return nil, ErrNotFound
	}
	if seq <= f.base {
		return nil, &PrunedError{Author: author, Seq: seq, Tail: f.base + 1}
	}
	return cloneEntry(f.entries[seq-f.base-1]), nil
}

// Range implements Store.
func (m *Mem) Range(author feed.ID, from uint64, limit int) ([]*feed.Entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	src, err := m.spanLocked(author, from, limit)
	if err != nil || len(src) == 0 {
		return nil, err
	}
	out := make([]*feed.Entry, len(src))
	for i, e := range src {
		out[i] = cloneEntry(e)
	}
	return out, nil
}

// RangeEncoded implements Store.
func (m *Mem) RangeEncoded(author feed.ID, from uint64, limit, maxBytes int) ([][]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	src, err := m.spanLocked(author, from, limit)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	size := 0
	for _, e := range src {
		b := e.Encode()
		if len(out) > 0 && size+len(b) > maxBytes {
			break
		}
		out = append(out, b)
		size += len(b)
	}
	return out, nil
}

// spanLocked returns author's stored entries with seq >= from (0 reads
// from 1), at most limit of them, not copied, or a *PrunedError if from
// is below the feed's tail. m.mu must be held.
func (m *Mem) spanLocked(author feed.ID, from uint64, limit int) ([]*feed.Entry, error) {
	if m.closed {
		return nil, ErrClosed
	}
	f := m.feeds[author]
	from = max(from, 1)
	if f == nil || limit <= 0 || from > f.head.Seq {
		return nil, nil
	}
	if from <= f.base {
		return nil, &PrunedError{Author: author, Seq: from, Tail: f.base + 1}
	}
	src := f.entries[from-f.base-1:]
	return src[:min(len(src), limit)], nil
}

// Relation implements Store.
func (m *Mem) Relation(author, target feed.ID) (feed.Relation, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return feed.RelNone, ErrClosed
	}
	return m.contacts[author][target], nil
}

// Contacts implements Store.
func (m *Mem) Contacts(author feed.ID) (map[feed.ID]feed.Relation, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := maps.Clone(m.contacts[author])
	if out == nil {
		out = make(map[feed.ID]feed.Relation)
	}
	return out, nil
}

// PeerClock implements Store.
func (m *Mem) PeerClock(peer feed.ID) (map[feed.ID]int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := maps.Clone(m.clocks[peer])
	if out == nil {
		out = make(map[feed.ID]int64)
	}
	return out, nil
}

// SetPeerClock implements Store.
func (m *Mem) SetPeerClock(peer feed.ID, notes map[feed.ID]int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if len(notes) == 0 {
		return nil
	}
	clock := m.clocks[peer]
	if clock == nil {
		clock = make(map[feed.ID]int64, len(notes))
		m.clocks[peer] = clock
	}
	maps.Copy(clock, notes)
	return nil
}

// AddForkProof implements Store.
func (m *Mem) AddForkProof(p *feed.ForkProof) error {
	if err := m.usable(); err != nil {
		return err
	}
	if err := verifyProof(p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if _, ok := m.forks[p.Author()]; !ok {
		m.forks[p.Author()] = cloneProof(p)
	}
	return nil
}

// ForkProof implements Store.
func (m *Mem) ForkProof(author feed.ID) (*feed.ForkProof, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	p, ok := m.forks[author]
	if !ok {
		return nil, ErrNotFound
	}
	return cloneProof(p), nil
}

// ForkProofs implements Store.
func (m *Mem) ForkProofs() ([]*feed.ForkProof, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	authors := slices.SortedFunc(maps.Keys(m.forks), func(a, b feed.ID) int {
		return bytes.Compare(a[:], b[:])
	})
	var out []*feed.ForkProof
	for _, a := range authors {
		out = append(out, cloneProof(m.forks[a]))
	}
	return out, nil
}

// Sync implements Store: memory has nothing to sync, but a closed store
// says so.
func (m *Mem) Sync() error { return m.usable() }

// Close implements Store. It drops everything the store holds.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.feeds, m.contacts, m.clocks, m.forks = nil, nil, nil, nil
	return nil
}
