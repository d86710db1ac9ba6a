package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/contextd/contextd/feed"
)

// rawKeys returns every key of the main database and, for the context
// index keys, their values.
func rawKeys(t *testing.T, s *Badger) (keys [][]byte, ctxVals [][]byte) {
	t.Helper()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			keys = append(keys, k)
			if k[0] == prefixCtxMsg {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				ctxVals = append(ctxVals, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, ctxVals
}

// checkNoKeys checks that the main database holds no key of id's feed:
// the only keys naming id left may be other authors' contacts on it.
func checkNoKeys(t *testing.T, s *Badger, id feed.ID) {
	t.Helper()
	keys, vals := rawKeys(t, s)
	for _, k := range keys {
		if bytes.Contains(k, id[:]) && !(k[0] == prefixContact && bytes.Equal(k[1+idLen:], id[:])) {
			t.Errorf("key %q %x is left", k[0], k[1:])
		}
	}
	for _, v := range vals {
		if bytes.HasPrefix(v, id[:]) {
			t.Errorf("context index row of %s is left", id.Short())
		}
	}
}

// TestBadgerDeleteFeedKeys reads the database after DeleteFeed and Prune:
// the keys of what was deleted are gone.
func TestBadgerDeleteFeedKeys(t *testing.T) {
	s := openBadger(t, t.TempDir())
	a, b, peer := newAuthor(t, 2), newAuthor(t, 3), newAuthor(t, 4)
	room := newAuthor(t, 9).id
	o := newTestObject(t, 1, 2*testChunk)
	o.put(t, s)
	mustAppend(t, s, a.posts(3000)...)
	mustAppend(t, s, a.contact(b.id, feed.RelFollow), a.msg(room, "a"), leaseEntry(a, o.id, testNow))
	mustAppend(t, s, b.msg(room, "b"), b.contact(a.id, feed.RelBlock))
	if err := s.SetPeerClock(peer.id, map[feed.ID]int64{a.id: 10, b.id: 6}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddForkProof(a.forkProof("x")); err != nil {
		t.Fatal(err)
	}

	// Pruning deletes the entry keys below the tail, in several
	// transactions.
	if _, err := s.Prune(a.id, 2500); err != nil {
		t.Fatal(err)
	}
	keys, _ := rawKeys(t, s)
	entries := 0
	for _, k := range keys {
		if k[0] == prefixEntry && bytes.Equal(k[1:1+idLen], a.id[:]) {
			if seq := binary.BigEndian.Uint64(k[1+idLen:]); seq < 2500 {
				t.Fatalf("entry %d is left below the tail", seq)
			}
			entries++
		}
	}
	if entries != 3003-2499 {
		t.Fatalf("%d entry keys left, want %d", entries, 3003-2499)
	}

	if err := s.DeleteFeed(a.id); err != nil {
		t.Fatal(err)
	}
	checkNoKeys(t, s, a.id)
	verifyRemains(t, s, b.id)
}

// TestBadgerDeleteFeedResumes checks that an open finishes a deletion a
// crash interrupted after its tombstone was written.
func TestBadgerDeleteFeedResumes(t *testing.T) {
	dir := t.TempDir()
	a, b := newAuthor(t, 2), newAuthor(t, 3)
	s, err := OpenBadger(dir, BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, a.posts(10)...)
	mustAppend(t, s, b.posts(2)...)
	// What DeleteFeed writes first; the crash comes before the rest.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(idKey(prefixFeedGone, a.id), nil) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir)
	checkNoKeys(t, s, a.id)
	if h, _ := s.Head(a.id); h.Seq != 0 {
		t.Fatalf("head after reopen: %d", h.Seq)
	}
	verifyRemains(t, s, b.id)
	if n, _ := s.FeedBytes(b.id); n == 0 {
		t.Fatal("b's byte count lost")
	}
}

// TestBadgerUpgradeCounts opens a store of the previous layout, which had
// no byte counts: the open computes them.
func TestBadgerUpgradeCounts(t *testing.T) {
	dir := t.TempDir()
	a, b := newAuthor(t, 2), newAuthor(t, 3)
	room := newAuthor(t, 9).id
	s, err := OpenBadger(dir, BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	as := append(a.posts(3), a.msg(room, "a"))
	bs := []*feed.Entry{b.msg(room, "b1"), b.msg(room, "b2")}
	mustAppend(t, s, as...)
	mustAppend(t, s, bs...)
	// Back to layout 2: no counts, 16-byte member records.
	err = s.db.Update(func(txn *badger.Txn) error {
		for _, id := range []feed.ID{a.id, b.id} {
			if err := txn.Delete(idKey(prefixFeedBytes, id)); err != nil {
				return err
			}
			mk := pairKey(prefixCtxMember, room, id)
			item, err := txn.Get(mk)
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := txn.Set(mk, v[:16]); err != nil {
				return err
			}
		}
		if err := txn.Delete(idKey(prefixCtxBytes, room)); err != nil {
			return err
		}
		return txn.Set([]byte{keySchema}, []byte{schemaUpgradable})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBadger(t, dir)
	if n, _ := s.FeedBytes(a.id); n != encSize(as...) {
		t.Fatalf("FeedBytes of a = %d, want %d", n, encSize(as...))
	}
	if n, _ := s.CtxBytes(room); n != encSize(as[3], bs[0], bs[1]) {
		t.Fatalf("CtxBytes = %d, want %d", n, encSize(as[3], bs[0], bs[1]))
	}
	ms, err := s.CtxMembers(room)
	if err != nil || len(ms) != 2 {
		t.Fatal(ms, err)
	}
	for _, m := range ms {
		if m.Author == b.id && m.Bytes != uint64(encSize(bs...)) || m.Messages == 0 {
			t.Fatalf("member %+v", m)
		}
	}
}

// TestBadgerDeleteObjectKeys reads both databases after Delete: no key of
// the object is left but its lease, and the other object is whole.
func TestBadgerDeleteObjectKeys(t *testing.T) {
	s := openBadger(t, t.TempDir())
	o, keep := newTestObject(t, 1, 5*testChunk), newTestObject(t, 2, 2*testChunk)
	o.put(t, s)
	keep.put(t, s)
	a := newAuthor(t, 2)
	lease(t, s, a, o.id, testNow)
	if err := s.Delete(o.id); err != nil {
		t.Fatal(err)
	}
	idBytes := o.id.Bytes()
	for name, db := range map[string]*badger.DB{"main": s.db, "blobs": s.blobs} {
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if k := it.Item().Key(); bytes.Contains(k, idBytes) && k[0] != prefixLease {
					t.Errorf("%s: key %q of the deleted object is left", name, k[0])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(s.chunks.path(o.id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the chunk file of the deleted object is left (%v)", err)
	}
	if st, err := s.Object(keep.id); err != nil || !st.Complete() {
		t.Fatalf("the other object: %+v, %v", st, err)
	}
}
