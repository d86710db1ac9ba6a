package store

import (
	"slices"

	"github.com/contextd/contextd/feed"
)

// memCtx is one context's index in a Mem; refs[i] has cursor i+1.
type memCtx struct {
	refs    []CtxRef
	members map[feed.ID]CtxMember
	bytes   int64 // bytes of the messages stored
}

// indexCtxLocked adds the batch's ctx records to the index; m.mu must be
// held for writing.
func (m *Mem) indexCtxLocked(b *batch) {
	for _, u := range b.ctxUpdates() {
		c := m.ctxs[u.ctx]
		if c == nil {
			c = &memCtx{members: map[feed.ID]CtxMember{}}
			m.ctxs[u.ctx] = c
		}
		for _, seq := range u.seqs {
			c.refs = append(c.refs, CtxRef{Cursor: uint64(len(c.refs) + 1), Author: b.author, Seq: seq})
		}
		old := c.members[b.author]
		c.members[b.author] = CtxMember{Author: b.author, Messages: old.Messages + u.members.Messages,
			Seq: max(old.Seq, u.members.Seq), Bytes: old.Bytes + u.members.Bytes}
		c.bytes += int64(u.members.Bytes)
	}
}

// CtxRefs implements Contexts.
func (m *Mem) CtxRefs(ctx feed.ID, from uint64, limit int, desc bool) ([]CtxRef, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []CtxRef
	c := m.ctxs[ctx]
	if c == nil || limit <= 0 {
		return out, nil
	}
	n := uint64(len(c.refs))
	if desc {
		if from == 0 || from > n {
			from = n
		}
		for i := from; i >= 1 && len(out) < limit; i-- {
			if r := c.refs[i-1]; m.storedLocked(r.Author, r.Seq) {
				out = append(out, r)
			}
		}
		return out, nil
	}
	for i := max(from, 1); i <= n && len(out) < limit; i++ {
		if r := c.refs[i-1]; m.storedLocked(r.Author, r.Seq) {
			out = append(out, r)
		}
	}
	return out, nil
}

// CtxCursor implements Contexts.
func (m *Mem) CtxCursor(ctx feed.ID) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	if c := m.ctxs[ctx]; c != nil {
		return uint64(len(c.refs)), nil
	}
	return 0, nil
}

// CtxMembers implements Contexts.
func (m *Mem) CtxMembers(ctx feed.ID) ([]CtxMember, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := []CtxMember{}
	if c := m.ctxs[ctx]; c != nil {
		for _, mem := range c.members {
			out = append(out, mem)
		}
	}
	slices.SortFunc(out, func(a, b CtxMember) int { return a.Author.Compare(b.Author) })
	return out, nil
}

// SetJoined implements Contexts.
func (m *Mem) SetJoined(ctx feed.ID, joined bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if joined {
		m.joined[ctx] = true
	} else {
		delete(m.joined, ctx)
	}
	return nil
}

// Joined implements Contexts.
func (m *Mem) Joined() ([]feed.ID, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	out := []feed.ID{}
	for id := range m.joined {
		out = append(out, id)
	}
	slices.SortFunc(out, feed.ID.Compare)
	return out, nil
}

var _ Contexts = (*Mem)(nil)
