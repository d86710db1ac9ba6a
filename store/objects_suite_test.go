package store

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// testNow is the time the object tests evict at.
var testNow = time.Unix(1_800_000_000, 0)

// testChunk is the chunk size of test objects.
const testChunk = object.MinChunkSize

// testObject is an object built from seeded random bytes.
type testObject struct {
	tree *object.Tree
	data []byte
	id   cid.Cid
}

func newTestObject(t testing.TB, seed uint64, size int) *testObject {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	tree, err := object.Build(bytes.NewReader(data), object.Config{ChunkSize: testChunk})
	if err != nil {
		t.Fatal(err)
	}
	return &testObject{tree: tree, data: data, id: tree.ID()}
}

// chunk returns chunk i after checking it verifies, as a downloader would.
func (o *testObject) chunk(t testing.TB, i uint64) []byte {
	t.Helper()
	end := min(int(i+1)*testChunk, len(o.data))
	c := o.data[int(i)*testChunk : end]
	if err := o.tree.Info().VerifyChunk(i, c, o.tree.Uncles(i)); err != nil {
		t.Fatal(err)
	}
	return c
}

// put stores the object and all its chunks.
func (o *testObject) put(t testing.TB, s Objects) {
	t.Helper()
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	for i := range o.tree.Chunks() {
		if err := s.PutChunk(o.id, i, o.chunk(t, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustStat(t testing.TB, s Objects, id cid.Cid) ObjectStat {
	t.Helper()
	st, err := s.Object(id)
	if err != nil {
		t.Fatalf("Object(%s): %v", id, err)
	}
	return st
}

// checkGone checks that nothing of o is left in s.
func checkGone(t testing.TB, s Objects, o *testObject) {
	t.Helper()
	if _, err := s.Object(o.id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Object of an evicted object: %v, want ErrNotFound", err)
	}
	if _, err := s.AppendChunks(nil, o.id, 0, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("AppendChunks of an evicted object: %v, want ErrNotFound", err)
	}
	if _, err := s.GetHash(o.id, o.tree.Info().RootBin()); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetHash of an evicted object: %v, want ErrNotFound", err)
	}
	ids, err := s.ObjectIDs()
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(ids, o.id.Equals) {
		t.Errorf("ObjectIDs still lists %s", o.id)
	}
}

func mustEvict(t testing.TB, s Objects, now time.Time, cacheBytes int64, want ...*testObject) {
	t.Helper()
	mustEvictInUse(t, s, now, cacheBytes, nil, want...)
}

// mustEvictInUse is mustEvict sparing the objects inUse reports.
func mustEvictInUse(t testing.TB, s Objects, now time.Time, cacheBytes int64, inUse func(cid.Cid) bool, want ...*testObject) {
	t.Helper()
	got, err := s.Evict(now, cacheBytes, inUse)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := make([]cid.Cid, len(want))
	for i, o := range want {
		wantIDs[i] = o.id
	}
	if !slices.EqualFunc(got, wantIDs, cid.Cid.Equals) {
		t.Fatalf("Evict(%d) = %v, want %v", cacheBytes, got, wantIDs)
	}
	for _, o := range want {
		checkGone(t, s, o)
	}
}

// testObjects is the conformance suite every Objects implementation
// passes. open returns a new empty store, closed at the end of the test.
func testObjects(t *testing.T, open func(t *testing.T) Objects) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Objects)
	}{
		{"Chunks", testObjChunks},
		{"BadPuts", testObjBadPuts},
		{"PutChunks", testObjPutChunks},
		{"PutChunksBad", testObjPutChunksBad},
		{"EmptyObject", testObjEmpty},
		{"Hashes", testObjHashes},
		{"PinsAndLeases", testObjPinsLeases},
		{"LeaseBeforeObject", testObjLeaseBeforeObject},
		{"LeaseEntries", testObjLeaseEntries},
		{"EvictLRU", testObjEvictLRU},
		{"EvictKept", testObjEvictKept},
		{"EvictInUse", testObjEvictInUse},
		{"Reput", testObjReput},
		{"Copies", testObjCopies},
		{"Closed", testObjClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func testObjChunks(t *testing.T, s Objects) {
	o := newTestObject(t, 1, 5*testChunk+100) // 6 chunks, the last 100 bytes
	if _, err := s.AppendChunks(nil, o.id, 0, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AppendChunks of an unknown object: %v", err)
	}
	if err := s.PutChunk(o.id, 0, o.chunk(t, 0)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutChunk of an unknown object: %v", err)
	}
	if _, err := s.Have(o.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Have of an unknown object: %v", err)
	}
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatalf("PutObject again: %v", err)
	}
	st := mustStat(t, s, o.id)
	if st.Held != 0 || st.Bytes != 0 || st.Complete() || !sameInfo(st.Info, o.tree.Info()) {
		t.Fatalf("new object: %+v", st)
	}
	for _, i := range []uint64{5, 0, 3, 0} { // 0 twice: idempotent
		if err := s.PutChunk(o.id, i, o.chunk(t, i)); err != nil {
			t.Fatalf("PutChunk %d: %v", i, err)
		}
	}
	st = mustStat(t, s, o.id)
	if st.Held != 3 || st.Bytes != 2*testChunk+100 || st.Complete() {
		t.Fatalf("after 3 chunks: held %d bytes %d", st.Held, st.Bytes)
	}
	have, err := s.Have(o.id)
	if err != nil || !bytes.Equal(have, []byte{0b101001}) {
		t.Fatalf("Have = %08b, %v; want 00101001", have, err)
	}
	if _, err := s.AppendChunks(nil, o.id, 1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("AppendChunks of a missing chunk: %v", err)
	}
	// A run is read whole or not at all: a run through a missing chunk,
	// past the end or of no chunk is refused and dst comes back as it was.
	dst := []byte("x")
	for _, r := range []struct {
		first, count uint64
		want         error
	}{{0, 2, ErrNotFound}, {2, 3, ErrNotFound}, {5, 2, ErrNotFound}, {6, 1, ErrNotFound}, {0, 0, ErrBadObject}} {
		if c, err := s.AppendChunks(dst, o.id, r.first, r.count); !errors.Is(err, r.want) || !bytes.Equal(c, dst) {
			t.Fatalf("AppendChunks of %d chunks from %d: %q, %v; want %v", r.count, r.first, c, err, r.want)
		}
	}
	for _, i := range []uint64{1, 2, 4} {
		if err := s.PutChunk(o.id, i, o.chunk(t, i)); err != nil {
			t.Fatal(err)
		}
	}
	st = mustStat(t, s, o.id)
	if !st.Complete() || st.Held != 6 || st.Bytes != int64(len(o.data)) {
		t.Fatalf("complete object: held %d bytes %d", st.Held, st.Bytes)
	}
	for i := range o.tree.Chunks() {
		c, err := s.AppendChunks(nil, o.id, i, 1)
		if err != nil || !bytes.Equal(c, o.chunk(t, i)) {
			t.Fatalf("AppendChunks %d: %d bytes, %v", i, len(c), err)
		}
	}
	// Held runs come after what dst held, the last chunk short.
	for _, first := range []uint64{0, 3} {
		want := append([]byte("x"), o.data[first*testChunk:]...)
		if c, err := s.AppendChunks(dst, o.id, first, o.tree.Chunks()-first); err != nil || !bytes.Equal(c, want) {
			t.Fatalf("AppendChunks of chunks %d to the end: %d bytes, %v", first, len(c), err)
		}
	}
	if have, _ := s.Have(o.id); !bytes.Equal(have, []byte{0b111111}) {
		t.Fatalf("Have = %08b", have)
	}
	ids, err := s.ObjectIDs()
	if err != nil || len(ids) != 1 || !ids[0].Equals(o.id) {
		t.Fatalf("ObjectIDs = %v, %v", ids, err)
	}
}

func testObjBadPuts(t *testing.T, s Objects) {
	o := newTestObject(t, 2, 3*testChunk-10)
	p := newTestObject(t, 3, 3*testChunk-10)
	if err := s.PutObject(p.id, o.tree.Info()); !errors.Is(err, ErrBadObject) {
		t.Errorf("PutObject under another ID: %v", err)
	}
	if err := s.PutObject(cid.Undef, o.tree.Info()); !errors.Is(err, ErrBadObject) {
		t.Errorf("PutObject under cid.Undef: %v", err)
	}
	bad := o.tree.Info()
	bad.Root = bad.Root[:5]
	if err := s.PutObject(o.id, bad); !errors.Is(err, ErrBadObject) {
		t.Errorf("PutObject with a short root: %v", err)
	}
	big := o.tree.Info()
	big.Size = int64(MaxObjectChunks+1) * testChunk
	if err := s.PutObject(big.ID(), big); !errors.Is(err, ErrBadObject) {
		t.Errorf("PutObject of too many chunks: %v", err)
	}
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	// The same root with another size has the same ID.
	other := o.tree.Info()
	other.Size++
	if err := s.PutObject(o.id, other); !errors.Is(err, ErrObjectConflict) {
		t.Errorf("PutObject with other info: %v, want ErrObjectConflict", err)
	}
	for _, tc := range []struct {
		index uint64
		data  []byte
	}{
		{3, make([]byte, testChunk)},       // past the last chunk
		{1 << 40, make([]byte, testChunk)}, // far past
		{0, make([]byte, testChunk-1)},     // short
		{0, make([]byte, testChunk+1)},     // long
		{2, make([]byte, testChunk)},       // the last chunk is shorter
	} {
		if err := s.PutChunk(o.id, tc.index, tc.data); !errors.Is(err, ErrBadObject) {
			t.Errorf("PutChunk(%d, %d bytes) = %v, want ErrBadObject", tc.index, len(tc.data), err)
		}
	}
	if st := mustStat(t, s, o.id); st.Held != 0 || st.Bytes != 0 {
		t.Errorf("bad puts changed the object: %+v", st)
	}
}

func testObjPutChunks(t *testing.T, s Objects) {
	o := newTestObject(t, 11, 9*testChunk+100) // 10 chunks, the last 100 bytes
	chunk := func(i uint64) object.Chunk { return object.Chunk{Index: i, Data: o.chunk(t, i)} }
	if err := s.PutChunks(o.id, []object.Chunk{chunk(0)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutChunks of an unknown object: %v", err)
	}
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	before := mustStat(t, s, o.id).Access
	if err := s.PutChunks(o.id, nil); err != nil {
		t.Fatalf("PutChunks of nothing: %v", err)
	}
	if st := mustStat(t, s, o.id); st.Held != 0 || st.Access != before {
		t.Fatalf("PutChunks of nothing changed the object: %+v", st)
	}
	other := newTestObject(t, 12, testChunk)
	other.put(t, s) // now o is not the most recently used
	// 9 twice in one call: stored once.
	if err := s.PutChunks(o.id, []object.Chunk{chunk(9), chunk(2), chunk(9), chunk(4)}); err != nil {
		t.Fatalf("PutChunks: %v", err)
	}
	st := mustStat(t, s, o.id)
	if st.Held != 3 || st.Bytes != 2*testChunk+100 || st.Access <= mustStat(t, s, other.id).Access {
		t.Fatalf("after 3 chunks: %+v", st)
	}
	if have, err := s.Have(o.id); err != nil || !bytes.Equal(have, []byte{0b10100, 0b10}) {
		t.Fatalf("Have = %08b, %v", have, err)
	}
	// Held chunks are skipped; a call adding nothing is no access.
	other.put(t, s)
	access := mustStat(t, s, o.id).Access
	if err := s.PutChunks(o.id, []object.Chunk{chunk(2), chunk(4)}); err != nil {
		t.Fatal(err)
	}
	if st := mustStat(t, s, o.id); st.Held != 3 || st.Access != access {
		t.Fatalf("PutChunks of held chunks: %+v", st)
	}
	var rest []object.Chunk
	for i := range o.tree.Chunks() {
		rest = append(rest, chunk(i))
	}
	if err := s.PutChunks(o.id, rest); err != nil {
		t.Fatal(err)
	}
	st = mustStat(t, s, o.id)
	if !st.Complete() || st.Bytes != int64(len(o.data)) {
		t.Fatalf("complete object: %+v", st)
	}
	for i := range o.tree.Chunks() {
		c, err := s.AppendChunks(nil, o.id, i, 1)
		if err != nil || !bytes.Equal(c, o.chunk(t, i)) {
			t.Fatalf("AppendChunks %d: %d bytes, %v", i, len(c), err)
		}
	}
	// The store keeps copies.
	p := newTestObject(t, 13, 2*testChunk)
	if err := s.PutObject(p.id, p.tree.Info()); err != nil {
		t.Fatal(err)
	}
	buf := bytes.Clone(p.chunk(t, 1))
	if err := s.PutChunks(p.id, []object.Chunk{{Index: 1, Data: buf}}); err != nil {
		t.Fatal(err)
	}
	buf[0] ^= 0xff
	if c, err := s.AppendChunks(nil, p.id, 1, 1); err != nil || !bytes.Equal(c, p.chunk(t, 1)) {
		t.Fatalf("AppendChunks after the caller's buffer changed: %v", err)
	}
}

func testObjPutChunksBad(t *testing.T, s Objects) {
	o := newTestObject(t, 14, 3*testChunk-10)
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	good := object.Chunk{Index: 0, Data: o.chunk(t, 0)}
	for name, c := range map[string]object.Chunk{
		"past the end":      {Index: 3, Data: make([]byte, testChunk)},
		"far past":          {Index: 1 << 40, Data: make([]byte, testChunk)},
		"short":             {Index: 1, Data: make([]byte, testChunk-1)},
		"long":              {Index: 1, Data: make([]byte, testChunk+1)},
		"a full-sized last": {Index: 2, Data: make([]byte, testChunk)},
	} {
		// A bad chunk anywhere rejects the whole call.
		if err := s.PutChunks(o.id, []object.Chunk{good, c}); !errors.Is(err, ErrBadObject) {
			t.Errorf("PutChunks with a chunk %s: %v, want ErrBadObject", name, err)
		}
	}
	tooMany := make([]object.Chunk, MaxPutChunks+1)
	for i := range tooMany {
		tooMany[i] = good
	}
	if err := s.PutChunks(o.id, tooMany); !errors.Is(err, ErrBadObject) {
		t.Errorf("PutChunks of %d chunks: %v", len(tooMany), err)
	}
	if st := mustStat(t, s, o.id); st.Held != 0 || st.Bytes != 0 {
		t.Errorf("bad puts changed the object: %+v", st)
	}
	// MaxPutChunkBytes bounds a call of several chunks, not one chunk.
	for _, tc := range []struct {
		chunkSize, size, put int
		ok                   bool
	}{
		{32 << 10, MaxPutChunkBytes + 1, MaxPutChunkBytes/(32<<10) + 1, false},
		{32 << 10, MaxPutChunkBytes + 1, MaxPutChunkBytes / (32 << 10), true},
		{8 << 20, MaxPutChunkBytes + 1, 1, true},
	} {
		data := make([]byte, tc.size)
		tree, err := object.Build(bytes.NewReader(data), object.Config{ChunkSize: tc.chunkSize})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.PutObject(tree.ID(), tree.Info()); err != nil {
			t.Fatal(err)
		}
		var cs []object.Chunk
		for i := range tc.put {
			end := min((i+1)*tc.chunkSize, tc.size)
			cs = append(cs, object.Chunk{Index: uint64(i), Data: data[i*tc.chunkSize : end]})
		}
		err = s.PutChunks(tree.ID(), cs)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrBadObject) {
			t.Errorf("PutChunks of %d chunks of %d bytes: %v", tc.put, tc.chunkSize, err)
		}
	}
}

func testObjEmpty(t *testing.T, s Objects) {
	o := newTestObject(t, 4, 0)
	if o.tree.Chunks() != 1 {
		t.Fatalf("empty object of %d chunks", o.tree.Chunks())
	}
	o.put(t, s)
	st := mustStat(t, s, o.id)
	if !st.Complete() || st.Bytes != 0 {
		t.Fatalf("empty object: %+v", st)
	}
	c, err := s.AppendChunks(nil, o.id, 0, 1)
	if err != nil || c == nil || len(c) != 0 {
		t.Fatalf("AppendChunks of the empty chunk = %v, %v; want empty non-nil", c, err)
	}
	if have, _ := s.Have(o.id); !bytes.Equal(have, []byte{1}) {
		t.Fatalf("Have = %08b", have)
	}
}

func testObjHashes(t *testing.T, s Objects) {
	o := newTestObject(t, 5, 5*testChunk) // 5 chunks: a tree of height 3, bins 0..14
	if err := s.PutHashes(o.id, map[object.Bin][]byte{1: o.tree.Node(1)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PutHashes of an unknown object: %v", err)
	}
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	bins := []object.Bin{0, 2, 1, 5, 3, 11, 12, 14}
	hashes := make(map[object.Bin][]byte)
	for _, b := range bins {
		hashes[b] = o.tree.Node(b)
	}
	if err := s.PutHashes(o.id, hashes); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHashes(o.id, hashes); err != nil {
		t.Fatalf("PutHashes again: %v", err)
	}
	for _, b := range bins {
		h, err := s.GetHash(o.id, b)
		if err != nil || !bytes.Equal(h, o.tree.Node(b)) {
			t.Fatalf("GetHash(%v) = %x, %v", b, h, err)
		}
	}
	if _, err := s.GetHash(o.id, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetHash of a missing bin: %v", err)
	}
	for name, hs := range map[string]map[object.Bin][]byte{
		"bin past the tree":  {16: o.tree.Node(0)},
		"bin above the root": {15: o.tree.Node(0)},
		"short hash":         {4: o.tree.Node(4)[:10]},
		"nil hash":           {4: nil},
	} {
		if err := s.PutHashes(o.id, hs); !errors.Is(err, ErrBadObject) {
			t.Errorf("PutHashes with a %s: %v, want ErrBadObject", name, err)
		}
	}
	tooMany := make(map[object.Bin][]byte)
	for b := range object.Bin(MaxPutHashes + 1) {
		tooMany[b] = o.tree.Node(0)
	}
	if err := s.PutHashes(o.id, tooMany); !errors.Is(err, ErrBadObject) {
		t.Errorf("PutHashes of %d hashes: %v", len(tooMany), err)
	}
	if _, err := s.GetHash(o.id, 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("a rejected PutHashes stored a hash: %v", err)
	}
}

// leaseEntry signs a's next entry: a lease on id until until (the zero
// time ends it).
func leaseEntry(a *author, id cid.Cid, until time.Time) *feed.Entry {
	a.t.Helper()
	body, err := feed.Lease{Object: id.Bytes(), Until: until}.Encode()
	if err != nil {
		a.t.Fatal(err)
	}
	return a.next(feed.TypeLease, body)
}

// lease appends a's lease on id until until to s, which must be a Store too.
func lease(t testing.TB, s Objects, a *author, id cid.Cid, until time.Time) {
	t.Helper()
	if err := s.(Store).Append([]*feed.Entry{leaseEntry(a, id, until)}); err != nil {
		t.Fatal(err)
	}
}

// checkLeases checks the leases on a held object.
func checkLeases(t testing.TB, s Objects, id cid.Cid, want map[feed.ID]time.Time) {
	t.Helper()
	got := mustStat(t, s, id).Leases
	if !maps.EqualFunc(got, want, time.Time.Equal) {
		t.Fatalf("leases on %s: %v, want %v", id, got, want)
	}
}

func testObjPinsLeases(t *testing.T, s Objects) {
	o := newTestObject(t, 6, 2*testChunk)
	a, b := newAuthor(t, 1), newAuthor(t, 2)
	if err := s.Pin(o.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Pin of an unknown object: %v", err)
	}
	o.put(t, s)
	if st := mustStat(t, s, o.id); st.Pinned || len(st.Leases) != 0 || st.Kept(testNow) {
		t.Fatalf("new object: %+v", st)
	}
	if err := s.Pin(o.id); err != nil {
		t.Fatal(err)
	}
	if st := mustStat(t, s, o.id); !st.Pinned || !st.Kept(testNow) {
		t.Fatalf("pinned object: %+v", st)
	}
	if err := s.Unpin(o.id); err != nil {
		t.Fatal(err)
	}
	lease(t, s, a, o.id, testNow.Add(time.Hour))
	lease(t, s, b, o.id, testNow.Add(-time.Hour))
	st := mustStat(t, s, o.id)
	checkLeases(t, s, o.id, map[feed.ID]time.Time{a.id: testNow.Add(time.Hour), b.id: testNow.Add(-time.Hour)})
	if st.Pinned || !st.Kept(testNow) || st.Kept(testNow.Add(time.Hour)) {
		t.Fatalf("Kept: a lease keeps until its end, exclusive: %+v", st)
	}
	lease(t, s, a, o.id, time.Time{}) // a ends its lease
	checkLeases(t, s, o.id, map[feed.ID]time.Time{b.id: testNow.Add(-time.Hour)})
	if mustStat(t, s, o.id).Kept(testNow) {
		t.Fatal("kept after the only valid lease ended")
	}
	lease(t, s, a, o.id, time.Time{}) // ending an ended lease changes nothing
	checkLeases(t, s, o.id, map[feed.ID]time.Time{b.id: testNow.Add(-time.Hour)})
}

// testObjLeaseBeforeObject: a lease that comes before its object applies
// once the object is put, and keeps it from eviction.
func testObjLeaseBeforeObject(t *testing.T, s Objects) {
	a, b := newAuthor(t, 1), newAuthor(t, 2)
	o := newTestObject(t, 8, 2*testChunk)
	lease(t, s, a, o.id, testNow.Add(time.Hour))
	lease(t, s, b, o.id, testNow.Add(time.Minute))
	lease(t, s, b, o.id, time.Time{})
	if _, err := s.Object(o.id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a lease made the object known: %v", err)
	}
	o.put(t, s)
	checkLeases(t, s, o.id, map[feed.ID]time.Time{a.id: testNow.Add(time.Hour)})
	mustEvict(t, s, testNow, 0)
	mustEvict(t, s, testNow.Add(time.Hour), 0, o)
	// The lapsed lease outlives the eviction; a new one applies again
	// when the object comes back.
	lease(t, s, b, o.id, testNow.Add(2*time.Hour))
	o.put(t, s)
	checkLeases(t, s, o.id, map[feed.ID]time.Time{a.id: testNow.Add(time.Hour), b.id: testNow.Add(2 * time.Hour)})
	mustEvict(t, s, testNow.Add(time.Hour), 0)
}

// testObjLeaseEntries: the latest lease entry of an author wins, also
// inside one batch; bodies that do not parse, or carry no CID, are stored
// but lease nothing.
func testObjLeaseEntries(t *testing.T, s Objects) {
	a := newAuthor(t, 1)
	o := putObjects(t, s, 2)
	batch := []*feed.Entry{
		leaseEntry(a, o[0].id, testNow.Add(time.Hour)),
		leaseEntry(a, o[1].id, testNow.Add(time.Hour)),
		leaseEntry(a, o[0].id, testNow.Add(time.Minute)), // replaces the first
		leaseEntry(a, o[1].id, time.Time{}),              // ends the second
		a.next(feed.TypeLease, []byte("not a lease")),
		a.next(feed.TypeLease, mustLeaseBody(t, feed.Lease{Object: []byte{1, 0x55, 0}, Until: testNow.Add(time.Hour)})), // not a CID
		a.next("post", mustLeaseBody(t, feed.Lease{Object: o[1].id.Bytes(), Until: testNow.Add(time.Hour)})),            // not a lease entry
	}
	if err := s.(Store).Append(batch); err != nil {
		t.Fatal(err)
	}
	if h, err := s.(Store).Head(a.id); err != nil || h.Seq != uint64(len(batch)) {
		t.Fatalf("head after the batch: %+v, %v", h, err)
	}
	checkLeases(t, s, o[0].id, map[feed.ID]time.Time{a.id: testNow.Add(time.Minute)})
	checkLeases(t, s, o[1].id, map[feed.ID]time.Time{})
	// A later entry replaces the earlier, even with an earlier end.
	lease(t, s, a, o[0].id, testNow.Add(-time.Minute))
	checkLeases(t, s, o[0].id, map[feed.ID]time.Time{a.id: testNow.Add(-time.Minute)})
	// A batch that is refused changes no lease.
	stale := leaseEntry(newAuthor(t, 1), o[0].id, testNow.Add(time.Hour)) // seq 1 again
	if err := s.(Store).Append([]*feed.Entry{stale}); !errors.Is(err, ErrNotContiguous) {
		t.Fatalf("Append of a stale lease entry: %v", err)
	}
	checkLeases(t, s, o[0].id, map[feed.ID]time.Time{a.id: testNow.Add(-time.Minute)})
}

func mustLeaseBody(t testing.TB, l feed.Lease) []byte {
	t.Helper()
	b, err := l.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putObjects stores n objects of 2 chunks each, in order.
func putObjects(t testing.TB, s Objects, n int) []*testObject {
	t.Helper()
	objs := make([]*testObject, n)
	for i := range objs {
		objs[i] = newTestObject(t, uint64(100+i), 2*testChunk)
		objs[i].put(t, s)
		if err := s.PutHashes(objs[i].id, map[object.Bin][]byte{1: objs[i].tree.Node(1)}); err != nil {
			t.Fatal(err)
		}
	}
	return objs
}

func testObjEvictLRU(t *testing.T, s Objects) {
	o := putObjects(t, s, 4) // each 2 KiB, o[0] least recently used
	mustEvict(t, s, testNow, 8*testChunk)
	if err := s.Touch(o[0].id); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(o[0].id); err != nil { // already the latest: no change
		t.Fatal(err)
	}
	// AppendChunks is no access: o[1] stays the least recently used.
	if _, err := s.AppendChunks(nil, o[1].id, 0, 1); err != nil {
		t.Fatal(err)
	}
	// Order now o[1], o[2], o[3], o[0].
	mustEvict(t, s, testNow, 5*testChunk, o[1], o[2])
	if err := s.Touch(o[3].id); err != nil {
		t.Fatal(err)
	}
	mustEvict(t, s, testNow, 2*testChunk, o[0])
	mustEvict(t, s, testNow, 0, o[3])
	if _, err := s.Evict(testNow, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(o[0].id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch of an evicted object: %v", err)
	}
}

func testObjEvictKept(t *testing.T, s Objects) {
	a := newAuthor(t, 1)
	o := putObjects(t, s, 5)
	pinned, leased, lapsed, ended, cached := o[0], o[1], o[2], o[3], o[4]
	if err := s.Pin(pinned.id); err != nil {
		t.Fatal(err)
	}
	lease(t, s, a, leased.id, testNow.Add(time.Hour))
	lease(t, s, a, lapsed.id, testNow) // until is not after now
	lease(t, s, a, ended.id, testNow.Add(time.Hour))
	lease(t, s, a, ended.id, time.Time{})
	// Kept objects do not count against the cache.
	mustEvict(t, s, testNow, 6*testChunk)
	mustEvict(t, s, testNow, 0, lapsed, ended, cached)
	// Pinned and leased objects survive any cache size.
	mustEvict(t, s, testNow, 0)
	mustEvict(t, s, testNow.Add(time.Hour-1), 0)
	// The lease lapses.
	mustEvict(t, s, testNow.Add(time.Hour), 0, leased)
	if err := s.Unpin(pinned.id); err != nil {
		t.Fatal(err)
	}
	mustEvict(t, s, testNow, 0, pinned)
	if ids, err := s.ObjectIDs(); err != nil || len(ids) != 0 {
		t.Fatalf("ObjectIDs after evicting everything = %v, %v", ids, err)
	}
}

// testObjEvictInUse: objects in use count as kept for one Evict.
func testObjEvictInUse(t *testing.T, s Objects) {
	o := putObjects(t, s, 3) // o[0] least recently used
	inUse := func(id cid.Cid) bool { return id.Equals(o[0].id) }
	// o[0] in use does not count: o[1] and o[2] fit 4 chunks.
	mustEvictInUse(t, s, testNow, 4*testChunk, inUse)
	mustEvictInUse(t, s, testNow, 2*testChunk, inUse, o[1])
	mustEvict(t, s, testNow, 2*testChunk, o[0])
}

func testObjReput(t *testing.T, s Objects) {
	a := newAuthor(t, 1)
	o := putObjects(t, s, 1)[0]
	lease(t, s, a, o.id, testNow)
	mustEvict(t, s, testNow, 0, o)
	// Fetched again, it starts from nothing but the lease, which lapsed.
	if err := s.PutObject(o.id, o.tree.Info()); err != nil {
		t.Fatal(err)
	}
	st := mustStat(t, s, o.id)
	if st.Held != 0 || st.Bytes != 0 || st.Pinned || len(st.Leases) != 1 || st.Kept(testNow) {
		t.Fatalf("object put again after eviction: %+v", st)
	}
	if have, _ := s.Have(o.id); !bytes.Equal(have, []byte{0}) {
		t.Fatalf("Have = %08b", have)
	}
	if err := s.PutChunk(o.id, 1, o.chunk(t, 1)); err != nil {
		t.Fatal(err)
	}
	if st := mustStat(t, s, o.id); st.Held != 1 || st.Bytes != testChunk {
		t.Fatalf("accounting after re-put: %+v", st)
	}
}

func testObjCopies(t *testing.T, s Objects) {
	o := newTestObject(t, 7, 2*testChunk)
	info := o.tree.Info()
	if err := s.PutObject(o.id, info); err != nil {
		t.Fatal(err)
	}
	info.Root[0] ^= 1
	c := bytes.Clone(o.chunk(t, 0))
	if err := s.PutChunk(o.id, 0, c); err != nil {
		t.Fatal(err)
	}
	c[0] ^= 1
	h := o.tree.Node(1)
	if err := s.PutHashes(o.id, map[object.Bin][]byte{1: h}); err != nil {
		t.Fatal(err)
	}
	h[0] ^= 1
	st := mustStat(t, s, o.id)
	if !sameInfo(st.Info, o.tree.Info()) {
		t.Fatal("the store kept the caller's root")
	}
	st.Info.Root[0] ^= 1
	got, _ := s.AppendChunks(nil, o.id, 0, 1)
	if !bytes.Equal(got, o.chunk(t, 0)) {
		t.Fatal("the store kept the caller's chunk")
	}
	got[0] ^= 1
	gh, _ := s.GetHash(o.id, 1)
	if !bytes.Equal(gh, o.tree.Node(1)) {
		t.Fatal("the store kept the caller's hash")
	}
	gh[0] ^= 1
	if st := mustStat(t, s, o.id); !sameInfo(st.Info, o.tree.Info()) {
		t.Fatal("the store handed out its root")
	}
	if got, _ := s.AppendChunks(nil, o.id, 0, 1); !bytes.Equal(got, o.chunk(t, 0)) {
		t.Fatal("the store handed out its chunk")
	}
	if gh, _ := s.GetHash(o.id, 1); !bytes.Equal(gh, o.tree.Node(1)) {
		t.Fatal("the store handed out its hash")
	}
}

func testObjClosed(t *testing.T, s Objects) {
	o := putObjects(t, s, 1)[0]
	if err := s.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"PutObject": s.PutObject(o.id, o.tree.Info()),
		"PutChunk":  s.PutChunk(o.id, 0, o.chunk(t, 0)),
		"PutHashes": s.PutHashes(o.id, nil),
		"Pin":       s.Pin(o.id),
		"Unpin":     s.Unpin(o.id),
		"Touch":     s.Touch(o.id),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if _, err := s.Object(o.id); !errors.Is(err, ErrClosed) {
		t.Errorf("Object after Close: %v", err)
	}
	if _, err := s.AppendChunks(nil, o.id, 0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendChunks after Close: %v", err)
	}
	if _, err := s.Have(o.id); !errors.Is(err, ErrClosed) {
		t.Errorf("Have after Close: %v", err)
	}
	if _, err := s.GetHash(o.id, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("GetHash after Close: %v", err)
	}
	if _, err := s.ObjectIDs(); !errors.Is(err, ErrClosed) {
		t.Errorf("ObjectIDs after Close: %v", err)
	}
	if _, err := s.Evict(testNow, 0, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Evict after Close: %v", err)
	}
}
