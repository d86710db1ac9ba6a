package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/contextd/contextd/feed"
)

func TestKeysSort(t *testing.T) {
	a := newAuthor(t, 1).id
	// Entry keys of one feed sort by seq, across byte boundaries.
	seqs := []uint64{1, 2, 255, 256, 65535, 65536, 1 << 40}
	for i := 1; i < len(seqs); i++ {
		if bytes.Compare(entryKey(a, seqs[i-1]), entryKey(a, seqs[i])) >= 0 {
			t.Errorf("entry key of seq %d does not sort before seq %d", seqs[i-1], seqs[i])
		}
	}
	k := entryKey(a, 77)
	if got, seq, err := decodeEntryKey(k); err != nil || got != a || seq != 77 {
		t.Errorf("decodeEntryKey = %v %d %v", got.Short(), seq, err)
	}
	h := feed.Head{Seq: 9, ID: feed.Hash{1, 2, 3}}
	if got, err := decodeHead(encodeHead(h)); err != nil || got != h {
		t.Errorf("head round trip = %v, %v", got, err)
	}
	for _, n := range []int64{0, 1, -1, 1 << 62, -1 << 63} {
		if got, err := decodeNote(encodeNote(n)); err != nil || got != n {
			t.Errorf("note %d round trip = %d, %v", n, got, err)
		}
	}
}

// FuzzDecodeRecords feeds arbitrary bytes to every decoder of stored
// records: they must report ErrCorrupt, never panic.
func FuzzDecodeRecords(f *testing.F) {
	a := newAuthor(f, 1)
	e := a.next("post", []byte("hello"))
	f.Add(e.Encode(), uint64(1))
	f.Add(a.forkProof("fuzz").Encode(), uint64(1))
	f.Add(encodeHead(e.Next()), uint64(0))
	f.Add(entryKey(a.id, 5), uint64(5))
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{feed.Version}, uint64(1))
	f.Fuzz(func(t *testing.T, b []byte, seq uint64) {
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: %v does not wrap ErrCorrupt", what, err)
			}
		}
		if e, err := decodeEntry(a.id, seq, b); err == nil {
			if !bytes.Equal(e.Encode(), b) || e.Seq != seq {
				t.Fatalf("decodeEntry accepted a non-canonical or misplaced entry")
			}
		} else {
			check("decodeEntry", err)
		}
		if h, err := decodeHead(b); err == nil {
			if !bytes.Equal(encodeHead(h), b) {
				t.Fatalf("head does not round trip")
			}
		} else {
			check("decodeHead", err)
		}
		_, err := decodeRelation(b)
		check("decodeRelation", err)
		if n, err := decodeNote(b); err == nil {
			if !bytes.Equal(encodeNote(n), b) {
				t.Fatalf("note does not round trip")
			}
		} else {
			check("decodeNote", err)
		}
		if id, s, err := decodeEntryKey(b); err == nil {
			if !bytes.Equal(entryKey(id, s), b) {
				t.Fatalf("entry key does not round trip")
			}
		} else {
			check("decodeEntryKey", err)
		}
		_, err = decodeProof(a.id, b)
		check("decodeProof", err)
	})
}
