package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// Errors of Verify that callers branch on with errors.Is.
var (
	// ErrInUse reports a store another process (the daemon) has open:
	// stop it to verify the store.
	ErrInUse = errors.New("store: in use by another process")
	// ErrUnclean reports a store whose last writer did not close it (it
	// was killed or the machine stopped): its write-ahead log must be
	// replayed, which a read-only open cannot do. Opening it for writing
	// once (running the daemon) replays it.
	ErrUnclean = errors.New("store: not closed cleanly")
)

// Defaults of VerifyOptions.
const (
	// DefaultChunkSample is how many held chunks of each object Verify
	// checks against the object's root.
	DefaultChunkSample = 16
	// DefaultMaxProblems is how many problems a Report lists.
	DefaultMaxProblems = 100
)

// verifyCacheSize is the block and index cache of each database Verify
// opens: it reads everything once, so a cache barely helps.
const verifyCacheSize = 8 << 20

// verifyBatch is how many entries Verify decodes before it checks their
// signatures, on all cores.
const verifyBatch = 512

// VerifyOptions configures Verify. The zero value is the default.
type VerifyOptions struct {
	// ChunkSample is how many held chunks of each object are checked
	// against the object's root, picked at random: 0 means
	// DefaultChunkSample; a negative value checks every chunk.
	ChunkSample int
	// MaxProblems bounds the problems a Report lists (0 means
	// DefaultMaxProblems); the others are only counted.
	MaxProblems int
}

// ProblemKind says what part of a store a Problem is in.
type ProblemKind int

// Kinds of problems.
const (
	// ProblemEntry: entry Seq of Feed does not decode, is not signed by
	// its author, or does not link to the entry before it.
	ProblemEntry ProblemKind = iota + 1
	// ProblemHead: Feed's recorded head is missing, does not decode, or is
	// not its last entry.
	ProblemHead
	// ProblemForkProof: Feed's fork proof does not decode or prove a fork.
	ProblemForkProof
	// ProblemContext: the index of Context at Cursor (or its latest
	// cursor, with Cursor 0) does not point at a stored ctx message of
	// Context (Feed and Seq: where it points).
	ProblemContext
	// ProblemObject: Object's record is unreadable or incomplete.
	ProblemObject
	// ProblemChunk: chunk Chunk of Object does not verify against the
	// object's root, or a tree hash needed to verify it is missing.
	ProblemChunk
)

// Problem is one thing wrong in a store. The fields that apply depend on
// Kind.
type Problem struct {
	Kind    ProblemKind
	Feed    feed.ID
	Seq     uint64
	Context feed.ID
	Cursor  uint64
	Object  cid.Cid
	Chunk   uint64
	Err     error // what is wrong
}

func (p Problem) String() string {
	switch p.Kind {
	case ProblemEntry:
		return fmt.Sprintf("feed %s entry %d: %v", p.Feed, p.Seq, p.Err)
	case ProblemHead:
		return fmt.Sprintf("feed %s head: %v", p.Feed, p.Err)
	case ProblemForkProof:
		return fmt.Sprintf("feed %s fork proof: %v", p.Feed, p.Err)
	case ProblemContext:
		if p.Cursor == 0 {
			return fmt.Sprintf("context %s index: %v", p.Context, p.Err)
		}
		return fmt.Sprintf("context %s cursor %d (feed %s entry %d): %v", p.Context, p.Cursor, p.Feed, p.Seq, p.Err)
	case ProblemObject:
		return fmt.Sprintf("object %s: %v", p.Object, p.Err)
	case ProblemChunk:
		return fmt.Sprintf("object %s chunk %d: %v", p.Object, p.Chunk, p.Err)
	}
	return fmt.Sprintf("problem %d: %v", int(p.Kind), p.Err)
}

// Report is what Verify found.
type Report struct {
	Feeds      int    // feeds with entries
	Pruned     int    // of them, feeds whose stored copy starts after seq 1
	Entries    uint64 // entries checked
	ForkProofs int    // fork proofs checked
	CtxRefs    uint64 // context index records checked
	Objects    int    // object records checked
	Chunks     uint64 // chunks checked against their object's root

	// Problems lists what is wrong, at most VerifyOptions.MaxProblems of
	// it in the order found; Omitted counts the problems beyond those.
	Problems []Problem
	Omitted  int
}

// OK reports whether Verify found nothing wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 && r.Omitted == 0 }

// Verify checks the Badger store in dir without writing to it (both
// databases are opened read-only): every feed's entries (each decodes, is
// signed by its author and links to the one before it; a feed whose copy
// starts after seq 1, pruned, is checked from its first stored entry),
// that each feed's head is its last entry, the fork proofs, that the
// context index points at stored ctx messages of its context, the object
// records, and a random sample of each object's held chunks against the
// object's root (VerifyOptions.ChunkSample).
//
// What is wrong in the data is listed in the Report; the error is for what
// stopped the check: ErrInUse (the daemon has the store open), ErrUnclean,
// ErrSchema, an error matching fs.ErrNotExist for a missing store, ctx's
// error, or a read error.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*Report, error) {
	if opts.ChunkSample == 0 {
		opts.ChunkSample = DefaultChunkSample
	}
	if opts.MaxProblems <= 0 {
		opts.MaxProblems = DefaultMaxProblems
	}
	db, err := openReadOnly(dir, badgerMemTableSize)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	blobs, err := openReadOnly(filepath.Join(dir, blobsDir), blobsMemTableSize)
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w: %s has no blobs database", ErrCorrupt, dir) // not a missing store
	}
	if err != nil {
		return nil, err
	}
	defer blobs.Close()
	v := &verifier{ctx: ctx, opts: opts, r: &Report{}, chunkDir: filepath.Join(dir, chunksDir)}
	err = db.View(func(txn *badger.Txn) error {
		if err := readSchema(txn); err != nil {
			return err
		}
		if err := v.feeds(txn); err != nil {
			return err
		}
		if err := v.forkProofs(txn); err != nil {
			return err
		}
		if err := v.ctxIndex(txn); err != nil {
			return err
		}
		return blobs.View(func(btxn *badger.Txn) error {
			if err := readSchema(btxn); err != nil {
				return fmt.Errorf("blobs: %w", err)
			}
			return v.objects(txn, btxn)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: verify %s: %w", dir, err)
	}
	return v.r, nil
}

// openReadOnly opens the Badger database in dir read-only.
func openReadOnly(dir string, memTableSize int64) (*badger.DB, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("store: verify: %w", err)
	}
	db, err := badger.Open(badger.DefaultOptions(dir).
		WithReadOnly(true).
		WithLogger(nil).
		WithVerifyValueChecksum(true).
		WithMetricsEnabled(false).
		WithMemTableSize(memTableSize).
		WithValueThreshold(badgerValueThreshold).
		WithValueLogFileSize(badgerValueLogFile).
		WithBlockCacheSize(verifyCacheSize).
		WithIndexCacheSize(verifyCacheSize))
	switch {
	case err == nil:
		return db, nil
	case dirLocked(dir):
		return nil, fmt.Errorf("%w: %s (stop the daemon using it)", ErrInUse, dir)
	case strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()):
		// Badger does not wrap this one: its text is all there is.
		return nil, fmt.Errorf("%w: %s (run the daemon once and stop it: opening the store replays its log)", ErrUnclean, dir)
	}
	return nil, fmt.Errorf("store: verify: open %s: %w", dir, err)
}

// readSchema checks the schema version without writing one.
func readSchema(txn *badger.Txn) error {
	err := readValue(txn, []byte{keySchema}, func(v []byte) error {
		if len(v) == 1 && v[0] >= schemaUpgradable && v[0] < schemaVersion {
			return fmt.Errorf("%w: schema version %d, this build reads %d (run the daemon once: opening the store upgrades it)", ErrSchema, v[0], schemaVersion)
		}
		if len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("%w: schema version %x, this build reads %d", ErrSchema, v, schemaVersion)
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: no schema version", ErrCorrupt)
	}
	return err
}

// verifier is the state of one Verify.
type verifier struct {
	ctx      context.Context
	opts     VerifyOptions
	r        *Report
	chunkDir string // the store's chunk file directory
}

// add records a problem.
func (v *verifier) add(p Problem) {
	if len(v.r.Problems) < v.opts.MaxProblems {
		v.r.Problems = append(v.r.Problems, p)
	} else {
		v.r.Omitted++
	}
}

// feedCheck is one stored entry on its way through the feed check.
type feedCheck struct {
	author feed.ID
	seq    uint64
	e      *feed.Entry // nil if it did not decode
	err    error       // decode or signature error
}

// feedState is the feed check's position in the feed it is in.
type feedState struct {
	author  feed.ID
	started bool
	head    feed.Head // the last entry checked
	lastBad bool      // the last entry checked had a problem
}

// feeds checks every entry, in key order (author, then seq), and the heads
// alongside, by a merge of the entry and head keys.
func (v *verifier) feeds(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{prefixEntry}})
	defer it.Close()
	heads := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: []byte{prefixHead}})
	defer heads.Close()
	heads.Rewind()
	var st feedState
	batch := make([]feedCheck, 0, verifyBatch)
	flush := func() error {
		if err := v.ctx.Err(); err != nil {
			return err
		}
		verifySignatures(batch)
		for i := range batch {
			c := &batch[i]
			if st.started && c.author != st.author {
				if err := v.endFeed(heads, &st); err != nil {
					return err
				}
			}
			v.entry(&st, c)
		}
		batch = batch[:0]
		return nil
	}
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		author, seq, err := decodeEntryKey(item.Key())
		if err != nil {
			return err // a key of another shape under 'e': not a contextd store
		}
		c := feedCheck{author: author, seq: seq}
		if err := item.Value(func(b []byte) (err error) {
			c.e, c.err = decodeEntry(author, seq, b)
			return nil
		}); err != nil {
			c.err = fmt.Errorf("%w: %w", ErrCorrupt, err) // a value failing Badger's checksum
		}
		batch = append(batch, c)
		if len(batch) == verifyBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if st.started {
		if err := v.endFeed(heads, &st); err != nil {
			return err
		}
	}
	// Heads after the last feed with entries have none.
	return v.headsBefore(heads, nil)
}

// verifySignatures checks the signatures of the decoded entries of batch,
// on all cores, recording failures in their err.
func verifySignatures(batch []feedCheck) {
	workers := min(runtime.GOMAXPROCS(0), len(batch))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(batch); i += workers {
				if c := &batch[i]; c.e != nil {
					if err := c.e.VerifySignature(); err != nil {
						c.err = fmt.Errorf("%w: %w", ErrCorrupt, err)
					}
				}
			}
		})
	}
	wg.Wait()
}

// entry checks c, the next stored entry, against st.
func (v *verifier) entry(st *feedState, c *feedCheck) {
	if !st.started || c.author != st.author {
		*st = feedState{author: c.author, started: true}
		v.r.Feeds++
		if c.seq != 1 {
			v.r.Pruned++ // its first stored entry is a trust root of its own
		}
	}
	v.r.Entries++
	bad := func(err error) {
		v.add(Problem{Kind: ProblemEntry, Feed: c.author, Seq: c.seq, Err: err})
		st.head = feed.Head{Seq: c.seq}
		st.lastBad = true
	}
	switch {
	case c.err != nil:
		bad(c.err)
		return
	case st.head.Seq != 0 && c.seq != st.head.Seq+1:
		v.add(Problem{Kind: ProblemEntry, Feed: c.author, Seq: st.head.Seq + 1,
			Err: fmt.Errorf("%w: entries %d to %d are missing", ErrCorrupt, st.head.Seq+1, c.seq-1)})
	case st.head.Seq != 0 && !st.lastBad && c.e.Prev != st.head.ID:
		bad(fmt.Errorf("%w: %w", ErrCorrupt, feed.ErrWrongPrev))
		return
	}
	// After a bad entry the next one starts the chain again: its link to
	// the bad one says nothing more.
	st.head = c.e.Next()
	st.lastBad = false
}

// endFeed checks st's feed's head, reporting the heads of feeds without
// entries that sort before it.
func (v *verifier) endFeed(heads *badger.Iterator, st *feedState) error {
	if err := v.headsBefore(heads, &st.author); err != nil {
		return err
	}
	if !heads.Valid() || !bytes.Equal(heads.Item().Key(), idKey(prefixHead, st.author)) {
		v.add(Problem{Kind: ProblemHead, Feed: st.author, Err: fmt.Errorf("%w: the feed has entries but no head", ErrCorrupt)})
		return nil
	}
	var h feed.Head
	err := heads.Item().Value(func(b []byte) (err error) {
		h, err = decodeHead(b)
		return err
	})
	heads.Next()
	switch {
	case err != nil:
		v.add(Problem{Kind: ProblemHead, Feed: st.author, Err: err})
	case h.Seq != st.head.Seq:
		v.add(Problem{Kind: ProblemHead, Feed: st.author, Err: fmt.Errorf("%w: head at seq %d, last entry %d", ErrCorrupt, h.Seq, st.head.Seq)})
	case !st.lastBad && h.ID != st.head.ID:
		v.add(Problem{Kind: ProblemHead, Feed: st.author, Err: fmt.Errorf("%w: head ID is not entry %d's", ErrCorrupt, h.Seq)})
	}
	return nil
}

// headsBefore reports the heads before author's (all that remain, for
// nil): their feeds have no entries.
func (v *verifier) headsBefore(heads *badger.Iterator, author *feed.ID) error {
	for ; heads.ValidForPrefix([]byte{prefixHead}); heads.Next() {
		k := heads.Item().Key()
		id, ok := keyID(k, 1)
		if !ok || len(k) != 1+idLen {
			return fmt.Errorf("%w: head key %x", ErrCorrupt, k)
		}
		if author != nil && bytes.Compare(id[:], author[:]) >= 0 {
			return nil
		}
		v.add(Problem{Kind: ProblemHead, Feed: id, Err: fmt.Errorf("%w: a head but no entries", ErrCorrupt)})
	}
	return nil
}

// forkProofs checks every fork proof.
func (v *verifier) forkProofs(txn *badger.Txn) error {
	return scanIDs(txn, []byte{prefixFork}, func(author feed.ID, b []byte) error {
		v.r.ForkProofs++
		p, err := feed.DecodeForkProof(b)
		if err == nil && p.Author() != author {
			err = fmt.Errorf("proves a fork of %s", p.Author())
		}
		if err != nil {
			v.add(Problem{Kind: ProblemForkProof, Feed: author, Err: fmt.Errorf("%w: %w", ErrCorrupt, err)})
		}
		return nil
	})
}

// ctxIndex checks that every context index record points at a stored ctx
// message of its context (or one pruned away), and that each context's
// latest cursor is at least its highest indexed one.
func (v *verifier) ctxIndex(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{prefixCtxMsg}})
	defer it.Close()
	var (
		cur     feed.ID // the context of the records so far
		highest uint64  // its highest cursor
	)
	for it.Rewind(); it.Valid(); it.Next() {
		if err := v.ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		k := item.Key()
		if len(k) != ctxMsgKeyLen {
			return fmt.Errorf("%w: context index key %x", ErrCorrupt, k)
		}
		c, _ := keyID(k, 1)
		if c != cur && highest != 0 {
			if err := v.ctxCursor(txn, cur, highest); err != nil {
				return err
			}
		}
		cur, highest = c, binary.BigEndian.Uint64(k[1+idLen:])
		v.r.CtxRefs++
		p := Problem{Kind: ProblemContext, Context: c, Cursor: highest}
		if err := item.Value(func(b []byte) error {
			if len(b) != ctxRefValLen {
				return fmt.Errorf("%w: index record of %d bytes", ErrCorrupt, len(b))
			}
			p.Feed, _ = keyID(b, 0)
			p.Seq = binary.BigEndian.Uint64(b[idLen:])
			return nil
		}); err != nil {
			p.Err = err
			v.add(p)
			continue
		}
		if p.Err = v.ctxMessage(txn, c, p.Feed, p.Seq); p.Err != nil {
			v.add(p)
		}
	}
	if highest != 0 {
		return v.ctxCursor(txn, cur, highest)
	}
	return nil
}

// ctxMessage checks that entry seq of author is a stored ctx message of
// c, or was pruned.
func (v *verifier) ctxMessage(txn *badger.Txn, c, author feed.ID, seq uint64) error {
	err := readValue(txn, entryKey(author, seq), func(b []byte) error {
		e, err := decodeEntry(author, seq, b)
		if err != nil {
			return err
		}
		if got, ok := ctxOf(e); !ok || got != c {
			return fmt.Errorf("%w: the entry is not a message of the context", ErrCorrupt)
		}
		return nil
	})
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if tail := firstSeq(txn, author); tail != 0 && seq < tail {
		return nil // pruned: CtxRefs skips it
	}
	return fmt.Errorf("%w: the entry is not stored", ErrCorrupt)
}

// firstSeq returns the seq of author's first stored entry, 0 if none.
func firstSeq(txn *badger.Txn, author feed.ID) uint64 {
	prefix := idKey(prefixEntry, author)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	it.Rewind()
	if !it.Valid() {
		return 0
	}
	_, seq, err := decodeEntryKey(it.Item().Key())
	if err != nil {
		return 0
	}
	return seq
}

// ctxCursor checks that context c's latest cursor is at least highest.
func (v *verifier) ctxCursor(txn *badger.Txn, c feed.ID, highest uint64) error {
	latest, err := readCtxCursor(txn, c)
	if err == nil && latest < highest {
		err = fmt.Errorf("%w: latest cursor %d, below indexed cursor %d", ErrCorrupt, latest, highest)
	}
	if err != nil {
		v.add(Problem{Kind: ProblemContext, Context: c, Err: err})
	}
	return nil
}

// objects checks every object record and a sample of each object's
// chunks (btxn reads the blobs database).
func (v *verifier) objects(txn, btxn *badger.Txn) error {
	type record struct {
		id   cid.Cid
		info object.Info
	}
	var objs []record
	err := scanObjKeys(txn, []byte{prefixObject}, 0, func(id cid.Cid, _, b []byte) error {
		v.r.Objects++
		info, err := decodeInfo(b)
		if err == nil && !info.ID().Equals(id) {
			err = fmt.Errorf("%w: the record is of object %s", ErrCorrupt, info.ID())
		}
		if err == nil {
			err = readValue(txn, objKey(prefixObjState, id, nil), func(b []byte) error {
				_, err := decodeState(b)
				return err
			})
			if errors.Is(err, ErrNotFound) {
				err = fmt.Errorf("%w: no state record", ErrCorrupt)
			}
		}
		if err != nil {
			v.add(Problem{Kind: ProblemObject, Object: id, Err: err})
			return nil
		}
		objs = append(objs, record{id, info})
		return nil
	})
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := v.ctx.Err(); err != nil {
			return err
		}
		if err := v.chunks(btxn, o.id, o.info); err != nil {
			return err
		}
	}
	return nil
}

// chunks checks v.opts.ChunkSample of the held chunks of object id, picked
// at random (reservoir sampling over the chunk records), or all of them.
func (v *verifier) chunks(btxn *badger.Txn, id cid.Cid, info object.Info) error {
	// A missing or unreadable file fails each chunk checked.
	f, ferr := os.Open(filepath.Join(v.chunkDir, chunkFileName(id)))
	if ferr == nil {
		defer f.Close()
	} else {
		ferr = fmt.Errorf("%w: open the chunk file: %w", ErrCorrupt, ferr)
	}
	prefix := objKey(prefixChunkSum, id, nil)
	it := btxn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var sample []uint64
	held := 0
	for it.Rewind(); it.Valid(); it.Next() {
		_, suffix, err := decodeObjKey(it.Item().Key(), 8)
		if err != nil {
			it.Close()
			return err
		}
		index := binary.BigEndian.Uint64(suffix)
		held++
		switch {
		case v.opts.ChunkSample < 0 || len(sample) < v.opts.ChunkSample:
			sample = append(sample, index)
		default:
			if j := rand.IntN(held); j < len(sample) {
				sample[j] = index
			}
		}
		if v.opts.ChunkSample < 0 && len(sample) == verifyBatch {
			v.verifyChunks(btxn, f, ferr, id, info, sample)
			sample = sample[:0]
		}
	}
	it.Close()
	v.verifyChunks(btxn, f, ferr, id, info, sample)
	return nil
}

// verifyChunks checks chunks indexes of object id, read from its chunk
// file f (or failing with ferr, the error opening it), against their
// records and the object's root.
func (v *verifier) verifyChunks(btxn *badger.Txn, f *os.File, ferr error, id cid.Cid, info object.Info, indexes []uint64) {
	var buf []byte
	for _, i := range indexes {
		v.r.Chunks++
		err := ferr
		if err == nil {
			err = readValue(btxn, objKeyU64(prefixChunkSum, id, i), func(sum []byte) error {
				n, err := chunkLen(info, i)
				if err != nil {
					return fmt.Errorf("%w: %w", ErrCorrupt, err)
				}
				buf = slices.Grow(buf[:0], n)[:n]
				if _, err := f.ReadAt(buf, int64(i)*int64(info.ChunkSize)); err != nil {
					return fmt.Errorf("%w: read the chunk file: %w", ErrCorrupt, err)
				}
				return checkChunkSum(sum, buf, i)
			})
		}
		var uncles [][]byte
		if err == nil {
			uncles, err = storedUncles(btxn, id, info, i)
		}
		if err == nil {
			if err = info.VerifyChunk(i, buf, uncles); err != nil {
				err = fmt.Errorf("%w: %w (the chunk or a tree hash on its path is damaged)", ErrCorrupt, err)
			}
		}
		if err != nil {
			v.add(Problem{Kind: ProblemChunk, Object: id, Chunk: i, Err: err})
		}
	}
}

// storedUncles returns the uncles of chunk i from the stored tree hashes:
// what a seeder sends with it (swarm's server). A sibling wholly past the
// object's end is the zero hash.
func storedUncles(btxn *badger.Txn, id cid.Cid, info object.Info, i uint64) ([][]byte, error) {
	n, h := info.Chunks(), info.Height()
	uncles := make([][]byte, 0, h)
	for b := object.ChunkBin(i); b.Layer() < h; b = b.Parent() {
		u := b.Sibling()
		if u.BaseOffset() >= n {
			uncles = append(uncles, make([]byte, info.Hash.Size()))
			continue
		}
		err := readValue(btxn, objKeyU64(prefixTreeHash, id, uint64(u)), func(b []byte) error {
			uncles = append(uncles, bytes.Clone(b))
			return nil
		})
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: the tree hash of bin %v, needed to verify the chunk, is missing", ErrCorrupt, u)
		}
		if err != nil {
			return nil, err
		}
	}
	return uncles, nil
}
