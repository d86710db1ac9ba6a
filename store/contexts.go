package store

import (
	"github.com/contextd/contextd/feed"
)

// Contexts is the context index of a store: every ctx entry
// appended to any feed is indexed under its context, in the transaction
// that appends it, with the next cursor of that context (1, 2, …: the
// order this store took them in). Each author's messages get cursors in
// their seq order, since feeds are appended in order. Both *Badger and
// *Mem implement it; implementations are safe for concurrent use.
type Contexts interface {
	// CtxRefs returns up to limit messages of ctx by cursor: with desc
	// false those with cursor >= from, ascending; with desc true those
	// with cursor <= from (from 0: the latest), descending. Messages no
	// longer stored (pruned or deleted: Bounds) are skipped.
	CtxRefs(ctx feed.ID, from uint64, limit int, desc bool) ([]CtxRef, error)
	// CtxCursor returns the latest cursor of ctx: 0 for none.
	CtxCursor(ctx feed.ID) (uint64, error)
	// CtxMembers returns the authors of ctx's messages, ordered by ID.
	CtxMembers(ctx feed.ID) ([]CtxMember, error)
	// SetJoined records whether the node takes part in ctx.
	SetJoined(ctx feed.ID, joined bool) error
	// Joined returns the contexts the node takes part in, ordered by ID.
	Joined() ([]feed.ID, error)
}

// CtxRef locates one context message: the entry seq of author.
type CtxRef struct {
	Cursor uint64
	Author feed.ID
	Seq    uint64
}

// CtxMember is what the index knows of one author of a context.
type CtxMember struct {
	Author   feed.ID
	Messages uint64 // messages indexed
	Seq      uint64 // the highest seq among them
	Bytes    uint64 // bytes of the messages stored (canonical encodings; less once pruned)
}

// ctxOf returns the context of a ctx entry's body; false if it is not one
// or does not parse (such an entry is stored but not indexed).
func ctxOf(e *feed.Entry) (feed.ID, bool) {
	if e.Type != feed.TypeCtx {
		return feed.ID{}, false
	}
	c, err := feed.DecodeCtx(e.Body)
	return c.Context, err == nil
}

// ctxUpdate is what one batch adds to one context's index.
type ctxUpdate struct {
	ctx     feed.ID
	seqs    []uint64 // the batch author's messages, ascending
	members CtxMember
}

// ctxUpdates groups a batch's ctx records by context, in first-seen order.
func (b *batch) ctxUpdates() []*ctxUpdate {
	var out []*ctxUpdate
	for i := range b.recs {
		r := &b.recs[i]
		if r.ctx == nil {
			continue
		}
		var u *ctxUpdate
		for _, x := range out {
			if x.ctx == *r.ctx {
				u = x
				break
			}
		}
		if u == nil {
			u = &ctxUpdate{ctx: *r.ctx, members: CtxMember{Author: b.author}}
			out = append(out, u)
		}
		u.seqs = append(u.seqs, r.e.Seq)
		u.members.Messages++
		u.members.Seq = r.e.Seq
		u.members.Bytes += uint64(len(r.enc))
	}
	return out
}
