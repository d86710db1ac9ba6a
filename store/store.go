package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/contextd/contextd/feed"
)

// MaxBatch is the most entries one Append may carry. A batch is written in
// one transaction, so it is bounded rather than split: a larger batch is
// rejected with ErrBatchTooLarge and nothing is written. The Badger
// configuration is sized so that MaxBatch entries of any size fit one
// transaction (see badgerValueThreshold).
const MaxBatch = 4096

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound reports a missing entry or fork proof.
	ErrNotFound = errors.New("store: not found")
	// ErrNotContiguous reports an Append batch that does not extend its
	// feed's head, mixes authors or has a gap inside.
	ErrNotContiguous = errors.New("store: entries do not extend the feed's head")
	// ErrForked reports an Append to a feed frozen by a fork proof.
	ErrForked = errors.New("store: feed is frozen by a fork proof")
	// ErrClosed reports a call on a closed store.
	ErrClosed = errors.New("store: closed")
	// ErrBatchTooLarge reports an Append batch of more than MaxBatch entries.
	ErrBatchTooLarge = errors.New("store: batch too large")
	// ErrCorrupt reports a stored record that does not decode.
	ErrCorrupt = errors.New("store: corrupt record")
	// ErrSchema reports a Badger store written in a layout this build
	// does not read (another contextd version's).
	ErrSchema = errors.New("store: unsupported layout")
)

// Store is what both implementations offer; consumers declare their own
// smaller interfaces. Implementations are safe for concurrent use.
type Store interface {
	// Append atomically appends consecutive entries of ONE author that
	// extend its head: first.Seq == head.Seq+1, first.Prev == head.ID,
	// each next entry's Seq == previous Seq+1 and Prev == previous ID.
	// Otherwise ErrNotContiguous and nothing is written. Signatures are the
	// caller's job, but each entry must pass Entry.Check (else feed's error)
	// and a batch holds at most MaxBatch entries (else ErrBatchTooLarge). A
	// feed with a fork proof is frozen: ErrForked. Contact entries
	// (feed.TypeContact) update the graph index in the same transaction (a
	// contact body that does not parse is stored but does not change the
	// graph). Lease entries (feed.TypeLease) update the lease index of
	// Objects the same way (see Objects). A batch that would take its feed
	// or a context past a byte quota (Bounds.SetQuotas) is refused whole
	// with a *QuotaError (ErrQuota). Empty batch: no-op. The store keeps copies: the caller may
	// reuse the entries afterwards.
	Append(entries []*feed.Entry) error
	// AppendIDs is Append for a caller that already has the entries' IDs
	// (ids[i] is entries[i].ID(), as feed.VerifyRun returns them): it
	// checks the links with them instead of hashing every entry again.
	// IDs that are not the entries' own would let a broken chain be
	// stored, so pass only IDs computed from these very entries. Nil ids
	// make it Append; another length than len(entries) is an error and
	// nothing is written.
	AppendIDs(entries []*feed.Entry, ids []feed.Hash) error
	// Head returns the feed's head: the zero Head and a nil error for an
	// unknown feed.
	Head(author feed.ID) (feed.Head, error)
	// Heads returns the head of every feed with at least one entry.
	Heads() (map[feed.ID]feed.Head, error)
	// Get returns a copy of one entry, or ErrNotFound; a *PrunedError
	// (ErrPruned) for an entry Prune deleted.
	Get(author feed.ID, seq uint64) (*feed.Entry, error)
	// Range returns copies of the author's entries with seq >= from, in
	// ascending order, at most limit of them (none when limit <= 0). A from
	// of 0 reads from seq 1; a from past the head returns no entries; a
	// from below a pruned feed's tail is a *PrunedError (ErrPruned).
	Range(author feed.ID, from uint64, limit int) ([]*feed.Entry, error)
	// RangeEncoded is Range returning the entries' canonical encodings
	// without decoding them (for sending them on), and it stops before
	// the encodings would total more than maxBytes, though it returns at
	// least one entry if there is one.
	RangeEncoded(author feed.ID, from uint64, limit, maxBytes int) ([][]byte, error)
	// Relation returns what author's latest contact entry about target says:
	// RelNone when there is none.
	Relation(author, target feed.ID) (feed.Relation, error)
	// Contacts returns author's relations other than RelNone (a non-nil,
	// possibly empty map).
	Contacts(author feed.ID) (map[feed.ID]feed.Relation, error)
	// PeerClock returns the last EBT notes peer sent us: an empty map if none.
	PeerClock(peer feed.ID) (map[feed.ID]int64, error)
	// SetPeerClock merges notes into peer's clock: the given feeds' values
	// are overwritten, the others kept. Each value is stored on its own (a
	// crash may keep some of a call's values and not others); a clock is a
	// hint, so that is harmless.
	SetPeerClock(peer feed.ID, notes map[feed.ID]int64) error
	// AddForkProof records a fork proof after verifying it (a proof that
	// does not verify is rejected with feed's error). The first proof per
	// author wins; later ones are ignored with a nil error.
	AddForkProof(p *feed.ForkProof) error
	// ForkProof returns the author's fork proof, or ErrNotFound.
	ForkProof(author feed.ID) (*feed.ForkProof, error)
	// ForkProofs returns every fork proof, ordered by author.
	ForkProofs() ([]*feed.ForkProof, error)
	// Sync makes every write that returned before it durable: on disk,
	// safe from a power loss. Appends are not synced on their own (other
	// authors' entries can be fetched again); a caller syncs after
	// appending entries that must not be lost, such as the node's own,
	// before they leave the node.
	Sync() error
	// Close releases the store. Later calls return ErrClosed; a second
	// Close returns nil.
	Close() error
}

// record is one entry of a checked batch, encoded once.
type record struct {
	e       *feed.Entry
	enc     []byte        // canonical encoding
	id      feed.Hash     // SHA-256 of enc
	contact *feed.Contact // parsed body of a contact entry; nil if none or unparsable
	lease   *leaseRec     // parsed body of a lease entry; nil if none or unparsable
	ctx     *feed.ID      // context of a ctx entry; nil if none or unparsable
}

// batch is an Append batch whose shape has been checked: one author, each
// entry structurally valid and linked to the one before it. Whether it
// extends the feed's head is checked later, under the store's lock, by
// extends. Building it needs no lock, so encoding and hashing happen
// outside any critical section.
type batch struct {
	author feed.ID
	recs   []record
	leases bool // some record has a lease
	ctxs   bool // some record has a ctx
}

// newBatch checks entries for everything that does not depend on the feed's
// current head, and encodes each entry once. ids, if not nil, are the
// entries' IDs (AppendIDs); otherwise they are hashed here. It returns
// (nil, nil) for an empty batch.
func newBatch(entries []*feed.Entry, ids []feed.Hash) (*batch, error) {
	if ids != nil && len(ids) != len(entries) {
		return nil, fmt.Errorf("store: append: %d IDs for %d entries", len(ids), len(entries))
	}
	if len(entries) == 0 {
		return nil, nil
	}
	if len(entries) > MaxBatch {
		return nil, fmt.Errorf("%w: %d entries, limit %d", ErrBatchTooLarge, len(entries), MaxBatch)
	}
	b := &batch{recs: make([]record, len(entries))}
	// One buffer holds every encoding: one allocation per batch.
	size := 0
	for _, e := range entries {
		if e != nil {
			size += e.EncodedSize()
		}
	}
	buf := make([]byte, 0, size)
	for i, e := range entries {
		if e == nil {
			return nil, fmt.Errorf("store: append: entry %d is nil", i)
		}
		if err := e.Check(); err != nil {
			return nil, fmt.Errorf("store: append: entry %d (seq %d): %w", i, e.Seq, err)
		}
		if i == 0 {
			b.author = e.Author
		} else {
			prev := &b.recs[i-1]
			switch {
			case e.Author != b.author:
				return nil, fmt.Errorf("%w: entry %d is by %s, the batch by %s", ErrNotContiguous, i, e.Author.Short(), b.author.Short())
			case e.Seq != prev.e.Seq+1:
				return nil, fmt.Errorf("%w: seq %d follows seq %d in the batch", ErrNotContiguous, e.Seq, prev.e.Seq)
			case e.Prev != prev.id:
				return nil, fmt.Errorf("%w: seq %d does not link to seq %d in the batch", ErrNotContiguous, e.Seq, prev.e.Seq)
			}
		}
		start := len(buf)
		buf = e.AppendEncode(buf)
		r := record{e: e, enc: buf[start:len(buf):len(buf)]}
		if ids != nil {
			r.id = ids[i]
		} else {
			r.id = sha256.Sum256(r.enc)
		}
		switch e.Type {
		case feed.TypeContact:
			if c, err := feed.DecodeContact(e.Body); err == nil {
				r.contact = &c
			}
		case feed.TypeLease:
			r.lease = parseLease(e.Body)
			b.leases = b.leases || r.lease != nil
		case feed.TypeCtx:
			if c, ok := ctxOf(e); ok {
				r.ctx = &c
				b.ctxs = true
			}
		}
		b.recs[i] = r
	}
	return b, nil
}

// extends reports whether the batch continues a feed whose head is head.
func (b *batch) extends(head feed.Head) error {
	first := b.recs[0].e
	if first.Seq != head.Seq+1 {
		return fmt.Errorf("%w: %s seq %d after head %d", ErrNotContiguous, b.author.Short(), first.Seq, head.Seq)
	}
	if first.Prev != head.ID {
		return fmt.Errorf("%w: %s seq %d does not link to the head", ErrNotContiguous, b.author.Short(), first.Seq)
	}
	return nil
}

// head returns the feed's head once the batch is appended.
func (b *batch) head() feed.Head {
	last := &b.recs[len(b.recs)-1]
	return feed.Head{Seq: last.e.Seq, ID: last.id}
}

// cloneEntry returns a deep copy of e. An empty body becomes nil, as
// feed.Decode returns it, so both implementations hand out equal values.
func cloneEntry(e *feed.Entry) *feed.Entry {
	c := *e
	c.Body = nil
	if len(e.Body) > 0 {
		c.Body = bytes.Clone(e.Body)
	}
	return &c
}

// cloneProof returns a deep copy of p.
func cloneProof(p *feed.ForkProof) *feed.ForkProof {
	return &feed.ForkProof{A: cloneEntry(p.A), B: cloneEntry(p.B)}
}

// verifyProof checks a proof before it is stored.
func verifyProof(p *feed.ForkProof) error {
	if p == nil {
		return fmt.Errorf("store: add fork proof: %w: nil proof", feed.ErrNotFork)
	}
	if err := p.Verify(); err != nil {
		return fmt.Errorf("store: add fork proof: %w", err)
	}
	return nil
}
