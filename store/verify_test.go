package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// verifyFixture is a Badger store with feeds, a context's messages, a fork
// proof and an object, as a node writes them.
type verifyFixture struct {
	dir    string
	s      *Badger
	a, b   *author
	aPosts []*feed.Entry // a's entries: posts then a message
	room   feed.ID
	obj    *testObject
	wantOK *Report // the counts a clean Verify reports
}

func newVerifyFixture(t *testing.T) *verifyFixture {
	t.Helper()
	f := &verifyFixture{dir: t.TempDir()}
	f.s = openBadger(t, f.dir)
	f.a, f.b = newAuthor(t, 1), newAuthor(t, 2)
	f.room = newAuthor(t, 9).id
	f.aPosts = append(f.a.posts(5), f.a.msg(f.room, "hello"))
	mustAppend(t, f.s, f.aPosts...)
	mustAppend(t, f.s, f.b.posts(3)...)
	mustAppend(t, f.s, f.b.msg(f.room, "hi"))
	c := newAuthor(t, 3)
	mustAppend(t, f.s, c.posts(1)...)
	if err := f.s.AddForkProof(c.forkProof("fork")); err != nil {
		t.Fatal(err)
	}
	f.obj = newTestObject(t, 1, 5*testChunk+100) // 6 chunks: a tree with padding
	f.obj.put(t, f.s)
	if err := object.PutTreeHashes(f.s, f.obj.id, f.obj.tree); err != nil {
		t.Fatal(err)
	}
	f.wantOK = &Report{Feeds: 3, Entries: 11, ForkProofs: 1, CtxRefs: 2, Objects: 1, Chunks: 6}
	return f
}

// set overwrites a raw value in db, as a bad disk would.
func (f *verifyFixture) set(t *testing.T, db *badger.DB, key, val []byte) {
	t.Helper()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
		t.Fatal(err)
	}
}

// verify closes the store and verifies it.
func (f *verifyFixture) verify(t *testing.T, opts VerifyOptions) *Report {
	t.Helper()
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Verify(t.Context(), f.dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.Problems {
		t.Log(p)
	}
	return r
}

func TestVerifyClean(t *testing.T) {
	f := newVerifyFixture(t)
	r := f.verify(t, VerifyOptions{ChunkSample: -1})
	if !r.OK() {
		t.Fatalf("a clean store has %d problems", len(r.Problems)+r.Omitted)
	}
	if r.Feeds != f.wantOK.Feeds || r.Entries != f.wantOK.Entries || r.ForkProofs != f.wantOK.ForkProofs ||
		r.CtxRefs != f.wantOK.CtxRefs || r.Objects != f.wantOK.Objects || r.Chunks != f.wantOK.Chunks || r.Pruned != 0 {
		t.Errorf("report %+v, want the counts of %+v", r, f.wantOK)
	}
	// A sample checks that many chunks of each object.
	r, err := Verify(t.Context(), f.dir, VerifyOptions{ChunkSample: 2})
	if err != nil || !r.OK() || r.Chunks != 2 {
		t.Errorf("Verify with a sample of 2: %+v, %v; want 2 chunks checked, no problem", r, err)
	}
	// Verify writes nothing: every file is as it was.
	before := dirState(t, f.dir)
	if r2, err := Verify(t.Context(), f.dir, VerifyOptions{ChunkSample: -1}); err != nil || !r2.OK() {
		t.Errorf("second Verify: %+v, %v", r2, err)
	}
	if after := dirState(t, f.dir); !maps.Equal(before, after) {
		t.Errorf("Verify changed the store's files:\nbefore %v\nafter  %v", before, after)
	}
}

// dirState returns the size, mode and modification time of every file
// under dir.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[path] = fmt.Sprint(fi.Size(), fi.Mode(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyFindsCorruption(t *testing.T) {
	f := newVerifyFixture(t)
	// Entry 3 of a: one byte of its body changed on disk.
	bad := f.aPosts[2].Encode()
	bad[len(bad)-len(f.aPosts[2].Sig)-1] ^= 1
	f.set(t, f.s.db, entryKey(f.a.id, 3), bad)
	// Chunk 4 of the object: one byte changed.
	tearChunk(t, f.s, f.obj.id, 4*testChunk+10)
	// b's head left at its first entry.
	first, err := f.s.Get(f.b.id, 1)
	if err != nil {
		t.Fatal(err)
	}
	f.set(t, f.s.db, idKey(prefixHead, f.b.id), encodeHead(first.Next()))
	// The room's second message points at a post.
	f.set(t, f.s.db, ctxMsgKey(f.room, 2), append(f.b.id[:], 0, 0, 0, 0, 0, 0, 0, 2))

	r := f.verify(t, VerifyOptions{ChunkSample: -1})
	type found struct {
		kind    ProblemKind
		feed    feed.ID
		seq     uint64
		chunk   uint64
		hasObj  bool
		context feed.ID
	}
	var got []found
	for _, p := range r.Problems {
		got = append(got, found{p.Kind, p.Feed, p.Seq, p.Chunk, p.Object.Defined() && p.Object.Equals(f.obj.id), p.Context})
		if !errors.Is(p.Err, ErrCorrupt) {
			t.Errorf("%v: the error does not match ErrCorrupt", p)
		}
	}
	slices.SortStableFunc(got, func(x, y found) int { return int(x.kind) - int(y.kind) })
	want := []found{
		{kind: ProblemEntry, feed: f.a.id, seq: 3},
		{kind: ProblemHead, feed: f.b.id},
		{kind: ProblemContext, feed: f.b.id, seq: 2, context: f.room},
		{kind: ProblemChunk, chunk: 4, hasObj: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems %+v,\nwant %+v", got, want)
	}
	if r.Entries != f.wantOK.Entries || r.Chunks != f.wantOK.Chunks {
		t.Errorf("checked %d entries and %d chunks, want all %d and %d", r.Entries, r.Chunks, f.wantOK.Entries, f.wantOK.Chunks)
	}

	// The list is bounded; the rest is counted.
	r, err = Verify(t.Context(), f.dir, VerifyOptions{ChunkSample: -1, MaxProblems: 1})
	if err != nil || len(r.Problems) != 1 || r.Omitted != len(want)-1 || r.OK() {
		t.Errorf("with MaxProblems 1: %d listed, %d omitted, %v; want 1 and %d", len(r.Problems), r.Omitted, err, len(want)-1)
	}
}

func TestVerifyMissingTreeHash(t *testing.T) {
	f := newVerifyFixture(t)
	// The uncle of chunk 0 at layer 0 is chunk 1's hash.
	if err := f.s.blobs.Update(func(txn *badger.Txn) error {
		return txn.Delete(objKeyU64(prefixTreeHash, f.obj.id, uint64(object.ChunkBin(1))))
	}); err != nil {
		t.Fatal(err)
	}
	r := f.verify(t, VerifyOptions{ChunkSample: -1})
	if len(r.Problems) != 1 || r.Problems[0].Kind != ProblemChunk || r.Problems[0].Chunk != 0 {
		t.Errorf("problems %v, want chunk 0 unverifiable", r.Problems)
	}
}

func TestVerifyErrors(t *testing.T) {
	if _, err := Verify(t.Context(), filepath.Join(t.TempDir(), "none"), VerifyOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Verify of a missing store = %v, want fs.ErrNotExist", err)
	}

	dir := t.TempDir()
	s := openBadger(t, dir)
	mustAppend(t, s, newAuthor(t, 1).posts(3)...)
	if _, err := Verify(t.Context(), dir, VerifyOptions{}); !errors.Is(err, ErrInUse) {
		t.Errorf("Verify of an open store = %v, want ErrInUse", err)
	}

	// A copy taken while the store is open is what a killed daemon
	// leaves: a write-ahead log to replay.
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(t.Context(), filepath.Join(crashed), VerifyOptions{}); !errors.Is(err, ErrUnclean) {
		t.Errorf("Verify of a store not closed = %v, want ErrUnclean", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify with a cancelled context = %v, want context.Canceled", err)
	}
}
