package store

import (
	"errors"
	"fmt"

	"github.com/contextd/contextd/feed"
)

// Errors of the storage bounds (Bounds) callers branch on with errors.Is.
var (
	// ErrQuota reports an Append refused because it would take a feed or
	// a context past its byte quota (Quotas). The error is a *QuotaError.
	ErrQuota = errors.New("store: over quota")
	// ErrPruned reports a read of entries a Prune deleted: the feed's
	// stored copy starts later. The error is a *PrunedError.
	ErrPruned = errors.New("store: pruned")
)

// Bounds keeps a store's size in check: byte counts per feed and per
// context, quotas that Append enforces, deleting a feed, pruning a feed's
// prefix, and the size of the databases. Both *Badger and *Mem implement
// it; implementations are safe for concurrent use.
//
// A pruned feed stays verifiable: Prune keeps the feed's suffix from a
// boundary entry on, and that entry carries its own signature and the
// hash links from it to the head, so what remains checks from it as a
// new trust root (feed.VerifyRun over the remaining entries). Reads of
// the pruned seqs fail with a *PrunedError naming where the copy starts.
type Bounds interface {
	// SetQuotas sets the quotas later Appends enforce; the zero Quotas
	// sets none (the default).
	SetQuotas(q Quotas)
	// FeedBytes returns the bytes of author's stored entries (their
	// canonical encodings): 0 for an unknown feed.
	FeedBytes(author feed.ID) (int64, error)
	// CtxBytes returns the bytes of the stored messages of ctx (the
	// canonical encodings of its indexed ctx entries, all authors').
	// CtxMembers gives them per author (CtxMember.Bytes).
	CtxBytes(ctx feed.ID) (int64, error)
	// Tail returns the seq of the first entry the store holds of author:
	// 1, or more once Prune deleted the ones before it; 0 for a feed
	// without entries.
	Tail(author feed.ID) (uint64, error)
	// Prune deletes author's entries with seq below before, and their
	// bytes from the feed's and their contexts' counts (their context
	// index rows are skipped by CtxRefs from then on). The head entry is
	// never deleted: before is capped at the head's seq. It returns the
	// bytes deleted; pruning what is already gone is a no-op.
	Prune(author feed.ID, before uint64) (int64, error)
	// DeleteFeed deletes everything the store holds of author's feed: its
	// entries and head, its byte count and prune point, its contact rows,
	// the context index rows and member records of its messages, the
	// lease index rows of its lease entries, the EBT clock values peers
	// sent for it, and its fork proof. It is synced before it returns.
	// An unknown feed is a no-op.
	DeleteFeed(author feed.ID) error
	// Usage returns the size of the store's databases.
	Usage() (Usage, error)
	// Compact gives the space of deleted entries and chunks back to the
	// disk where the implementation holds on to it (Badger: a few rounds
	// of value log GC in each database). Prune leaves that to its caller,
	// which prunes many feeds at once.
	Compact()
}

// Quotas bound what Append stores of other authors' feeds. Zero fields do
// not bound.
type Quotas struct {
	// FeedBytes is the most bytes of entries one feed may hold.
	FeedBytes int64
	// CtxBytes is the most bytes of messages one context may hold by
	// authors other than Self.
	CtxBytes int64
	// Self is the node's own feed: never refused, and its messages do not
	// count toward CtxBytes.
	Self feed.ID
	// Exempt, if not nil, reports other feeds that are never refused (the
	// context keys the node holds). It is asked only about an append a
	// quota would refuse, with the store's locks held, so it must not call
	// the store.
	Exempt func(feed.ID) bool
}

// Usage is the size of a store's databases, in bytes.
type Usage struct {
	Main  int64 // feeds, indexes, object records: for Badger its LSM tree and value log
	Blobs int64 // object chunks and tree hashes: for Badger the blobs database and the chunk files
}

// QuotaError is the error of an Append refused by a quota. Nothing of the
// batch is stored; Fit says how many of its leading entries would have
// fit, so that a caller may append those alone.
type QuotaError struct {
	Author  feed.ID // the feed whose entries were refused
	Context feed.ID // the context whose quota it was; zero for the feed's own
	Held    int64   // bytes held before the append (of other authors, for a context)
	Adding  int64   // bytes the batch would have added (to the context, for a context)
	Quota   int64
	Fit     int // leading entries of the batch within every quota
}

func (e *QuotaError) Error() string {
	if !e.Context.IsZero() {
		return fmt.Sprintf("store: append to %s: context %s holds %d bytes of other authors' messages; %d more would pass its quota of %d",
			e.Author.Short(), e.Context.Short(), e.Held, e.Adding, e.Quota)
	}
	return fmt.Sprintf("store: append to %s: the feed holds %d bytes; %d more would pass its quota of %d",
		e.Author.Short(), e.Held, e.Adding, e.Quota)
}

// Is makes a *QuotaError match ErrQuota.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

// QuotaFit returns Fit. Packages that do not import store (ebt)
// recognise a refused append by this method.
func (e *QuotaError) QuotaFit() int { return e.Fit }

// PrunedError is the error of a read below a feed's prune point.
type PrunedError struct {
	Author feed.ID
	Seq    uint64 // the seq asked for
	Tail   uint64 // the first seq the store holds
}

func (e *PrunedError) Error() string {
	return fmt.Sprintf("store: %s seq %d was pruned by the retention setting; this node holds the feed from seq %d on",
		e.Author.Short(), e.Seq, e.Tail)
}

// Is makes a *PrunedError match ErrPruned.
func (e *PrunedError) Is(target error) bool { return target == ErrPruned }

// PrunedTail returns the first seq the store holds. Packages that do not
// import store (ebt) recognise a pruned read by this method.
func (e *PrunedError) PrunedTail() uint64 { return e.Tail }

// batchBytes returns the bytes of the batch's encodings.
func (b *batch) bytes() int64 {
	var n int64
	for i := range b.recs {
		n += int64(len(b.recs[i].enc))
	}
	return n
}

// checkQuotas checks the batch against q, given the feed's bytes held
// and, per context of the batch's messages, the bytes of other authors'
// messages it holds (others). The error is a *QuotaError for the first
// entry that passes a quota.
func (b *batch) checkQuotas(q *Quotas, held int64, others func(ctx feed.ID) (int64, error)) error {
	if b.author == q.Self || (q.FeedBytes <= 0 && (q.CtxBytes <= 0 || !b.ctxs)) {
		return nil
	}
	var qe *QuotaError
	feedBytes := held
	ctxHeld := map[feed.ID]int64{} // per context: bytes held before the batch
	ctxAdd := map[feed.ID]int64{}  // and added by the entries so far
	for i := range b.recs {
		r := &b.recs[i]
		size := int64(len(r.enc))
		feedBytes += size
		if qe == nil && q.FeedBytes > 0 && feedBytes > q.FeedBytes {
			qe = &QuotaError{Author: b.author, Held: held, Quota: q.FeedBytes, Fit: i}
		}
		if r.ctx == nil || q.CtxBytes <= 0 {
			continue
		}
		c := *r.ctx
		n, ok := ctxHeld[c]
		if !ok {
			var err error
			if n, err = others(c); err != nil {
				return err
			}
			ctxHeld[c] = n
		}
		ctxAdd[c] += size
		if qe == nil && n+ctxAdd[c] > q.CtxBytes {
			qe = &QuotaError{Author: b.author, Context: c, Held: n, Quota: q.CtxBytes, Fit: i}
		}
	}
	if qe == nil || (q.Exempt != nil && q.Exempt(b.author)) {
		return nil
	}
	qe.Adding = feedBytes - held
	if !qe.Context.IsZero() {
		qe.Adding = ctxAdd[qe.Context]
	}
	return qe
}
