package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
)

func TestBadgerObjects(t *testing.T) {
	testObjects(t, func(t *testing.T) Objects { return openBadger(t, t.TempDir()) })
}

// TestBadgerObjectsReopen checks that objects, chunks, hashes, pins, leases
// (also on objects not held) and the access order survive a reopen.
func TestBadgerObjectsReopen(t *testing.T) {
	dir := t.TempDir()
	a := newAuthor(t, 1)
	s := openBadger(t, dir)
	o := putObjects(t, s, 4)
	later := newTestObject(t, 10, 2*testChunk)
	if err := s.Pin(o[1].id); err != nil {
		t.Fatal(err)
	}
	lease(t, s, a, o[2].id, testNow.Add(time.Hour))
	lease(t, s, a, later.id, testNow.Add(time.Hour))
	if err := s.Touch(o[0].id); err != nil { // order: o[1] o[2] o[3] o[0]
		t.Fatal(err)
	}
	want := make([]ObjectStat, len(o))
	for i := range o {
		want[i] = mustStat(t, s, o[i].id)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBadger(t, dir)
	for i := range o {
		got := mustStat(t, s, o[i].id)
		w := want[i]
		if !sameInfo(got.Info, w.Info) || got.Held != w.Held || got.Bytes != w.Bytes || got.Pinned != w.Pinned || got.Access != w.Access || len(got.Leases) != len(w.Leases) {
			t.Fatalf("object %d after reopen: %+v, want %+v", i, got, w)
		}
		for h, until := range w.Leases {
			if !got.Leases[h].Equal(until) {
				t.Fatalf("object %d lease after reopen: %v, want %v", i, got.Leases[h], until)
			}
		}
		if c, err := s.AppendChunks(nil, o[i].id, 1, 1); err != nil || !bytes.Equal(c, o[i].chunk(t, 1)) {
			t.Fatalf("chunk after reopen: %v", err)
		}
		if h, err := s.GetHash(o[i].id, 1); err != nil || !bytes.Equal(h, o[i].tree.Node(1)) {
			t.Fatalf("hash after reopen: %v", err)
		}
	}
	// A new access after reopen is still the latest.
	if err := s.Touch(o[3].id); err != nil {
		t.Fatal(err)
	}
	mustEvict(t, s, testNow, 0, o[0], o[3])
	mustEvict(t, s, testNow.Add(time.Hour), 0, o[2])
	later.put(t, s)
	checkLeases(t, s, later.id, map[feed.ID]time.Time{a.id: testNow.Add(time.Hour)})
	mustEvict(t, s, testNow, 0)
	// The lapsed lease on the evicted o[2] is still on disk after a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir)
	o[2].put(t, s)
	checkLeases(t, s, o[2].id, map[feed.ID]time.Time{a.id: testNow.Add(time.Hour)})
}

// TestBadgerObjectsSweepOnOpen checks that an open finishes an eviction
// interrupted after its first transaction, leaving the object's leases.
func TestBadgerObjectsSweepOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	o := putObjects(t, s, 2)
	lease(t, s, newAuthor(t, 1), o[0].id, testNow)
	// Do the first step of an eviction of o[0] only.
	s = reopenWithout(t, s, dir, o[0].id, true)
	checkGone(t, s, o[0])
	if leases := countObjKeys(t, s, o[0].id); leases != 1 {
		t.Errorf("%d lease keys of the evicted object are left, want 1", leases)
	}
	if st := mustStat(t, s, o[1].id); !st.Complete() {
		t.Fatalf("the other object: %+v", st)
	}
}

// reopenWithout deletes the main records of object id (info and state;
// with a tombstone, as the first step of an eviction does, if tombstone is
// set), closes s and opens the store in dir again.
func reopenWithout(t *testing.T, s *Badger, dir string, id cid.Cid, tombstone bool) *Badger {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, k := range [][]byte{objKey(prefixObject, id, nil), objKey(prefixObjState, id, nil)} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		if tombstone {
			return txn.Set(objKey(prefixTombstone, id, nil), nil)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openBadger(t, dir)
}

// countObjKeys fails the test if any key of id but its leases is left in
// either database, or its chunk file, and returns how many lease keys
// there are.
func countObjKeys(t *testing.T, s *Badger, id cid.Cid) int {
	t.Helper()
	if _, err := os.Stat(s.chunks.path(id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the chunk file of the evicted object is left (%v)", err)
	}
	p := objKey(0, id, nil)[1:]
	leases := 0
	for _, db := range []*badger.DB{s.db, s.blobs} {
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().Key()
				switch {
				case len(k) <= 1 || !bytes.HasPrefix(k[1:], p):
				case k[0] == prefixLease && db == s.db:
					leases++
				default:
					t.Errorf("key %x of the evicted object is left", k)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return leases
}

// TestBadgerObjectsOrphanBlobs: blobs and the chunk file of an object
// with no record (their deletion was lost with the unsynced blobs
// database and files while the tombstone's was not), and files in the
// chunk directory that are no object's, are deleted on open and do not
// count for anything.
func TestBadgerObjectsOrphanBlobs(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	o := putObjects(t, s, 2)
	stray := []string{
		s.chunks.path(newTestObject(t, 9, testChunk).id), // an object never put
		filepath.Join(dir, chunksDir, "not-a-cid"),
	}
	for _, path := range stray {
		if err := os.WriteFile(path, []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Drop o[0]'s records from the main database only.
	s = reopenWithout(t, s, dir, o[0].id, false)
	checkGone(t, s, o[0])
	countObjKeys(t, s, o[0].id)
	for _, path := range stray {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is left after open (%v)", path, err)
		}
	}
	if st := mustStat(t, s, o[1].id); !st.Complete() || st.Bytes != int64(len(o[1].data)) {
		t.Fatalf("the other object: %+v", st)
	}
}

// TestBadgerObjectsTornChunk: chunks whose bytes in the chunk file no
// longer match their record (a power loss tore them, or took the file's
// tail or the whole file) read as ErrCorrupt, never as other bytes, and
// are then forgotten: no longer held, so a get fetches them again.
func TestBadgerObjectsTornChunk(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	o := newTestObject(t, 3, 3*testChunk)
	short := newTestObject(t, 4, 3*testChunk)
	lost := newTestObject(t, 5, 2*testChunk)
	for _, x := range []*testObject{o, short, lost} {
		x.put(t, s)
	}
	// Flip a byte of o's chunk 1, cut short's file after its chunk 0, and
	// delete lost's, the store open or not.
	tearChunk(t, s, o.id, testChunk+10)
	if err := os.Truncate(s.chunks.path(short.id), testChunk); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.chunks.path(lost.id)); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir)
	for _, tc := range []struct {
		o        *testObject
		torn     []uint64
		haveLeft byte
		run      bool // read the torn chunks in one run of the whole object
	}{
		{o, []uint64{1}, 0b101, true},
		{short, []uint64{1, 2}, 0b001, false},
		{lost, []uint64{0, 1}, 0, false},
	} {
		for _, i := range tc.torn {
			first, count := i, uint64(1)
			if tc.run {
				first, count = 0, tc.o.tree.Chunks()
			}
			if c, err := s.AppendChunks(nil, tc.o.id, first, count); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("AppendChunks of torn chunk %d (chunks %d+%d) = %d bytes, %v; want ErrCorrupt", i, first, count, len(c), err)
			}
		}
		st := mustStat(t, s, tc.o.id)
		if held := tc.o.tree.Chunks() - uint64(len(tc.torn)); st.Held != held {
			t.Fatalf("after the torn chunks were read: %+v, want %d held", st, held)
		}
		if have, err := s.Have(tc.o.id); err != nil || have[0] != tc.haveLeft {
			t.Fatalf("Have = %08b, %v; want %08b", have, err, tc.haveLeft)
		}
		for _, i := range tc.torn {
			if c, err := s.AppendChunks(nil, tc.o.id, i, 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("AppendChunks again = %d bytes, %v; want ErrNotFound", len(c), err)
			}
			if err := s.PutChunk(tc.o.id, i, tc.o.chunk(t, i)); err != nil {
				t.Fatal(err)
			}
		}
		if st := mustStat(t, s, tc.o.id); !st.Complete() || st.Bytes != int64(len(tc.o.data)) {
			t.Fatalf("after the chunks were put again: %+v", st)
		}
		checkReadBack(t, s, tc.o)
	}
}

// tearChunk flips the byte at off in object id's chunk file.
func tearChunk(t *testing.T, s *Badger, id cid.Cid, off int64) {
	t.Helper()
	f, err := os.OpenFile(s.chunks.path(id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// checkReadBack checks that every chunk of o reads back as put.
func checkReadBack(t *testing.T, s Objects, o *testObject) {
	t.Helper()
	var buf []byte
	for i := range o.tree.Chunks() {
		var err error
		if buf, err = s.AppendChunks(buf[:0], o.id, i, 1); err != nil || !bytes.Equal(buf, o.chunk(t, i)) {
			t.Fatalf("chunk %d of %s reads back as %d other bytes (%v)", i, o.id, len(buf), err)
		}
	}
}

// TestBadgerObjectsChunkFileHandles reads more objects than the store
// keeps chunk files open for, with each object's file dropped from the
// open set while a read of it may run.
func TestBadgerObjectsChunkFileHandles(t *testing.T) {
	s := openBadger(t, t.TempDir())
	objs := make([]*testObject, maxOpenChunkFiles+2)
	for i := range objs {
		objs[i] = newTestObject(t, uint64(200+i), testChunk+1)
		objs[i].put(t, s)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, o := range objs {
				checkReadBack(t, s, o)
			}
		})
	}
	wg.Wait()
	s.chunks.mu.Lock()
	open := len(s.chunks.open)
	s.chunks.mu.Unlock()
	if open != maxOpenChunkFiles {
		t.Fatalf("%d chunk files open, want %d", open, maxOpenChunkFiles)
	}
}

// TestBadgerObjectsManyChunks evicts an object of more chunks than one
// delete transaction takes.
func TestBadgerObjectsManyChunks(t *testing.T) {
	s := openBadger(t, t.TempDir())
	o := newTestObject(t, 9, (badgerDeleteBatch+3)*testChunk)
	o.put(t, s)
	mustEvict(t, s, testNow, 0, o)
	if have, err := s.Have(o.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Have after evict = %d bytes, %v", len(have), err)
	}
	countObjKeys(t, s, o.id)
	o.put(t, s)
	if st := mustStat(t, s, o.id); !st.Complete() || st.Bytes != int64(len(o.data)) {
		t.Fatalf("object put again: %+v", st)
	}
}

// FuzzDecodeObjectRecords feeds arbitrary bytes to the decoders of stored
// object records: they must report ErrCorrupt, never panic, and what they
// accept must re-encode to the same bytes.
func FuzzDecodeObjectRecords(f *testing.F) {
	o := newTestObject(f, 1, 3*testChunk)
	f.Add(encodeInfo(o.tree.Info()), 0)
	f.Add(encodeState(objState{access: 9, pinned: true}), 0)
	f.Add(objKey(prefixObject, o.id, nil), 0)
	f.Add(objKeyU64(prefixChunkSum, o.id, 7), 8)
	f.Add(objKey(prefixLease, o.id, make([]byte, idLen)), idLen)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, suffixLen int) {
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: %v does not wrap ErrCorrupt", what, err)
			}
		}
		if info, err := decodeInfo(b); err == nil {
			if !bytes.Equal(encodeInfo(info), b) {
				t.Fatalf("info does not round trip")
			}
			if info.Chunks() == 0 || info.Chunks() > MaxObjectChunks || len(info.Root) != info.Hash.Size() {
				t.Fatalf("decodeInfo accepted %+v", info)
			}
		} else {
			check("decodeInfo", err)
		}
		if st, err := decodeState(b); err == nil {
			if !bytes.Equal(encodeState(st), b) {
				t.Fatalf("state does not round trip")
			}
		} else {
			check("decodeState", err)
		}
		if until, err := decodeLease(b); err == nil {
			if until == 0 || !bytes.Equal(encodeNote(until), b) {
				t.Fatalf("decodeLease accepted %x as %d", b, until)
			}
		} else {
			check("decodeLease", err)
		}
		if suffixLen < 0 || suffixLen > 64 {
			return
		}
		if id, suffix, err := decodeObjKey(b, suffixLen); err == nil {
			if !bytes.Equal(objKey(b[0], id, suffix), b) {
				t.Fatalf("object key does not round trip")
			}
		} else {
			check("decodeObjKey", err)
		}
	})
}

// TestBadgerMoveChunks opens a store of layout 3, chunks in the blobs
// database: one object's chunks all there (more than one batch moves),
// one's half moved already (an upgrade a crash interrupted), one chunk
// torn (read back short) and the chunks of an object without a record.
// Open moves them into chunk files, drops the torn and orphan ones, and
// a second open finds nothing to move.
func TestBadgerMoveChunks(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	whole := newTestObject(t, 1, (MaxPutChunks+44)*testChunk+7)
	half := newTestObject(t, 2, 40*testChunk)
	orphan := newTestObject(t, 3, 3*testChunk)
	for _, o := range []*testObject{whole, half, orphan} {
		o.put(t, s)
	}
	const torn = 5
	toLayout3(t, s, whole, 0, func(i uint64, c []byte) []byte {
		if i == torn {
			return c[:len(c)-1]
		}
		return c
	})
	toLayout3(t, s, half, 20, nil)
	toLayout3(t, s, orphan, 0, nil)
	for _, db := range []*badger.DB{s.db, s.blobs} {
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte{keySchema}, []byte{3}) }); err != nil {
			t.Fatal(err)
		}
	}
	s = reopenWithout(t, s, dir, orphan.id, false)

	for round := range 2 {
		checkGone(t, s, orphan)
		countObjKeys(t, s, orphan.id)
		// The torn chunk is dropped, then put again.
		if st, want := mustStat(t, s, whole.id), whole.tree.Chunks()-uint64(1-round); st.Held != want {
			t.Fatalf("round %d: %d chunks of %d held, want %d", round, st.Held, whole.tree.Chunks(), want)
		}
		if round == 0 {
			if err := s.PutChunk(whole.id, torn, whole.chunk(t, torn)); err != nil {
				t.Fatal(err)
			}
		}
		checkReadBack(t, s, whole)
		checkReadBack(t, s, half)
		for _, db := range []*badger.DB{s.db, s.blobs} {
			err := db.View(func(txn *badger.Txn) error {
				if err := readSchema(txn); err != nil {
					return err
				}
				it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixChunkV3}})
				defer it.Close()
				if it.Rewind(); it.Valid() {
					t.Errorf("round %d: layout 3 key %x is left", round, it.Item().Key())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openBadger(t, dir)
	}
}

// toLayout3 writes the chunks of o from index from on the way layout 3
// did, into the blobs database under prefixChunkV3 (as alter returns
// them, if not nil), deleting their records, and deletes o's chunk file
// if from is 0.
func toLayout3(t *testing.T, s *Badger, o *testObject, from uint64, alter func(i uint64, c []byte) []byte) {
	t.Helper()
	wb := s.blobs.NewWriteBatch()
	defer wb.Cancel()
	for i := from; i < o.tree.Chunks(); i++ {
		c := o.chunk(t, i)
		if alter != nil {
			c = alter(i, c)
		}
		if err := wb.Set(objKeyU64(prefixChunkV3, o.id, i), c); err != nil {
			t.Fatal(err)
		}
		if err := wb.Delete(objKeyU64(prefixChunkSum, o.id, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if from == 0 {
		if err := s.chunks.remove(o.id); err != nil {
			t.Fatal(err)
		}
	}
}
