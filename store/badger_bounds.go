package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"

	"github.com/contextd/contextd/feed"
)

// Storage bound keys (doc.go has the whole layout).
const (
	prefixFeedBytes = 'b' // b author → bytes of the feed's stored entries BE8
	prefixTail      = 'r' // r author → the first stored seq BE8 (absent: 1)
	prefixCtxBytes  = 'z' // z ctx → bytes of the context's stored messages BE8
	prefixFeedGone  = 'g' // g author → empty: the feed is being deleted (DeleteFeed)

	// badgerPruneBatch is the most entries one Prune transaction deletes,
	// with their counters: far below the transaction budget.
	badgerPruneBatch = 1024
)

var _ Bounds = (*Badger)(nil)

// SetQuotas implements Bounds.
func (s *Badger) SetQuotas(q Quotas) { s.quotas.Store(&q) }

// quotasNow returns the quotas Appends enforce.
func (s *Badger) quotasNow() *Quotas {
	if q := s.quotas.Load(); q != nil {
		return q
	}
	return &Quotas{}
}

// readCounter reads an 8-byte counter: 0 if absent.
func readCounter(txn *badger.Txn, key []byte) (uint64, error) {
	var n uint64
	err := readValue(txn, key, func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: counter %x of %d bytes", ErrCorrupt, key, len(v))
		}
		n = binary.BigEndian.Uint64(v)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return n, err
}

// addCounter adds delta to the counter at key.
func addCounter(txn *badger.Txn, key []byte, delta int64) error {
	n, err := readCounter(txn, key)
	if err != nil {
		return err
	}
	n = uint64(max(int64(n)+delta, 0))
	if n == 0 {
		return txn.Delete(key)
	}
	return txn.Set(key, binary.BigEndian.AppendUint64(nil, n))
}

// readTail returns the first stored seq of author: 1 unless pruned.
func readTail(txn *badger.Txn, author feed.ID) (uint64, error) {
	t, err := readCounter(txn, idKey(prefixTail, author))
	return max(t, 1), err
}

// prunedErr returns a *PrunedError if seq of author lies below its tail,
// else nil.
func prunedErr(txn *badger.Txn, author feed.ID, seq uint64) error {
	tail, err := readTail(txn, author)
	if err != nil {
		return err
	}
	if seq < tail {
		return &PrunedError{Author: author, Seq: seq, Tail: tail}
	}
	return nil
}

// ctxOthers returns the bytes of ctx's messages by authors other than self.
func ctxOthers(txn *badger.Txn, ctx, self feed.ID) (int64, error) {
	total, err := readCounter(txn, idKey(prefixCtxBytes, ctx))
	if err != nil {
		return 0, err
	}
	var own CtxMember
	err = readValue(txn, pairKey(prefixCtxMember, ctx, self), func(v []byte) (err error) {
		own, err = decodeMember(self, v)
		return err
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, err
	}
	return int64(total) - int64(own.Bytes), nil
}

// storedCache remembers, per author, the seqs a CtxRefs call can read.
type storedCache map[feed.ID][2]uint64 // tail, head seq

// stored reports whether entry seq of author is stored: not pruned, and
// the feed not deleted.
func (c storedCache) stored(txn *badger.Txn, author feed.ID, seq uint64) (bool, error) {
	span, ok := c[author]
	if !ok {
		head, err := readHead(txn, author)
		if err != nil {
			return false, err
		}
		tail, err := readTail(txn, author)
		if err != nil {
			return false, err
		}
		span = [2]uint64{tail, head.Seq}
		c[author] = span
	}
	return seq >= span[0] && seq <= span[1], nil
}

// FeedBytes implements Bounds.
func (s *Badger) FeedBytes(author feed.ID) (int64, error) {
	return s.counter(idKey(prefixFeedBytes, author), "feed "+author.Short())
}

// CtxBytes implements Bounds.
func (s *Badger) CtxBytes(ctx feed.ID) (int64, error) {
	return s.counter(idKey(prefixCtxBytes, ctx), "context "+ctx.Short())
}

// counter reads the byte count at key, of what.
func (s *Badger) counter(key []byte, what string) (int64, error) {
	var n uint64
	err := s.view(func(txn *badger.Txn) (err error) {
		n, err = readCounter(txn, key)
		return err
	})
	if err != nil {
		return 0, wrapErr(err, "store: bytes of %s", what)
	}
	return int64(n), nil
}

// Tail implements Bounds.
func (s *Badger) Tail(author feed.ID) (uint64, error) {
	var t uint64
	err := s.view(func(txn *badger.Txn) error {
		head, err := readHead(txn, author)
		if err != nil || head.Seq == 0 {
			return err
		}
		t, err = readTail(txn, author)
		return err
	})
	if err != nil {
		return 0, wrapErr(err, "store: tail of %s", author.Short())
	}
	return t, nil
}

// Prune implements Bounds. Each transaction deletes up to
// badgerPruneBatch entries from the tail on and moves the tail past them,
// with the byte counts, so a crash leaves a consistent feed.
func (s *Badger) Prune(author feed.ID, before uint64) (int64, error) {
	if err := s.rlock(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	mu := s.stripe(author)
	mu.Lock()
	defer mu.Unlock()
	var freed int64
	for {
		n, done, err := s.pruneStepLocked(author, before)
		freed += n
		if err != nil {
			return freed, fmt.Errorf("store: prune %s: %w", author.Short(), err)
		}
		if done {
			return freed, nil
		}
	}
}

// pruneStepLocked deletes one batch of Prune (the stripe lock of author
// must be held); done reports that nothing is left to delete below
// before.
func (s *Badger) pruneStepLocked(author feed.ID, before uint64) (freed int64, done bool, err error) {
	// Context counts are shared with other authors' appends.
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	head, err := readHead(txn, author)
	if err != nil {
		return 0, false, err
	}
	tail, err := readTail(txn, author)
	if err != nil {
		return 0, false, err
	}
	upTo := min(before, head.Seq) // the head entry stays
	if head.Seq == 0 || tail >= upTo {
		return 0, true, nil
	}
	end := min(upTo, tail+badgerPruneBatch)
	ctxBytes := map[feed.ID]int64{}
	err = scanEntries(txn, author, tail, int(end-tail), func(seq uint64, v []byte) (bool, error) {
		freed += int64(len(v))
		if e, err := feed.Decode(v); err == nil {
			if ctx, ok := ctxOf(e); ok {
				ctxBytes[ctx] += int64(len(v))
			}
		}
		return true, txn.Delete(entryKey(author, seq))
	})
	if err != nil {
		return 0, false, err
	}
	for ctx, n := range ctxBytes {
		if err := addMemberBytes(txn, ctx, author, -n); err != nil {
			return 0, false, err
		}
	}
	if err := txn.Set(idKey(prefixTail, author), binary.BigEndian.AppendUint64(nil, end)); err != nil {
		return 0, false, err
	}
	if err := addCounter(txn, idKey(prefixFeedBytes, author), -freed); err != nil {
		return 0, false, err
	}
	if err := txn.Commit(); err != nil {
		return 0, false, err
	}
	return freed, end >= upTo, nil
}

// addMemberBytes adds delta to author's bytes in ctx's member record and
// to ctx's total.
func addMemberBytes(txn *badger.Txn, ctx, author feed.ID, delta int64) error {
	mk := pairKey(prefixCtxMember, ctx, author)
	var m CtxMember
	err := readValue(txn, mk, func(v []byte) (err error) { m, err = decodeMember(author, v); return err })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	m.Bytes = uint64(max(int64(m.Bytes)+delta, 0))
	if err := txn.Set(mk, encodeMember(m)); err != nil {
		return err
	}
	return addCounter(txn, idKey(prefixCtxBytes, ctx), delta)
}

// DeleteFeed implements Bounds. A tombstone, synced first, makes an open
// after a crash finish the deletion (finishDeletes); with it the feed's
// tail moves to its head, so that readers meanwhile get ErrPruned, not a
// feed with holes. The rows go in bounded transactions, the head last.
func (s *Badger) DeleteFeed(author feed.ID) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	mu := s.stripe(author)
	mu.Lock()
	defer mu.Unlock()
	err := update(s.db, func(txn *badger.Txn) error {
		head, err := readHead(txn, author)
		if err != nil {
			return err
		}
		if head.Seq > 1 {
			if err := txn.Set(idKey(prefixTail, author), binary.BigEndian.AppendUint64(nil, head.Seq)); err != nil {
				return err
			}
		}
		return txn.Set(idKey(prefixFeedGone, author), nil)
	})
	if err == nil {
		err = s.sync()
	}
	if err == nil {
		err = s.deleteFeedLocked(author)
	}
	if err == nil {
		err = s.sync()
	}
	if err != nil {
		return fmt.Errorf("store: delete feed %s: %w", author.Short(), err)
	}
	collect(s.db)
	return nil
}

// deleteFeedLocked deletes the feed of author, whose tombstone is written;
// its stripe lock must be held.
func (s *Badger) deleteFeedLocked(author feed.ID) error {
	// Its contact rows, and the clock values peers sent for it.
	if err := deleteKeys(s.db, idKey(prefixContact, author), nil); err != nil {
		return err
	}
	if err := deleteKeys(s.db, []byte{prefixClock}, keySuffix(author[:])); err != nil {
		return err
	}
	if err := s.deleteLeasesOf(author); err != nil {
		return err
	}
	if err := s.deleteCtxRowsOf(author); err != nil {
		return err
	}
	if err := deleteKeys(s.db, idKey(prefixEntry, author), nil); err != nil {
		return err
	}
	return update(s.db, func(txn *badger.Txn) error {
		for _, p := range []byte{prefixHead, prefixFeedBytes, prefixTail, prefixFork, prefixFeedGone} {
			if err := txn.Delete(idKey(p, author)); err != nil {
				return err
			}
		}
		return nil
	})
}

// deleteLeasesOf deletes author's lease index rows, on disk and in the
// index of held objects.
func (s *Badger) deleteLeasesOf(author feed.ID) error {
	s.objs.mu.Lock()
	defer s.objs.mu.Unlock()
	if err := deleteKeys(s.db, []byte{prefixLease}, keySuffix(author[:])); err != nil {
		return err
	}
	x := &s.objs.index
	for key, ls := range x.leases {
		if _, ok := ls[author]; ok {
			x.setLease(key, author, 0)
		}
	}
	return nil
}

// deleteCtxRowsOf deletes the context index rows and member records of
// author's messages, and takes their bytes off the contexts' counts.
func (s *Badger) deleteCtxRowsOf(author feed.ID) error {
	var ctxs []feed.ID
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixCtxMember}})
		defer it.Close()
		for it.Seek([]byte{prefixCtxMember}); it.ValidForPrefix([]byte{prefixCtxMember}); it.Next() {
			k := it.Item().Key()
			if len(k) == pairKeyLen && bytes.Equal(k[1+idLen:], author[:]) {
				ctx, _ := keyID(k, 1)
				ctxs = append(ctxs, ctx)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.ctxMu.Lock()
	defer s.ctxMu.Unlock()
	for _, ctx := range ctxs {
		err := deleteKeys(s.db, idKey(prefixCtxMsg, ctx), func(item *badger.Item) (bool, error) {
			var mine bool
			err := item.Value(func(v []byte) error {
				mine = len(v) == ctxRefValLen && bytes.Equal(v[:idLen], author[:])
				return nil
			})
			return mine, err
		})
		if err != nil {
			return err
		}
		err = update(s.db, func(txn *badger.Txn) error {
			mk := pairKey(prefixCtxMember, ctx, author)
			var m CtxMember
			if err := readValue(txn, mk, func(v []byte) (err error) { m, err = decodeMember(author, v); return err }); err != nil {
				return err
			}
			if err := addCounter(txn, idKey(prefixCtxBytes, ctx), -int64(m.Bytes)); err != nil {
				return err
			}
			return txn.Delete(mk)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// keySuffix matches the keys that end with suffix.
func keySuffix(suffix []byte) func(item *badger.Item) (bool, error) {
	return func(item *badger.Item) (bool, error) { return bytes.HasSuffix(item.Key(), suffix), nil }
}

// deleteKeys deletes db's keys under prefix that match (every key if match
// is nil), at most badgerDeleteBatch per transaction.
func deleteKeys(db *badger.DB, prefix []byte, match func(item *badger.Item) (bool, error)) error {
	seek := prefix
	for {
		var keys [][]byte
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(seek); it.ValidForPrefix(prefix) && len(keys) < badgerDeleteBatch; it.Next() {
				item := it.Item()
				del := match == nil
				if !del {
					var err error
					if del, err = match(item); err != nil {
						return err
					}
				}
				if del {
					keys = append(keys, item.KeyCopy(nil))
				}
				seek = append(item.KeyCopy(nil), 0) // the next key after this one
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		err = update(db, func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
}

// finishDeletes completes the feed deletions a crash interrupted: those
// whose tombstone is still there. It runs in OpenBadger, before anything
// else uses the store, so it needs no stripe lock.
func (s *Badger) finishDeletes() error {
	var gone []feed.ID
	err := s.db.View(func(txn *badger.Txn) error {
		return scanIDs(txn, []byte{prefixFeedGone}, func(id feed.ID, _ []byte) error {
			gone = append(gone, id)
			return nil
		})
	})
	for _, id := range gone {
		if err != nil {
			break
		}
		err = s.deleteFeedLocked(id)
	}
	if err != nil {
		return fmt.Errorf("finish feed deletions: %w", err)
	}
	return nil
}

// Compact implements Bounds.
func (s *Badger) Compact() {
	if s.rlock() != nil {
		return
	}
	defer s.mu.RUnlock()
	collect(s.db)
	collect(s.blobs)
}

// Usage implements Bounds: the disk space of each database's files, the
// chunk files counting for blobs.
func (s *Badger) Usage() (Usage, error) {
	if err := s.rlock(); err != nil {
		return Usage{}, err
	}
	defer s.mu.RUnlock()
	main, err := dirUsage(s.dir)
	if err != nil {
		return Usage{}, fmt.Errorf("store: usage: %w", err)
	}
	blobs, err := dirUsage(filepath.Join(s.dir, blobsDir))
	if err != nil {
		return Usage{}, fmt.Errorf("store: usage: %w", err)
	}
	chunks, err := dirUsage(s.chunks.dir)
	if err != nil {
		return Usage{}, fmt.Errorf("store: usage: %w", err)
	}
	return Usage{Main: main, Blobs: blobs + chunks}, nil
}

// dirUsage returns the disk space the files directly in dir take.
// (Badger's own DB.Size counts only with its metrics on, which the store
// turns off.)
func dirUsage(dir string) (int64, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		fi, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile (a compaction, a flushed memtable)
		}
		if err != nil {
			return 0, err
		}
		n += allocated(fi)
	}
	return n, nil
}

// upgrade brings databases of an older layout (main and blobs: their
// versions) to schemaVersion: a main database of layout 2 gets its byte
// counts (countBytes); a blobs database of layout 3 or before has its
// chunks moved into chunk files (moveChunks). Each is synced before its
// new version is written, and that is synced too, so a crash during an
// upgrade leaves the old version, and the upgrade runs again.
func (s *Badger) upgrade(main, blobs byte) error {
	setVersion := func(txn *badger.Txn) error { return txn.Set([]byte{keySchema}, []byte{schemaVersion}) }
	// syncBlobs makes every write to the blobs database durable: DB.Sync
	// covers only the active memtable log (see Sync), and moving chunks
	// fills several.
	syncBlobs := func() error {
		if err := s.blobs.Sync(); err != nil {
			return err
		}
		_, err := syncLogs(filepath.Join(s.dir, blobsDir), logState{}, fsyncPath)
		return err
	}
	if main < schemaVersion {
		if main == 2 {
			if err := s.countBytes(); err != nil {
				return fmt.Errorf("upgrade layout %d: %w", main, err)
			}
			if err := s.sync(); err != nil {
				return err
			}
		}
		if err := update(s.db, setVersion); err != nil {
			return err
		}
		if err := s.sync(); err != nil {
			return err
		}
	}
	if blobs < schemaVersion {
		if err := s.moveChunks(); err != nil {
			return fmt.Errorf("upgrade layout %d: %w", blobs, err)
		}
		if err := syncBlobs(); err != nil {
			return err
		}
		if err := update(s.blobs, setVersion); err != nil {
			return err
		}
		return syncBlobs()
	}
	return nil
}

// countBytes writes the byte counts of every feed, context and context
// member from the stored entries.
func (s *Badger) countBytes() error {
	feeds := map[feed.ID]uint64{}
	members := map[[2]feed.ID]uint64{} // ctx, author
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte{prefixEntry}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			author, seq, err := decodeEntryKey(item.Key())
			if err != nil {
				return err
			}
			err = item.Value(func(v []byte) error {
				feeds[author] += uint64(len(v))
				// An entry that does not decode counts for its feed
				// only; `contextd doctor` reports it.
				if e, err := decodeEntry(author, seq, v); err == nil {
					if ctx, ok := ctxOf(e); ok {
						members[[2]feed.ID{ctx, author}] += uint64(len(v))
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for author, n := range feeds {
		if err := wb.Set(idKey(prefixFeedBytes, author), binary.BigEndian.AppendUint64(nil, n)); err != nil {
			return err
		}
	}
	totals := map[feed.ID]uint64{}
	err = s.db.View(func(txn *badger.Txn) error {
		for k, n := range members {
			ctx, author := k[0], k[1]
			var m CtxMember
			if err := readValue(txn, pairKey(prefixCtxMember, ctx, author), func(v []byte) (err error) {
				m, err = decodeMember(author, v)
				return err
			}); err != nil {
				if errors.Is(err, ErrNotFound) {
					continue // a message the index never took (written before it)
				}
				return err
			}
			m.Bytes = n
			totals[ctx] += n
			if err := wb.Set(pairKey(prefixCtxMember, ctx, author), encodeMember(m)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for ctx, n := range totals {
		if err := wb.Set(idKey(prefixCtxBytes, ctx), binary.BigEndian.AppendUint64(nil, n)); err != nil {
			return err
		}
	}
	return wb.Flush()
}
