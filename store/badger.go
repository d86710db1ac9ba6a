package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/contextd/contextd/feed"
)

// Badger configuration: small enough for a daemon on a laptop (about 50 MiB
// of memtables, 32 MiB of block cache, 8 MiB of index cache).
const (
	badgerMemTableSize    = 16 << 20
	badgerNumMemtables    = 3
	badgerBlockCacheSize  = 32 << 20
	badgerIndexCacheSize  = 8 << 20
	badgerValueLogFile    = 64 << 20
	badgerNumCompactors   = 2
	badgerLevelZeroTables = 3
	badgerLevelZeroStall  = 8

	// badgerValueThreshold is the value size from which Badger keeps a value
	// in the value log and only a pointer in the LSM tree. Every entry
	// (minEntrySize bytes or more) goes to the value log, written once per
	// append; the LSM tree (its write-ahead log, memtables, flushes and
	// compactions) moves only keys and pointers, which cuts the CPU an
	// append costs by about a third (BenchmarkBadgerAppend). The small
	// values that are overwritten (heads, contacts, peer clocks) stay
	// inline, so the value log never holds garbage.
	badgerValueThreshold = 64
)

// Transaction budget. Badger refuses a transaction whose estimated size
// reaches 15% of MemTableSize (ErrTxnTooBig); it counts each write as key +
// 10 (version) + 2 (meta) + the value, or a 12-byte pointer for a value at
// or above the threshold. Every entry is at or above it; a contact entry
// adds its contact key with a 1-byte value, a lease entry its lease key
// (of the longest object ID) with an 8-byte value. The constants below
// fail to compile if an entry could stay inline or if MaxBatch contact or
// lease entries and the head do not fit.
const (
	badgerMaxTxnBytes   = 15 * badgerMemTableSize / 100
	badgerWriteOverhead = 10 + 2
	badgerValuePointer  = 12
	badgerWorstEntry    = entryKeyLen + badgerWriteOverhead + badgerValuePointer
	badgerWorstContact  = badgerWorstEntry + pairKeyLen + badgerWriteOverhead + 1
	badgerWorstLease    = badgerWorstEntry + maxLeaseKeyLen + badgerWriteOverhead + 8
	badgerHeadWrite     = 1 + idLen + badgerWriteOverhead + headValLen
	badgerCounterWrite  = 1 + idLen + badgerWriteOverhead + 8 // a feed's or a context's byte count
	// A ctx entry adds its index key, its context's cursor, its member
	// record and its byte count (at worst one context per entry).
	badgerWorstCtx = badgerWorstEntry + ctxMsgKeyLen + badgerWriteOverhead + ctxRefValLen +
		1 + idLen + badgerWriteOverhead + 8 + pairKeyLen + badgerWriteOverhead + ctxMemValLen + badgerCounterWrite
	badgerWorstTxnBytes = MaxBatch*max(badgerWorstEntry, badgerWorstContact, badgerWorstLease, badgerWorstCtx) +
		badgerHeadWrite + badgerCounterWrite

	// minEntrySize is the encoded size of the smallest entry: header 82 +
	// a 1-byte type + body length 4 + signature 64.
	minEntrySize = 82 + 1 + 4 + 64

	_ = uint(minEntrySize - badgerValueThreshold)     // every entry goes to the value log
	_ = uint(badgerMaxTxnBytes - badgerWorstTxnBytes) // MaxBatch must fit one transaction
)

// stripes is the number of append locks; authors hash onto them.
const stripes = 64

// BadgerOptions configures OpenBadger. The zero value is the default.
type BadgerOptions struct {
	// Logger receives Badger's own log lines: errors at Error, warnings at
	// Warn, the rest at Debug. Nil discards them.
	Logger *slog.Logger
	// Metrics, if not nil, times commits and syncs and reports the
	// databases' sizes (metrics.go).
	Metrics *Metrics
}

// Badger is a Store on two Badger v4 databases in one directory. db, in
// the directory itself, holds feeds, the graph, clocks, object records,
// pins and leases; the writes that must not go back in time are synced
// before they return, the node's own entries at its Sync. blobs, in
// its subdirectory blobsDir, and the chunk files, in chunksDir, hold what
// can be fetched again: tree hashes and a record per held chunk in blobs,
// the chunks' bytes in one file per object, all written unsynced (see
// OpenBadger). It is safe for concurrent use.
type Badger struct {
	db     *badger.DB
	blobs  *badger.DB
	chunks *chunkFiles // the chunk files (badger_chunks.go)

	// mu guards closed and keeps Close from running while any call uses db:
	// every call holds it for reading, Close for writing. It is taken
	// before a stripe lock, never after.
	mu     sync.RWMutex
	closed bool

	// appendMu[i] serialises the read-check-write of Append and AddForkProof
	// for the authors that hash to stripe i. With it held nothing else writes
	// those authors' e, h, c and f keys, so Badger's conflict detection is
	// off: concurrent appends over one head cannot both succeed, and appends
	// by different authors still share Badger's group commits.
	appendMu [stripes]sync.Mutex
	// ctxMu serialises the appends that index ctx entries: they read and
	// advance context cursors, which appends of any author share. It is
	// taken after a stripe lock and the object lock, never before.
	ctxMu sync.Mutex

	objs badgerObjects // object storage (badger_objects.go)

	quotas atomic.Pointer[Quotas] // what Append enforces (badger_bounds.go); nil: none

	dir    string     // the main database's directory
	syncMu sync.Mutex // serialises Sync
	logs   logState   // what the last Sync saw of the logs (badger_sync.go)

	metrics *Metrics // BadgerOptions.Metrics, or nil
}

var _ Store = (*Badger)(nil)

// blobsDir is the subdirectory of a Badger store that holds the blobs
// database.
const blobsDir = "blobs"

// Blobs database configuration. It holds small values only, a chunk's
// record (4 bytes) and tree hashes (a digest), all inline in the LSM tree:
// the value threshold is above any digest, so the value log holds nothing
// but what a layout upgrade moved out. Checksums and hashes do not
// compress. A 1 GiB object writes about 200,000 keys (a record per chunk,
// two hashes per chunk), about 13 MiB, so small memtables flush often
// enough.
const (
	blobsMemTableSize   = 2 << 20
	blobsNumMemtables   = 2
	blobsBlockCacheSize = 8 << 20
	blobsIndexCacheSize = 8 << 20
	blobsValueThreshold = 1 << 10
)

// OpenBadger opens (creating if needed) the store in dir. Only one process
// may have a directory open at a time.
//
// Durability differs between the two databases. Appends to db are not
// synced: most are other authors' entries, which can be fetched again, and
// a sync per delivered message would put the disk on every context
// message's path (a commit survives the process dying, only not the
// machine). Sync is the barrier for the writes that must survive a power
// loss: the node syncs after appending its own entries and before they
// leave it (an author that lost its own latest entries would fork its
// feed), and object records, pins, sweeps and joined contexts are synced
// here before their calls return. The blobs database and the chunk files
// are not synced on write: a sync per batch of chunks would cost more than
// the network when swarming; a power loss may take chunks or hashes
// written in the last seconds, which are fetched again. A chunk's bytes
// reach its file before its record commits, and are checked against the
// record's CRC-32C on every read, so a chunk a power loss tore (or whose
// file it lost) reads as ErrCorrupt, and is then forgotten (AppendChunks),
// not served. An open of a store of layout 3 or before first moves its
// chunks into chunk files (moveChunks).
func OpenBadger(dir string, opts BadgerOptions) (*Badger, error) {
	if dir == "" {
		return nil, errors.New("store: open badger: empty directory name")
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithSyncWrites(false).
		WithVerifyValueChecksum(true).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithMemTableSize(badgerMemTableSize).
		WithNumMemtables(badgerNumMemtables).
		WithBlockCacheSize(badgerBlockCacheSize).
		WithIndexCacheSize(badgerIndexCacheSize).
		WithValueLogFileSize(badgerValueLogFile).
		WithValueThreshold(badgerValueThreshold).
		WithNumCompactors(badgerNumCompactors).
		WithNumLevelZeroTables(badgerLevelZeroTables).
		WithNumLevelZeroTablesStall(badgerLevelZeroStall)
	if opts.Logger != nil {
		bo = bo.WithLogger(slogLogger{opts.Logger.With("component", "badger")})
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("store: open badger %s: %w", dir, err)
	}
	mainVersion, err := checkSchema(db)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open badger %s: %w", dir, err), db.Close())
	}
	blobs, err := badger.Open(bo.WithDir(filepath.Join(dir, blobsDir)).
		WithValueDir(filepath.Join(dir, blobsDir)).
		WithSyncWrites(false).
		WithCompression(options.None).
		WithMemTableSize(blobsMemTableSize).
		WithNumMemtables(blobsNumMemtables).
		WithBlockCacheSize(blobsBlockCacheSize).
		WithIndexCacheSize(blobsIndexCacheSize).
		WithValueThreshold(blobsValueThreshold))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open badger %s: blobs: %w", dir, err), db.Close())
	}
	blobsVersion, err := checkSchema(blobs)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open badger %s: blobs: %w", dir, err), blobs.Close(), db.Close())
	}
	chunks, err := newChunkFiles(filepath.Join(dir, chunksDir))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store: open badger %s: %w", dir, err), blobs.Close(), db.Close())
	}
	s := &Badger{db: db, blobs: blobs, chunks: chunks, dir: dir, metrics: opts.Metrics}
	for _, step := range []func() error{
		func() error { return s.upgrade(mainVersion, blobsVersion) },
		s.finishDeletes,
		s.loadObjects,
	} {
		if err := step(); err != nil {
			return nil, errors.Join(fmt.Errorf("store: open badger %s: %w", dir, err), chunks.close(), blobs.Close(), db.Close())
		}
	}
	opts.Metrics.watch(s)
	return s, nil
}

// checkSchema writes the schema version into a new database and refuses a
// database of a version other than schemaVersion or one from
// schemaUpgradable on, which it returns (the caller upgrades it).
func checkSchema(db *badger.DB) (version byte, err error) {
	version = schemaVersion
	err = db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte{keySchema})
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte{keySchema}, []byte{schemaVersion})
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 1 {
				return fmt.Errorf("%w: schema version %x", ErrCorrupt, v)
			}
			version = v[0]
			if version > schemaVersion || version < schemaUpgradable {
				return fmt.Errorf("%w: schema version %d, this build reads %d; another contextd version "+
					"wrote it: move the directory away to start afresh (feeds sync again from peers, "+
					"the node's own feed too)", ErrSchema, v[0], schemaVersion)
			}
			return nil
		})
	})
	return version, err
}

// stripe returns the append lock of author.
func (s *Badger) stripe(author feed.ID) *sync.Mutex {
	return &s.appendMu[author[0]%stripes]
}

// rlock takes s.mu for reading; the caller must call s.mu.RUnlock unless
// it returns ErrClosed.
func (s *Badger) rlock() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// view runs fn in a read transaction of the main database.
func (s *Badger) view(fn func(txn *badger.Txn) error) error { return s.viewOf(s.db, fn) }

// viewBlobs runs fn in a read transaction of the blobs database.
func (s *Badger) viewBlobs(fn func(txn *badger.Txn) error) error { return s.viewOf(s.blobs, fn) }

func (s *Badger) viewOf(db *badger.DB, fn func(txn *badger.Txn) error) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return db.View(fn)
}

// Append implements Store.
func (s *Badger) Append(entries []*feed.Entry) error { return s.AppendIDs(entries, nil) }

// AppendIDs implements Store; nil ids are computed.
func (s *Badger) AppendIDs(entries []*feed.Entry, ids []feed.Hash) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	b, err := newBatch(entries, ids)
	if err != nil || b == nil {
		return err
	}
	mu := s.stripe(b.author)
	mu.Lock()
	defer mu.Unlock()
	if b.leases {
		// The object lock keeps the lease keys and the in-memory index
		// of held objects' leases moving together.
		s.objs.mu.Lock()
		defer s.objs.mu.Unlock()
	}
	if b.ctxs {
		// One context's cursors are taken by appends of many authors.
		s.ctxMu.Lock()
		defer s.ctxMu.Unlock()
	}

	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if _, err := txn.Get(idKey(prefixFork, b.author)); err == nil {
		return ErrForked
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("store: append: %w", err)
	}
	head, err := readHead(txn, b.author)
	if err != nil {
		return fmt.Errorf("store: append: %w", err)
	}
	if err := b.extends(head); err != nil {
		return err
	}
	held, err := readCounter(txn, idKey(prefixFeedBytes, b.author))
	if err != nil {
		return fmt.Errorf("store: append: %w", err)
	}
	q := s.quotasNow()
	if err := b.checkQuotas(q, int64(held), func(ctx feed.ID) (int64, error) { return ctxOthers(txn, ctx, q.Self) }); err != nil {
		return err
	}
	if err := txn.Set(idKey(prefixFeedBytes, b.author), binary.BigEndian.AppendUint64(nil, held+uint64(b.bytes()))); err != nil {
		return badgerWriteErr(err)
	}
	for i := range b.recs {
		r := &b.recs[i]
		if err := txn.Set(entryKey(b.author, r.e.Seq), r.enc); err != nil {
			return badgerWriteErr(err)
		}
		if c := r.contact; c != nil {
			k := pairKey(prefixContact, b.author, c.Target)
			if c.Rel == feed.RelNone {
				err = txn.Delete(k)
			} else {
				err = txn.Set(k, []byte{byte(c.Rel)})
			}
			if err != nil {
				return badgerWriteErr(err)
			}
		}
		if l := r.lease; l != nil {
			k := objKey(prefixLease, l.id, b.author[:])
			if l.until == 0 {
				err = txn.Delete(k)
			} else {
				err = txn.Set(k, encodeNote(l.until))
			}
			if err != nil {
				return badgerWriteErr(err)
			}
		}
	}
	if b.ctxs {
		if err := writeCtxLocked(txn, b); err != nil {
			return badgerWriteErr(err)
		}
	}
	if err := txn.Set(idKey(prefixHead, b.author), encodeHead(b.head())); err != nil {
		return badgerWriteErr(err)
	}
	start := s.metrics.now()
	if err := txn.Commit(); err != nil {
		return badgerWriteErr(err)
	}
	s.metrics.committed(start)
	if b.leases {
		x := &s.objs.index
		for i := range b.recs {
			if l := b.recs[i].lease; l != nil && x.objs[l.id.KeyString()] != nil {
				x.setLease(l.id.KeyString(), b.author, l.until)
			}
		}
	}
	return nil
}

// badgerWriteErr wraps an error from a write in Append.
func badgerWriteErr(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Unreachable while the transaction budget above holds.
		return fmt.Errorf("store: append: %w: %w", ErrBatchTooLarge, err)
	}
	return fmt.Errorf("store: append: %w", err)
}

// readHead returns the head of author: zero if the feed is unknown.
func readHead(txn *badger.Txn, author feed.ID) (feed.Head, error) {
	item, err := txn.Get(idKey(prefixHead, author))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return feed.Head{}, nil
	}
	if err != nil {
		return feed.Head{}, err
	}
	var h feed.Head
	err = item.Value(func(v []byte) error {
		h, err = decodeHead(v)
		return err
	})
	return h, err
}

// Head implements Store.
func (s *Badger) Head(author feed.ID) (feed.Head, error) {
	var h feed.Head
	err := s.view(func(txn *badger.Txn) error {
		var err error
		h, err = readHead(txn, author)
		return err
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		return feed.Head{}, fmt.Errorf("store: head of %s: %w", author.Short(), err)
	}
	return h, err
}

// Heads implements Store.
func (s *Badger) Heads() (map[feed.ID]feed.Head, error) {
	heads := make(map[feed.ID]feed.Head)
	err := s.view(func(txn *badger.Txn) error {
		return scanIDs(txn, []byte{prefixHead}, func(author feed.ID, v []byte) error {
			h, err := decodeHead(v)
			heads[author] = h
			return err
		})
	})
	if err != nil {
		return nil, wrapErr(err, "store: heads")
	}
	return heads, nil
}

// Get implements Store.
func (s *Badger) Get(author feed.ID, seq uint64) (*feed.Entry, error) {
	var e *feed.Entry
	err := s.view(func(txn *badger.Txn) error {
		if seq == 0 {
			return ErrNotFound
		}
		err := readValue(txn, entryKey(author, seq), func(v []byte) (err error) {
			e, err = decodeEntry(author, seq, v)
			return err
		})
		if errors.Is(err, ErrNotFound) {
			if perr := prunedErr(txn, author, seq); perr != nil {
				return perr
			}
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrPruned) {
			return nil, err
		}
		return nil, fmt.Errorf("store: get %s seq %d: %w", author.Short(), seq, err)
	}
	return e, nil
}

// Range implements Store. It seeks straight to from and reads at most limit
// entries.
func (s *Badger) Range(author feed.ID, from uint64, limit int) ([]*feed.Entry, error) {
	var out []*feed.Entry
	err := s.view(func(txn *badger.Txn) error {
		return scanEntries(txn, author, from, limit, func(seq uint64, v []byte) (bool, error) {
			e, err := decodeEntry(author, seq, v)
			out = append(out, e)
			return true, err
		})
	})
	if err != nil {
		return nil, wrapErr(err, "store: range %s from %d", author.Short(), from)
	}
	return out, nil
}

// RangeEncoded implements Store. It copies the stored encodings without
// decoding them.
func (s *Badger) RangeEncoded(author feed.ID, from uint64, limit, maxBytes int) ([][]byte, error) {
	// The encodings are copied into one buffer, cut up at the end.
	var buf []byte
	var ends []int
	err := s.view(func(txn *badger.Txn) error {
		return scanEntries(txn, author, from, limit, func(seq uint64, v []byte) (bool, error) {
			if len(ends) > 0 && len(buf)+len(v) > maxBytes {
				return false, nil
			}
			if err := checkEncoding(author, seq, v); err != nil {
				return false, err
			}
			if buf == nil {
				// Sized for limit entries like the first, within maxBytes.
				buf = make([]byte, 0, max(min(maxBytes, limit*len(v)), len(v)))
			}
			buf = append(buf, v...)
			ends = append(ends, len(buf))
			return true, nil
		})
	})
	if err != nil {
		return nil, wrapErr(err, "store: range %s from %d", author.Short(), from)
	}
	out := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		out[i] = buf[start:end:end]
		start = end
	}
	return out, nil
}

// scanEntries calls fn with the stored encoding of each of author's entries
// from seq from (1 if 0) on, at most limit of them, until fn reports false
// or fails. v is valid only during the call.
func scanEntries(txn *badger.Txn, author feed.ID, from uint64, limit int, fn func(seq uint64, v []byte) (bool, error)) error {
	if limit <= 0 {
		return nil
	}
	if from == 0 {
		from = 1
	}
	prefix := idKey(prefixEntry, author)
	it := txn.NewIterator(badger.IteratorOptions{
		PrefetchValues: true,
		PrefetchSize:   min(limit, 64),
		Prefix:         prefix,
	})
	defer it.Close()
	want := from
	for it.Seek(entryKey(author, from)); it.ValidForPrefix(prefix) && want-from < uint64(limit); it.Next() {
		item := it.Item()
		_, seq, err := decodeEntryKey(item.Key())
		if err != nil {
			return err
		}
		if seq != want {
			if want == from {
				if err := prunedErr(txn, author, from); err != nil {
					return err
				}
			}
			return fmt.Errorf("%w: seq %d where %d belongs", ErrCorrupt, seq, want)
		}
		more := true
		err = item.Value(func(v []byte) error {
			more, err = fn(seq, v)
			return err
		})
		if err != nil || !more {
			return err
		}
		want++
	}
	return nil
}

// Relation implements Store.
func (s *Badger) Relation(author, target feed.ID) (feed.Relation, error) {
	rel := feed.RelNone
	err := s.view(func(txn *badger.Txn) error {
		err := readValue(txn, pairKey(prefixContact, author, target), func(v []byte) (err error) {
			rel, err = decodeRelation(v)
			return err
		})
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return feed.RelNone, wrapErr(err, "store: relation %s → %s", author.Short(), target.Short())
	}
	return rel, nil
}

// Contacts implements Store.
func (s *Badger) Contacts(author feed.ID) (map[feed.ID]feed.Relation, error) {
	rels := make(map[feed.ID]feed.Relation)
	err := s.view(func(txn *badger.Txn) error {
		return scanIDs(txn, idKey(prefixContact, author), func(target feed.ID, v []byte) error {
			rel, err := decodeRelation(v)
			if err == nil && rel != feed.RelNone {
				rels[target] = rel
			}
			return err
		})
	})
	if err != nil {
		return nil, wrapErr(err, "store: contacts of %s", author.Short())
	}
	return rels, nil
}

// readValue calls fn with the value stored at key, or returns ErrNotFound.
// The value is valid only inside fn.
func readValue(txn *badger.Txn, key []byte, fn func(v []byte) error) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(fn)
}

// wrapErr names the failed operation, leaving ErrClosed bare so callers
// see the same error from every method of a closed store.
func wrapErr(err error, format string, args ...any) error {
	if errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// scanIDs calls fn with the ID and the value of every key that is prefix
// followed by one ID: heads and fork proofs under their one-byte prefix,
// contacts and clocks under their prefix and first ID.
func scanIDs(txn *badger.Txn, prefix []byte, fn func(id feed.ID, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		k := item.Key()
		id, ok := keyID(k, len(prefix))
		if !ok || len(k) != len(prefix)+idLen {
			return fmt.Errorf("%w: key %x", ErrCorrupt, k)
		}
		if err := item.Value(func(v []byte) error { return fn(id, v) }); err != nil {
			return err
		}
	}
	return nil
}

// PeerClock implements Store.
func (s *Badger) PeerClock(peer feed.ID) (map[feed.ID]int64, error) {
	clock := make(map[feed.ID]int64)
	err := s.view(func(txn *badger.Txn) error {
		return scanIDs(txn, idKey(prefixClock, peer), func(f feed.ID, v []byte) error {
			n, err := decodeNote(v)
			clock[f] = n
			return err
		})
	})
	if err != nil {
		return nil, wrapErr(err, "store: clock of %s", peer.Short())
	}
	return clock, nil
}

// SetPeerClock implements Store. Badger's WriteBatch splits a clock too big
// for one transaction into several.
func (s *Badger) SetPeerClock(peer feed.ID, notes map[feed.ID]int64) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if len(notes) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for f, n := range notes {
		if err := wb.Set(pairKey(prefixClock, peer, f), encodeNote(n)); err != nil {
			return fmt.Errorf("store: set clock of %s: %w", peer.Short(), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: set clock of %s: %w", peer.Short(), err)
	}
	return nil
}

// AddForkProof implements Store.
func (s *Badger) AddForkProof(p *feed.ForkProof) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := verifyProof(p); err != nil {
		return err
	}
	author := p.Author()
	mu := s.stripe(author)
	mu.Lock()
	defer mu.Unlock()
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	key := idKey(prefixFork, author)
	if _, err := txn.Get(key); err == nil {
		return nil // the first proof wins
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("store: add fork proof: %w", err)
	}
	if err := txn.Set(key, p.Encode()); err != nil {
		return fmt.Errorf("store: add fork proof: %w", err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("store: add fork proof: %w", err)
	}
	return nil
}

// decodeProof decodes the stored fork proof of author.
func decodeProof(author feed.ID, v []byte) (*feed.ForkProof, error) {
	p, err := feed.DecodeForkProof(v)
	if err != nil {
		return nil, fmt.Errorf("%w: fork proof of %s: %w", ErrCorrupt, author.Short(), err)
	}
	if p.Author() != author {
		return nil, fmt.Errorf("%w: fork proof of %s under %s", ErrCorrupt, p.Author().Short(), author.Short())
	}
	return p, nil
}

// ForkProof implements Store.
func (s *Badger) ForkProof(author feed.ID) (*feed.ForkProof, error) {
	var p *feed.ForkProof
	err := s.view(func(txn *badger.Txn) error {
		return readValue(txn, idKey(prefixFork, author), func(v []byte) (err error) {
			p, err = decodeProof(author, v)
			return err
		})
	})
	if err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("store: fork proof of %s: %w", author.Short(), err)
	}
	return p, nil
}

// ForkProofs implements Store.
func (s *Badger) ForkProofs() ([]*feed.ForkProof, error) {
	var out []*feed.ForkProof
	err := s.view(func(txn *badger.Txn) error {
		return scanIDs(txn, []byte{prefixFork}, func(author feed.ID, v []byte) error {
			p, err := decodeProof(author, v)
			out = append(out, p)
			return err
		})
	})
	if err != nil {
		return nil, wrapErr(err, "store: fork proofs")
	}
	return out, nil
}

// Close implements Store. It waits for calls in progress, then closes the
// database.
func (s *Badger) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// Closing flushes the memtables but syncs no value log without
	// SyncWrites: sync first, so what a clean close leaves survives a
	// power loss.
	if err := errors.Join(s.sync(), s.chunks.close(), s.blobs.Close(), s.db.Close()); err != nil {
		return fmt.Errorf("store: close badger: %w", err)
	}
	return nil
}

// slogLogger routes Badger's log lines to slog.
type slogLogger struct{ l *slog.Logger }

func (g slogLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !g.l.Enabled(ctx, level) {
		return
	}
	g.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (g slogLogger) Errorf(format string, args ...any)   { g.log(slog.LevelError, format, args) }
func (g slogLogger) Warningf(format string, args ...any) { g.log(slog.LevelWarn, format, args) }
func (g slogLogger) Infof(format string, args ...any)    { g.log(slog.LevelDebug, format, args) }
func (g slogLogger) Debugf(format string, args ...any)   { g.log(slog.LevelDebug, format, args) }
