package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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
		if c, err := s.AppendChunk(nil, o[i].id, 1); err != nil || !bytes.Equal(c, o[i].chunk(t, 1)) {
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
// either database, and returns how many lease keys there are.
func countObjKeys(t *testing.T, s *Badger, id cid.Cid) int {
	t.Helper()
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

// TestBadgerObjectsOrphanBlobs: blobs of an object with no record (their
// deletion was lost with the unsynced blobs database while the tombstone's
// was not) are deleted on open and do not count for anything.
func TestBadgerObjectsOrphanBlobs(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	o := putObjects(t, s, 2)
	// Drop o[0]'s records from the main database only.
	s = reopenWithout(t, s, dir, o[0].id, false)
	checkGone(t, s, o[0])
	countObjKeys(t, s, o[0].id)
	if st := mustStat(t, s, o[1].id); !st.Complete() || st.Bytes != int64(len(o[1].data)) {
		t.Fatalf("the other object: %+v", st)
	}
}

// TestBadgerObjectsTornChunk: a chunk whose bytes in the blobs value log
// no longer match their checksum (a power loss tore them) reads as
// ErrCorrupt, never as other bytes, and is then forgotten: no longer held,
// so a get fetches it again.
func TestBadgerObjectsTornChunk(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	o := newTestObject(t, 3, 3*testChunk)
	o.put(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Flip a byte of chunk 1 where the value log holds it.
	chunk := o.data[testChunk : 2*testChunk]
	vlogs, err := filepath.Glob(filepath.Join(dir, blobsDir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	torn := false
	for _, path := range vlogs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, chunk); i >= 0 {
			b[i+10] ^= 0xff
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			torn = true
		}
	}
	if !torn {
		t.Fatal("chunk 1 not found in the blobs value log")
	}
	s = openBadger(t, dir)
	if c, err := s.AppendChunk(nil, o.id, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("AppendChunk of the torn chunk = %d bytes, %v; want ErrCorrupt", len(c), err)
	}
	st := mustStat(t, s, o.id)
	if st.Held != 2 || st.Bytes != int64(2*testChunk) {
		t.Fatalf("after the torn chunk was read: %+v", st)
	}
	if have, err := s.Have(o.id); err != nil || have[0] != 0b101 {
		t.Fatalf("Have = %08b, %v; want chunk 1 gone", have, err)
	}
	if c, err := s.AppendChunk(nil, o.id, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AppendChunk again = %d bytes, %v; want ErrNotFound", len(c), err)
	}
	if err := s.PutChunk(o.id, 1, chunk); err != nil {
		t.Fatal(err)
	}
	if st := mustStat(t, s, o.id); !st.Complete() {
		t.Fatalf("after the chunk was put again: %+v", st)
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
	f.Add(objKeyU64(prefixChunk, o.id, 7), 8)
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
