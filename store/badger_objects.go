package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// badgerDeleteBatch is the most keys one transaction deletes when an
// object is swept: about 150 bytes each against Badger's budget
// (badgerMaxTxnBytes), far below it.
const badgerDeleteBatch = 1024

// badgerObjects is Badger's object index, rebuilt from the o, s and l keys
// on open. Its leases are those on the objects it indexes: a lease on
// another object stays on disk only, and is read when the object is put.
type badgerObjects struct {
	// mu guards index and serialises every object write (the read-check-
	// write of a state record, deletions) and Append's writes of lease
	// keys. It is taken after Badger.mu and after a stripe lock, never
	// before.
	mu    sync.Mutex
	index objIndex
}

var _ Objects = (*Badger)(nil)

// Object record encodings.
const (
	objInfoFixed = 8 + 4 + 8 // hash code, chunk size, size; the root follows
	objStateLen  = 8 + 1     // access, pinned
)

// objKey is an object key: prefix, ID length, ID bytes, then suffix.
func objKey(prefix byte, id cid.Cid, suffix []byte) []byte {
	k := make([]byte, 0, 2+id.ByteLen()+len(suffix))
	k = append(k, prefix, byte(id.ByteLen()))
	k = append(k, id.KeyString()...)
	return append(k, suffix...)
}

// objKeyU64 is an object key with an 8-byte big-endian suffix: a chunk
// index or a bin.
func objKeyU64(prefix byte, id cid.Cid, n uint64) []byte {
	return objKey(prefix, id, binary.BigEndian.AppendUint64(nil, n))
}

// decodeObjKey splits an object key into its ID and suffix.
func decodeObjKey(k []byte, suffixLen int) (cid.Cid, []byte, error) {
	if len(k) < 2 || int(k[1]) > MaxObjectIDLen || len(k) != 2+int(k[1])+suffixLen {
		return cid.Undef, nil, fmt.Errorf("%w: object key %x", ErrCorrupt, k)
	}
	n, id, err := cid.CidFromBytes(k[2 : 2+int(k[1])])
	if err != nil || n != int(k[1]) {
		return cid.Undef, nil, fmt.Errorf("%w: object key %x", ErrCorrupt, k)
	}
	return id, k[2+n:], nil
}

func encodeInfo(info object.Info) []byte {
	v := make([]byte, 0, objInfoFixed+len(info.Root))
	v = binary.BigEndian.AppendUint64(v, uint64(info.Hash))
	v = binary.BigEndian.AppendUint32(v, uint32(info.ChunkSize))
	v = binary.BigEndian.AppendUint64(v, uint64(info.Size))
	return append(v, info.Root...)
}

func decodeInfo(v []byte) (object.Info, error) {
	if len(v) < objInfoFixed {
		return object.Info{}, fmt.Errorf("%w: object info of %d bytes", ErrCorrupt, len(v))
	}
	info := object.Info{
		Hash:      object.Hash(binary.BigEndian.Uint64(v)),
		ChunkSize: int(binary.BigEndian.Uint32(v[8:])),
		Size:      int64(binary.BigEndian.Uint64(v[12:])),
		Root:      bytes.Clone(v[objInfoFixed:]),
	}
	if err := checkInfo(info); err != nil {
		return object.Info{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return info, nil
}

// objState is the stored mutable part of an object's index entry; the
// chunks held (and their bytes) are counted from the blobs database on
// open.
type objState struct {
	access uint64
	pinned bool
}

func stateOf(m *objMeta) objState {
	return objState{access: m.access, pinned: m.pinned}
}

func encodeState(s objState) []byte {
	v := make([]byte, 0, objStateLen)
	v = binary.BigEndian.AppendUint64(v, s.access)
	if s.pinned {
		return append(v, 1)
	}
	return append(v, 0)
}

func decodeState(v []byte) (objState, error) {
	if len(v) != objStateLen || v[8] > 1 {
		return objState{}, fmt.Errorf("%w: object state %x", ErrCorrupt, v)
	}
	return objState{access: binary.BigEndian.Uint64(v), pinned: v[8] == 1}, nil
}

// loadObjects finishes interrupted deletions and rebuilds the object index.
func (s *Badger) loadObjects() error {
	var dead []cid.Cid
	err := s.db.View(func(txn *badger.Txn) error {
		return scanObjKeys(txn, []byte{prefixTombstone}, 0, func(id cid.Cid, _ []byte, _ []byte) error {
			dead = append(dead, id)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load objects: %w", err)
	}
	for _, id := range dead {
		if err := s.sweepObject(id); err != nil {
			return fmt.Errorf("load objects: %w", err)
		}
	}
	x := &s.objs.index
	err = s.db.View(func(txn *badger.Txn) error {
		err := scanObjKeys(txn, []byte{prefixObject}, 0, func(id cid.Cid, _, v []byte) error {
			info, err := decodeInfo(v)
			if err == nil && !info.ID().Equals(id) {
				err = fmt.Errorf("%w: info of %s under %s", ErrCorrupt, info.ID(), id)
			}
			if err != nil {
				return err
			}
			x.add(&objMeta{id: id, info: info})
			return nil
		})
		if err != nil {
			return err
		}
		err = scanObjKeys(txn, []byte{prefixObjState}, 0, func(id cid.Cid, _, v []byte) error {
			st, err := decodeState(v)
			if err != nil {
				return err
			}
			m := x.objs[id.KeyString()]
			if m == nil {
				return fmt.Errorf("%w: state of unknown object %s", ErrCorrupt, id)
			}
			m.pinned = st.pinned
			x.setAccess(m, st.access)
			return nil
		})
		if err != nil {
			return err
		}
		return scanObjKeys(txn, []byte{prefixLease}, idLen, func(id cid.Cid, author, v []byte) error {
			if x.objs[id.KeyString()] == nil {
				return nil // a lease on an object not held
			}
			until, err := decodeLease(v)
			if err != nil {
				return err
			}
			x.setLease(id.KeyString(), feed.ID(author), until)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("load objects: %w", err)
	}
	for _, m := range x.objs {
		if m.access == 0 {
			return fmt.Errorf("load objects: %w: object %s has no state", ErrCorrupt, m.id)
		}
	}
	if err := s.countBlobs(); err != nil {
		return fmt.Errorf("load objects: %w", err)
	}
	return nil
}

// countBlobs counts each indexed object's chunks (and their bytes) from
// their records in the blobs database, and deletes the blobs and chunk
// files of objects that are not indexed: those whose deletion a crash
// interrupted after its tombstone was gone (neither the blobs database
// nor the chunk files are synced, so deletions there may be lost).
func (s *Badger) countBlobs() error {
	x := &s.objs.index
	orphans := map[string]cid.Cid{}
	err := s.blobs.View(func(txn *badger.Txn) error {
		for _, prefix := range []byte{prefixChunkSum, prefixTreeHash} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
			for it.Seek([]byte{prefix}); it.ValidForPrefix([]byte{prefix}); it.Next() {
				id, suffix, err := decodeObjKey(it.Item().Key(), 8)
				if err != nil {
					it.Close()
					return err
				}
				m := x.objs[id.KeyString()]
				if m == nil {
					orphans[id.KeyString()] = id
					continue
				}
				if prefix != prefixChunkSum {
					continue
				}
				n, err := chunkLen(m.info, binary.BigEndian.Uint64(suffix))
				if err != nil {
					it.Close()
					return fmt.Errorf("%w: %w", ErrCorrupt, err)
				}
				m.held++
				m.bytes += int64(n)
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range orphans {
		if err := s.deleteBlobs(id); err != nil {
			return err
		}
	}
	return s.chunks.removeOrphans(func(id cid.Cid) bool { return x.objs[id.KeyString()] != nil })
}

// scanObjKeys calls fn with the ID, suffix and value of every object key
// under p (a prefix byte, or one object's keys of a prefix) whose suffix
// is suffixLen bytes long.
func scanObjKeys(txn *badger.Txn, p []byte, suffixLen int, fn func(id cid.Cid, suffix, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: p})
	defer it.Close()
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		item := it.Item()
		id, suffix, err := decodeObjKey(item.Key(), suffixLen)
		if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return fn(id, suffix, v) }); err != nil {
			return err
		}
	}
	return nil
}

// decodeLease decodes a stored lease end: Unix nanoseconds, never 0 (an
// ended lease is deleted).
func decodeLease(v []byte) (int64, error) {
	until, err := decodeNote(v)
	if err == nil && until == 0 {
		err = fmt.Errorf("%w: lease ending at 0", ErrCorrupt)
	}
	return until, err
}

// readLeases returns the stored leases on id: author → until.
func readLeases(txn *badger.Txn, id cid.Cid) (map[feed.ID]int64, error) {
	var out map[feed.ID]int64
	err := scanObjKeys(txn, objKey(prefixLease, id, nil), idLen, func(_ cid.Cid, author, v []byte) error {
		until, err := decodeLease(v)
		if err != nil {
			return err
		}
		if out == nil {
			out = make(map[feed.ID]int64)
		}
		out[feed.ID(author)] = until
		return nil
	})
	return out, err
}

// lockObjects takes s.mu for reading and the object lock; on success the
// caller must call s.unlockObjects.
func (s *Badger) lockObjects() error {
	if err := s.rlock(); err != nil {
		return err
	}
	s.objs.mu.Lock()
	return nil
}

func (s *Badger) unlockObjects() {
	s.objs.mu.Unlock()
	s.mu.RUnlock()
}

// withObject runs fn on the index entry of id under the object lock.
func (s *Badger) withObject(id cid.Cid, fn func(m *objMeta) error) error {
	if err := s.lockObjects(); err != nil {
		return err
	}
	defer s.unlockObjects()
	m, err := s.objs.index.get(id)
	if err != nil {
		return err
	}
	return fn(m)
}

// objErr wraps an error of an object operation, leaving the sentinels
// callers compare with == bare.
func objErr(err error, op string, id cid.Cid) error {
	if err == nil || errors.Is(err, ErrClosed) || err == ErrNotFound {
		return err
	}
	return fmt.Errorf("store: %s %s: %w", op, id, err)
}

// update runs fn in a write transaction of db (s.db or s.blobs) and
// commits it.
func update(db *badger.DB, fn func(txn *badger.Txn) error) error {
	txn := db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	return txn.Commit()
}

// updateDurable is update of the main database followed by a sync, for
// the object records that must not go back in time (OpenBadger).
func (s *Badger) updateDurable(fn func(txn *badger.Txn) error) error {
	if err := update(s.db, fn); err != nil {
		return err
	}
	return s.sync()
}

// PutObject implements Objects.
func (s *Badger) PutObject(id cid.Cid, info object.Info) error {
	if err := checkPutObject(id, info); err != nil {
		return fmt.Errorf("store: put object: %w", err)
	}
	if err := s.lockObjects(); err != nil {
		return err
	}
	defer s.unlockObjects()
	x := &s.objs.index
	if m, err := x.get(id); err == nil {
		if !sameInfo(m.info, info) {
			return objErr(ErrObjectConflict, "put object", id)
		}
		return objErr(s.touchLocked(m), "put object", id)
	}
	// A deletion that failed half-way leaves a tombstone: finish it first.
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(objKey(prefixTombstone, id, nil))
		return err
	})
	if err == nil {
		err = s.sweepObject(id)
	} else if errors.Is(err, badger.ErrKeyNotFound) {
		err = nil
	}
	if err != nil {
		return objErr(err, "put object", id)
	}
	info.Root = bytes.Clone(info.Root)
	m := &objMeta{id: id, info: info, access: x.next(nil)}
	var leases map[feed.ID]int64 // leases that came before the object
	err = s.updateDurable(func(txn *badger.Txn) error {
		var err error
		if leases, err = readLeases(txn, id); err != nil {
			return err
		}
		if err := txn.Set(objKey(prefixObject, id, nil), encodeInfo(info)); err != nil {
			return err
		}
		return txn.Set(objKey(prefixObjState, id, nil), encodeState(stateOf(m)))
	})
	if err != nil {
		return objErr(err, "put object", id)
	}
	x.add(m)
	for author, until := range leases {
		x.setLease(id.KeyString(), author, until)
	}
	return nil
}

// touchLocked makes m the most recently used object, writing its state if
// that changes it. s.objs.mu must be held.
func (s *Badger) touchLocked(m *objMeta) error {
	x := &s.objs.index
	access := x.next(m)
	if access == m.access {
		return nil
	}
	st := stateOf(m)
	st.access = access
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(objKey(prefixObjState, m.id, nil), encodeState(st))
	}); err != nil {
		return err
	}
	x.setAccess(m, access)
	return nil
}

// Object implements Objects.
func (s *Badger) Object(id cid.Cid) (ObjectStat, error) {
	var st ObjectStat
	err := s.withObject(id, func(m *objMeta) error {
		st = s.objs.index.stat(m)
		return nil
	})
	return st, objErr(err, "object", id)
}

// ObjectIDs implements Objects.
func (s *Badger) ObjectIDs() ([]cid.Cid, error) {
	if err := s.lockObjects(); err != nil {
		return nil, err
	}
	defer s.unlockObjects()
	return s.objs.index.ids(), nil
}

// PutChunk implements Objects.
func (s *Badger) PutChunk(id cid.Cid, index uint64, data []byte) error {
	return objErr(s.putChunks(id, []object.Chunk{{Index: index, Data: data}}), "put chunk", id)
}

// PutChunks implements Objects. The chunks are one transaction of the
// blobs database; the access order moves in the main one.
func (s *Badger) PutChunks(id cid.Cid, chunks []object.Chunk) error {
	return objErr(s.putChunks(id, chunks), "put chunks", id)
}

func (s *Badger) putChunks(id cid.Cid, chunks []object.Chunk) error {
	return s.withObject(id, func(m *objMeta) error {
		if err := checkChunks(m.info, chunks); err != nil {
			return err
		}
		txn := s.blobs.NewTransaction(true)
		defer txn.Discard()
		var f *chunkFile
		held, bytes := m.held, m.bytes
		for _, c := range chunks {
			key := objKeyU64(prefixChunkSum, id, c.Index)
			if _, err := txn.Get(key); err == nil {
				continue // held, or earlier in chunks
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			if f == nil {
				var err error
				if f, err = s.chunks.acquire(id, true); err != nil {
					return err
				}
				defer s.chunks.release(f, true)
			}
			// The bytes are in the file before their record commits.
			if _, err := f.WriteAt(c.Data, int64(c.Index)*int64(m.info.ChunkSize)); err != nil {
				return err
			}
			if err := txn.Set(key, chunkSum(c.Data)); err != nil {
				return err
			}
			held++
			bytes += int64(len(c.Data))
		}
		if held == m.held {
			return nil
		}
		if err := txn.Commit(); err != nil {
			return err
		}
		m.held, m.bytes = held, bytes
		return s.touchLocked(m)
	})
}

// AppendChunks implements Objects.
func (s *Badger) AppendChunks(dst []byte, id cid.Cid, first, count uint64) ([]byte, error) {
	out, err := s.readChunks(dst, id, first, count)
	var bad *badChunk
	if errors.As(err, &bad) {
		// Forget the chunk, so that a get fetches it again.
		if ferr := s.forgetChunk(id, bad.index); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}
	if err != nil {
		return dst, objErr(err, "get chunks", id)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// badChunk is the ErrCorrupt of a chunk that reads back wrong.
type badChunk struct {
	index uint64
	err   error
}

func (e *badChunk) Error() string { return e.err.Error() }
func (e *badChunk) Unwrap() error { return e.err }

// readChunks appends held chunks first to first+count-1 of object id to
// dst, read from the object's chunk file in one read and each checked
// against its record: bytes that do not match it (torn by a power loss:
// the file is not synced) or a missing file are a *badChunk (the first
// chunk found bad) wrapping ErrCorrupt; a chunk not held, or past the
// end, is ErrNotFound.
func (s *Badger) readChunks(dst []byte, id cid.Cid, first, count uint64) ([]byte, error) {
	if err := checkObjectID(id); err != nil {
		return dst, err
	}
	if count == 0 || count > MaxPutChunks {
		return dst, fmt.Errorf("%w: read of %d chunks (1 to %d)", ErrBadObject, count, MaxPutChunks)
	}
	if err := s.rlock(); err != nil {
		return dst, err
	}
	defer s.mu.RUnlock()
	var (
		info object.Info
		sums = make([][]byte, 0, count)
		f    *chunkFile
	)
	// The file is opened under the object lock, so that it is the held
	// object's, not one a concurrent deletion removed.
	s.objs.mu.Lock()
	err := func() error {
		m, err := s.objs.index.get(id)
		if err != nil {
			return err
		}
		info = m.info
		if first >= info.Chunks() || count > info.Chunks()-first {
			return ErrNotFound // no such chunks
		}
		err = s.blobs.View(func(txn *badger.Txn) error {
			return runSums(txn, id, first, count, func(_ uint64, sum []byte) error {
				if sum == nil {
					return ErrNotFound
				}
				sums = append(sums, bytes.Clone(sum))
				return nil
			})
		})
		if err != nil {
			return err
		}
		f, err = s.chunks.acquire(id, false)
		if errors.Is(err, fs.ErrNotExist) {
			return &badChunk{first, fmt.Errorf("%w: chunk %d is recorded but the object's chunk file is missing", ErrCorrupt, first)}
		}
		return err
	}()
	s.objs.mu.Unlock()
	if err != nil {
		return dst, err
	}
	defer s.chunks.release(f, false)
	off := int64(first) * int64(info.ChunkSize)
	end := min(int64(first+count)*int64(info.ChunkSize), info.Size)
	n := int(end - off)
	out := slices.Grow(dst, n)[:len(dst)+n]
	if k, err := f.ReadAt(out[len(dst):], off); err != nil {
		if errors.Is(err, io.EOF) {
			i := first + uint64(k/info.ChunkSize)
			err = &badChunk{i, fmt.Errorf("%w: chunk %d is past the end of the object's chunk file", ErrCorrupt, i)}
		}
		return dst, err
	}
	data := out[len(dst):]
	for k, sum := range sums {
		i := first + uint64(k)
		c := data[min(len(data), k*info.ChunkSize):min(len(data), (k+1)*info.ChunkSize)]
		if err := checkChunkSum(sum, c, i); err != nil {
			return dst, &badChunk{i, err}
		}
	}
	return out, nil
}

// runSums calls fn with the record of each chunk first to first+count-1
// of object id, in order (nil for a chunk not held), from one iterator: a
// run's records are consecutive keys. fn may keep sum only until it
// returns.
func runSums(txn *badger.Txn, id cid.Cid, first, count uint64, fn func(index uint64, sum []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: objKey(prefixChunkSum, id, nil)})
	defer it.Close()
	it.Seek(objKeyU64(prefixChunkSum, id, first))
	for i := first; i < first+count; i++ {
		if !it.Valid() || !bytes.Equal(it.Item().Key(), objKeyU64(prefixChunkSum, id, i)) {
			if err := fn(i, nil); err != nil {
				return err
			}
			continue
		}
		err := it.Item().Value(func(v []byte) error {
			if v == nil {
				v = []byte{} // a record that reads as empty: torn
			}
			return fn(i, v)
		})
		if err != nil {
			return err
		}
		it.Next()
	}
	return nil
}

// readBlob returns the value of key, a blobs key of object id, whose
// length want derives from the object's info. Badger reads a value it
// cannot read (torn by a power loss: the blobs database is not synced) as
// empty and only logs the error, so the length is checked: another one is
// ErrCorrupt.
func (s *Badger) readBlob(id cid.Cid, key []byte, want func(object.Info) (int, error)) ([]byte, error) {
	if err := checkObjectID(id); err != nil {
		return nil, err
	}
	var n int
	err := s.withObject(id, func(m *objMeta) error {
		var err error
		n, err = want(m.info)
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []byte
	err = s.viewBlobs(func(txn *badger.Txn) error {
		return readValue(txn, key, func(v []byte) error {
			if len(v) != n {
				return fmt.Errorf("%w: key %x reads as %d bytes, want %d", ErrCorrupt, key, len(v), n)
			}
			out = bytes.Clone(v)
			return nil
		})
	})
	return out, err
}

// forgetChunk deletes an unreadable chunk's record and counts it no
// longer held.
func (s *Badger) forgetChunk(id cid.Cid, index uint64) error {
	key := objKeyU64(prefixChunkSum, id, index)
	return s.withObject(id, func(m *objMeta) error {
		gone := false
		err := update(s.blobs, func(txn *badger.Txn) error {
			if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
				gone = true // forgotten already
				return nil
			}
			return txn.Delete(key)
		})
		if err != nil || gone {
			return err
		}
		n, err := chunkLen(m.info, index)
		if err != nil {
			return err
		}
		m.held--
		m.bytes -= int64(n)
		return nil
	})
}

// Have implements Objects. It reads the chunk keys only.
func (s *Badger) Have(id cid.Cid) ([]byte, error) {
	var chunks uint64
	err := s.withObject(id, func(m *objMeta) error {
		chunks = m.info.Chunks()
		return nil
	})
	if err != nil {
		return nil, objErr(err, "have", id)
	}
	bits := make([]byte, (chunks+7)/8)
	err = s.viewBlobs(func(txn *badger.Txn) error {
		p := objKey(prefixChunkSum, id, nil)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		defer it.Close()
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			k := it.Item().Key()
			if len(k) != len(p)+8 {
				return fmt.Errorf("%w: chunk key %x", ErrCorrupt, k)
			}
			i := binary.BigEndian.Uint64(k[len(p):])
			if i >= chunks {
				return fmt.Errorf("%w: chunk %d of %d", ErrCorrupt, i, chunks)
			}
			bits[i/8] |= 1 << (i % 8)
		}
		return nil
	})
	if err != nil {
		return nil, objErr(err, "have", id)
	}
	return bits, nil
}

// PutHashes implements Objects.
func (s *Badger) PutHashes(id cid.Cid, hashes map[object.Bin][]byte) error {
	err := s.withObject(id, func(m *objMeta) error {
		if err := checkHashes(m.info, hashes); err != nil {
			return err
		}
		if len(hashes) == 0 {
			return nil
		}
		return update(s.blobs, func(txn *badger.Txn) error {
			for b, h := range hashes {
				if err := txn.Set(objKeyU64(prefixTreeHash, id, uint64(b)), h); err != nil {
					return err
				}
			}
			return nil
		})
	})
	return objErr(err, "put hashes", id)
}

// GetHash implements Objects.
func (s *Badger) GetHash(id cid.Cid, bin object.Bin) ([]byte, error) {
	h, err := s.readBlob(id, objKeyU64(prefixTreeHash, id, uint64(bin)), func(info object.Info) (int, error) {
		return info.Hash.Size(), nil
	})
	if err != nil {
		return nil, objErr(err, "get hash", id)
	}
	return h, nil
}

// Pin implements Objects.
func (s *Badger) Pin(id cid.Cid) error { return objErr(s.setPinned(id, true), "pin", id) }

// Unpin implements Objects.
func (s *Badger) Unpin(id cid.Cid) error { return objErr(s.setPinned(id, false), "unpin", id) }

func (s *Badger) setPinned(id cid.Cid, pinned bool) error {
	return s.withObject(id, func(m *objMeta) error {
		if m.pinned == pinned {
			return nil
		}
		st := stateOf(m)
		st.pinned = pinned
		if err := s.updateDurable(func(txn *badger.Txn) error {
			return txn.Set(objKey(prefixObjState, id, nil), encodeState(st))
		}); err != nil {
			return err
		}
		m.pinned = pinned
		return nil
	})
}

// Touch implements Objects. It writes only when the object is not already
// the most recently used one.
func (s *Badger) Touch(id cid.Cid) error {
	return objErr(s.withObject(id, s.touchLocked), "touch", id)
}

// Evict implements Objects. Each object goes in three steps: one
// transaction drops its info and state and leaves a tombstone, bounded
// transactions delete its chunk records and hashes and then its chunk
// file goes, and a last one drops the tombstone; an open after a crash
// finishes the sweep. The object's lease keys stay.
func (s *Badger) Evict(now time.Time, cacheBytes int64, inUse func(cid.Cid) bool) ([]cid.Cid, error) {
	if err := s.rlock(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	return s.evict(now, cacheBytes, inUse)
}

// collect rewrites a few of db's value log files that are mostly garbage
// (deleted entries, or chunks a layout upgrade moved out), so that their
// space goes back to the disk; it stops at the first that is not
// (badger.ErrNoRewrite) or after four.
func collect(db *badger.DB) {
	for range 4 {
		if db.RunValueLogGC(0.5) != nil {
			return
		}
	}
}

// Delete implements Objects, in the steps of Evict.
func (s *Badger) Delete(id cid.Cid) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	s.objs.mu.Lock()
	m, err := s.objs.index.get(id)
	if err == nil {
		err = s.deleteObjectLocked(m)
	}
	s.objs.mu.Unlock()
	return objErr(err, "delete", id)
}

func (s *Badger) evict(now time.Time, cacheBytes int64, inUse func(cid.Cid) bool) ([]cid.Cid, error) {
	s.objs.mu.Lock()
	defer s.objs.mu.Unlock()
	x := &s.objs.index
	var out []cid.Cid
	for _, m := range x.victims(now, cacheBytes, inUse) {
		err := s.deleteObjectLocked(m)
		if err == nil || x.objs[m.id.KeyString()] == nil {
			out = append(out, m.id)
		}
		if err != nil {
			return out, fmt.Errorf("store: evict %s: %w", m.id, err)
		}
	}
	return out, nil
}

// deleteObjectLocked deletes the object m: its info and state with a
// tombstone in one durable transaction, then its blobs and the tombstone
// (sweepObject). Its lease keys stay. s.objs.mu must be held.
func (s *Badger) deleteObjectLocked(m *objMeta) error {
	x := &s.objs.index
	// The tombstone is durable before any blob goes.
	err := s.updateDurable(func(txn *badger.Txn) error {
		if err := txn.Delete(objKey(prefixObject, m.id, nil)); err != nil {
			return err
		}
		if err := txn.Delete(objKey(prefixObjState, m.id, nil)); err != nil {
			return err
		}
		return txn.Set(objKey(prefixTombstone, m.id, nil), nil)
	})
	if err != nil {
		return err
	}
	delete(x.objs, m.id.KeyString())
	delete(x.leases, m.id.KeyString()) // on disk only from now on
	return s.sweepObject(m.id)
}

// sweepObject deletes the blobs of id, then its tombstone.
func (s *Badger) sweepObject(id cid.Cid) error {
	if err := s.deleteBlobs(id); err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(objKey(prefixTombstone, id, nil))
	})
}

// deleteBlobs deletes every chunk record and hash key of id from the
// blobs database, at most badgerDeleteBatch per transaction, then its
// chunk file.
func (s *Badger) deleteBlobs(id cid.Cid) error {
	for _, prefix := range []byte{prefixChunkSum, prefixTreeHash} {
		if err := deleteKeys(s.blobs, objKey(prefix, id, nil), nil); err != nil {
			return err
		}
	}
	return s.chunks.remove(id)
}
