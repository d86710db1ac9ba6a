package store

import (
	"github.com/contextd/contextd/feed"
)

var _ Bounds = (*Mem)(nil)

// SetQuotas implements Bounds.
func (m *Mem) SetQuotas(q Quotas) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.quotas = q
}

// ctxOthersLocked returns the bytes of ctx's messages by authors other
// than the quotas' Self; m.mu must be held.
func (m *Mem) ctxOthersLocked(ctx feed.ID) (int64, error) {
	c := m.ctxs[ctx]
	if c == nil {
		return 0, nil
	}
	return c.bytes - int64(c.members[m.quotas.Self].Bytes), nil
}

// storedLocked reports whether the entry seq of author is stored (not
// pruned, not deleted); m.mu must be held.
func (m *Mem) storedLocked(author feed.ID, seq uint64) bool {
	f := m.feeds[author]
	return f != nil && seq > f.base && seq <= f.head.Seq
}

// FeedBytes implements Bounds.
func (m *Mem) FeedBytes(author feed.ID) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	if f := m.feeds[author]; f != nil {
		return f.bytes, nil
	}
	return 0, nil
}

// CtxBytes implements Bounds.
func (m *Mem) CtxBytes(ctx feed.ID) (int64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	if c := m.ctxs[ctx]; c != nil {
		return c.bytes, nil
	}
	return 0, nil
}

// Tail implements Bounds.
func (m *Mem) Tail(author feed.ID) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	if f := m.feeds[author]; f != nil {
		return f.base + 1, nil
	}
	return 0, nil
}

// Prune implements Bounds.
func (m *Mem) Prune(author feed.ID, before uint64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	f := m.feeds[author]
	if f == nil {
		return 0, nil
	}
	before = min(before, f.head.Seq)
	if before <= f.base+1 {
		return 0, nil
	}
	n := before - f.base - 1
	var freed int64
	for _, e := range f.entries[:n] {
		size := int64(e.EncodedSize())
		freed += size
		if ctx, ok := ctxOf(e); ok {
			m.unindexCtxLocked(ctx, author, size)
		}
	}
	f.entries = append([]*feed.Entry(nil), f.entries[n:]...)
	f.base += n
	f.bytes -= freed
	return freed, nil
}

// unindexCtxLocked takes size bytes of author's messages off ctx's
// counts; m.mu must be held for writing.
func (m *Mem) unindexCtxLocked(ctx, author feed.ID, size int64) {
	c := m.ctxs[ctx]
	if c == nil {
		return
	}
	mem := c.members[author]
	mem.Bytes -= uint64(size)
	c.members[author] = mem
	c.bytes -= size
}

// DeleteFeed implements Bounds.
func (m *Mem) DeleteFeed(author feed.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	delete(m.feeds, author)
	delete(m.contacts, author)
	delete(m.forks, author)
	for _, clock := range m.clocks {
		delete(clock, author)
	}
	for _, c := range m.ctxs {
		if mem, ok := c.members[author]; ok {
			c.bytes -= int64(mem.Bytes)
			delete(c.members, author)
			c.refs = dropRefs(c.refs, author)
		}
	}
	m.objs.mu.Lock()
	defer m.objs.mu.Unlock()
	for key, ls := range m.objs.index.leases {
		if _, ok := ls[author]; ok {
			m.objs.index.setLease(key, author, 0)
		}
	}
	return nil
}

// dropRefs blanks author's refs, keeping every other ref at its cursor:
// a blank ref (zero author, seq 0) is never stored, so CtxRefs skips it.
func dropRefs(refs []CtxRef, author feed.ID) []CtxRef {
	for i := range refs {
		if refs[i].Author == author {
			refs[i] = CtxRef{Cursor: refs[i].Cursor}
		}
	}
	return refs
}

// Compact implements Bounds: memory is freed as it is deleted.
func (m *Mem) Compact() {}

// Usage implements Bounds: the bytes of the entries and of the chunks
// held.
func (m *Mem) Usage() (Usage, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Usage{}, ErrClosed
	}
	var u Usage
	for _, f := range m.feeds {
		u.Main += f.bytes
	}
	m.objs.mu.Lock()
	defer m.objs.mu.Unlock()
	for _, om := range m.objs.index.objs {
		u.Blobs += om.bytes
	}
	return u, nil
}
