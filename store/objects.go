package store

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// Object storage limits.
const (
	// MaxObjectIDLen is the longest object ID (CID bytes) the store keeps;
	// lease bodies carry IDs up to the same bound.
	MaxObjectIDLen = feed.MaxLeaseObjectLen
	// MaxObjectChunks is the most chunks an object may have: 16 GiB of
	// 1 KiB chunks, 256 GiB of 16 KiB chunks. It bounds the have-bitmap
	// (2 MiB at most).
	MaxObjectChunks = 1 << 24
	// MaxPutHashes is the most tree hashes one PutHashes may carry; it
	// bounds the transaction. An RFC 7574 INTEGRITY run for one chunk
	// carries at most the tree's height (≤ 24 here) of them.
	MaxPutHashes = 256
	// MaxPutChunks is the most chunks one PutChunks may carry, and
	// MaxPutChunkBytes the most bytes they may hold together (one chunk
	// larger than that may still go alone). They bound the transaction
	// (a 4-byte record per chunk in Badger: 256 of them are far below its
	// budget) and the bytes written to a chunk file under the object lock.
	MaxPutChunks     = 256
	MaxPutChunkBytes = 4 << 20
)

// Object errors callers branch on with errors.Is (ErrNotFound, ErrClosed and
// ErrCorrupt apply too).
var (
	// ErrBadObject reports an object ID, info, chunk index, chunk length,
	// bin or hash that does not fit the object.
	ErrBadObject = errors.New("store: bad object data")
	// ErrObjectConflict reports a PutObject whose info differs from what
	// is stored under the same ID.
	ErrObjectConflict = errors.New("store: object info conflicts with the stored one")
)

// Objects stores swarm objects: their info, verified chunks and
// verified tree hashes, with the keep flags and access order that decide
// eviction. Verification is the caller's job: only verified data may be
// put. Both *Badger and *Mem implement it; implementations are safe for
// concurrent use.
//
// An object is kept while it is pinned or while any lease on it has until
// after the now given to Evict; otherwise it is cached and evicted least
// recently used first. Access order is a counter: PutObject, PutChunk and
// PutChunks (when they add a chunk) and Touch make the object the most
// recently used. AppendChunks, GetHash and the other reads do not, so reads
// stay reads; callers Touch once per request they serve. The store has no clock: time
// comes in through Evict.
//
// Leases are not set through this interface: they are read from lease
// entries (feed.TypeLease) of any feed as Store.Append stores them, as the
// contact graph is. The lease index holds, per (object, author), the until
// of the author's latest lease entry for the object; an ended lease removes
// the pair. It does not depend on the object being held: a lease that
// arrives before its object applies once the object is put, and leases
// outlive an object's eviction.
type Objects interface {
	// PutObject records an object before its chunks are put. It is
	// idempotent; info must match id (info.ID() == id) and, if the object
	// is known, the stored info (else ErrObjectConflict). It counts as an
	// access.
	PutObject(id cid.Cid, info object.Info) error
	// Object returns what the store holds of an object, or ErrNotFound.
	Object(id cid.Cid) (ObjectStat, error)
	// ObjectIDs returns the IDs of every object, in no particular order.
	ObjectIDs() ([]cid.Cid, error)
	// PutChunk stores verified chunk index of a known object. The index
	// must be below the chunk count and data must have the chunk's exact
	// length (else ErrBadObject). Putting a held chunk again is a no-op.
	// The store keeps a copy.
	PutChunk(id cid.Cid, index uint64, data []byte) error
	// PutChunks stores several verified chunks of a known object at once
	// (one transaction in Badger): at most MaxPutChunks of them and
	// MaxPutChunkBytes together unless there is just one. Each is checked
	// as by PutChunk; if any is bad (ErrBadObject) none is stored. Held
	// chunks, and an index repeated in chunks, are skipped. It counts as
	// an access when it adds a chunk. The store keeps copies.
	PutChunks(id cid.Cid, chunks []object.Chunk) error
	// AppendChunks appends held chunks first to first+count-1 (1 ≤ count
	// ≤ MaxPutChunks) to dst, in one read, and returns the extended slice
	// (never nil); ErrNotFound if any of them is not held. Readers reuse
	// dst. A chunk that reads back wrong (Badger: torn by a power loss) is
	// ErrCorrupt, and the store forgets it, so that it is fetched again.
	AppendChunks(dst []byte, id cid.Cid, first, count uint64) ([]byte, error)
	// Have returns the object's have-bitmap: bit i%8 of byte i/8 is set
	// when chunk i is held; it is ⌈chunks/8⌉ bytes long.
	Have(id cid.Cid) ([]byte, error)
	// PutHashes stores verified tree hashes (uncles and interior nodes) of
	// a known object, at most MaxPutHashes of them; each bin must lie in
	// the object's tree and each hash have the digest's length.
	PutHashes(id cid.Cid, hashes map[object.Bin][]byte) error
	// GetHash returns a stored tree hash, or ErrNotFound.
	GetHash(id cid.Cid, bin object.Bin) ([]byte, error)
	// Pin and Unpin set and clear the object's local keep flag.
	Pin(id cid.Cid) error
	Unpin(id cid.Cid) error
	// Touch makes the object the most recently used.
	Touch(id cid.Cid) error
	// Evict deletes whole objects (info, chunks, hashes; not the leases
	// on them), least recently used first, while the chunk bytes of the
	// objects not kept at now exceed cacheBytes, and returns their IDs in
	// eviction order. Kept objects are never evicted, nor the objects for
	// which inUse (if not nil) reports true: they count as kept for this
	// call. inUse is called with the store's object lock held, so it must
	// not call the store.
	Evict(now time.Time, cacheBytes int64, inUse func(cid.Cid) bool) ([]cid.Cid, error)
	// Delete deletes one object (info, chunks, hashes; not the leases on
	// it), pinned, leased or not, or returns ErrNotFound. Whether it may
	// go is the caller's decision.
	Delete(id cid.Cid) error
}

// ObjectStat is what the store holds of an object.
type ObjectStat struct {
	Info   object.Info
	Held   uint64 // chunks held
	Bytes  int64  // bytes of the chunks held: what counts against the cache
	Pinned bool
	// Leases maps each author of a lease on the object to the lease's
	// end, lapsed or not.
	Leases map[feed.ID]time.Time
	// Access is the object's place in the access order: larger is more
	// recent.
	Access uint64
}

// Complete reports whether every chunk is held.
func (s ObjectStat) Complete() bool { return s.Held == s.Info.Chunks() }

// Kept reports whether the object is pinned or leased at now.
func (s ObjectStat) Kept(now time.Time) bool {
	if s.Pinned {
		return true
	}
	for _, until := range s.Leases {
		if until.After(now) {
			return true
		}
	}
	return false
}

// checkObjectID checks an ID before it is used in a key.
func checkObjectID(id cid.Cid) error {
	if !id.Defined() || id.ByteLen() > MaxObjectIDLen {
		return fmt.Errorf("%w: object ID of %d bytes", ErrBadObject, id.ByteLen())
	}
	return nil
}

// checkInfo checks info for PutObject and for a stored record.
func checkInfo(info object.Info) error {
	hs := info.Hash.Size()
	n := info.Chunks()
	switch {
	case hs == 0:
		return fmt.Errorf("%w: hash %v", ErrBadObject, info.Hash)
	case len(info.Root) != hs:
		return fmt.Errorf("%w: root of %d bytes, want %d", ErrBadObject, len(info.Root), hs)
	case n == 0:
		return fmt.Errorf("%w: chunk size %d, size %d", ErrBadObject, info.ChunkSize, info.Size)
	case n > MaxObjectChunks:
		return fmt.Errorf("%w: %d chunks, limit %d", ErrBadObject, n, MaxObjectChunks)
	}
	return nil
}

// checkPutObject checks the arguments of PutObject.
func checkPutObject(id cid.Cid, info object.Info) error {
	if err := checkObjectID(id); err != nil {
		return err
	}
	if err := checkInfo(info); err != nil {
		return err
	}
	if !info.ID().Equals(id) {
		return fmt.Errorf("%w: info is of object %s", ErrBadObject, info.ID())
	}
	return nil
}

// sameInfo reports whether two infos are equal.
func sameInfo(a, b object.Info) bool {
	return a.Hash == b.Hash && a.ChunkSize == b.ChunkSize && a.Size == b.Size && string(a.Root) == string(b.Root)
}

// chunkLen returns the length chunk index of info must have, or an error if
// there is no such chunk.
func chunkLen(info object.Info, index uint64) (int, error) {
	if n := info.Chunks(); index >= n {
		return 0, fmt.Errorf("%w: chunk %d of %d", ErrBadObject, index, n)
	}
	rest := uint64(info.Size) - index*uint64(info.ChunkSize)
	return int(min(rest, uint64(info.ChunkSize))), nil
}

// checkChunks checks the arguments of PutChunks against info.
func checkChunks(info object.Info, chunks []object.Chunk) error {
	if len(chunks) > MaxPutChunks {
		return fmt.Errorf("%w: %d chunks, limit %d", ErrBadObject, len(chunks), MaxPutChunks)
	}
	total := 0
	for _, c := range chunks {
		n, err := chunkLen(info, c.Index)
		if err != nil {
			return err
		}
		if len(c.Data) != n {
			return fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrBadObject, c.Index, len(c.Data), n)
		}
		total += n
	}
	if len(chunks) > 1 && total > MaxPutChunkBytes {
		return fmt.Errorf("%w: %d chunks of %d bytes, limit %d", ErrBadObject, len(chunks), total, MaxPutChunkBytes)
	}
	return nil
}

// checkHashes checks the arguments of PutHashes against info.
func checkHashes(info object.Info, hashes map[object.Bin][]byte) error {
	if len(hashes) > MaxPutHashes {
		return fmt.Errorf("%w: %d hashes, limit %d", ErrBadObject, len(hashes), MaxPutHashes)
	}
	for b, h := range hashes {
		if err := checkBin(info, b); err != nil {
			return err
		}
		if len(h) != info.Hash.Size() {
			return fmt.Errorf("%w: hash of bin %v is %d bytes, want %d", ErrBadObject, b, len(h), info.Hash.Size())
		}
	}
	return nil
}

// checkBin reports whether b lies in the covering tree of info.
func checkBin(info object.Info, b object.Bin) error {
	if h := info.Height(); b.Layer() > h || b.Offset() >= uint64(1)<<(h-b.Layer()) {
		return fmt.Errorf("%w: bin %v outside a tree of height %d", ErrBadObject, b, h)
	}
	return nil
}

// objMeta is the index entry of one object: everything but its chunks,
// hashes and leases. Both implementations keep one per object in memory;
// Badger rebuilds them on open.
type objMeta struct {
	id     cid.Cid
	info   object.Info
	held   uint64
	bytes  int64
	access uint64
	pinned bool
}

// objIndex is the in-memory index of objects. It is not safe for
// concurrent use: its owner's mutex guards it.
type objIndex struct {
	objs map[string]*objMeta // by id.KeyString()
	// leases maps an object's id.KeyString() to author → until (Unix
	// nanoseconds). Mem keeps every lease here; Badger only those on the
	// objects in objs (the rest stay on disk until the object is put).
	leases map[string]map[feed.ID]int64
	clock  uint64 // the latest access counter handed out
}

// stat returns a copy of m and its leases for the caller.
func (x *objIndex) stat(m *objMeta) ObjectStat {
	ls := x.leases[m.id.KeyString()]
	s := ObjectStat{
		Info:   m.info,
		Held:   m.held,
		Bytes:  m.bytes,
		Pinned: m.pinned,
		Leases: make(map[feed.ID]time.Time, len(ls)),
		Access: m.access,
	}
	s.Info.Root = slices.Clone(m.info.Root)
	for a, until := range ls {
		s.Leases[a] = time.Unix(0, until)
	}
	return s
}

// kept reports whether m is pinned or leased at now (Unix nanoseconds).
func (x *objIndex) kept(m *objMeta, now int64) bool {
	if m.pinned {
		return true
	}
	for _, until := range x.leases[m.id.KeyString()] {
		if until > now {
			return true
		}
	}
	return false
}

// setLease records author's latest lease on the object whose
// id.KeyString() is key; an until of 0 (an ended lease) removes it.
func (x *objIndex) setLease(key string, author feed.ID, until int64) {
	ls := x.leases[key]
	if until == 0 {
		delete(ls, author)
		if len(ls) == 0 {
			delete(x.leases, key)
		}
		return
	}
	if ls == nil {
		if x.leases == nil {
			x.leases = make(map[string]map[feed.ID]int64)
		}
		ls = make(map[feed.ID]int64)
		x.leases[key] = ls
	}
	ls[author] = until
}

// get returns the entry of id, or ErrNotFound.
func (x *objIndex) get(id cid.Cid) (*objMeta, error) {
	if err := checkObjectID(id); err != nil {
		return nil, err
	}
	m := x.objs[id.KeyString()]
	if m == nil {
		return nil, ErrNotFound
	}
	return m, nil
}

// add indexes m, moving the clock past its access.
func (x *objIndex) add(m *objMeta) {
	if x.objs == nil {
		x.objs = make(map[string]*objMeta)
	}
	x.objs[m.id.KeyString()] = m
	x.clock = max(x.clock, m.access)
}

// next returns the access counter for an access to m now: m's own if m is
// already the most recently used object (then nothing needs writing).
func (x *objIndex) next(m *objMeta) uint64 {
	if m != nil && m.access != 0 && m.access == x.clock {
		return m.access
	}
	return x.clock + 1
}

// setAccess records an access counter from next.
func (x *objIndex) setAccess(m *objMeta, access uint64) {
	m.access = access
	x.clock = max(x.clock, access)
}

// ids returns every indexed ID.
func (x *objIndex) ids() []cid.Cid {
	out := make([]cid.Cid, 0, len(x.objs))
	for _, m := range x.objs {
		out = append(out, m.id)
	}
	return out
}

// victims returns the objects Evict deletes at now under cacheBytes, least
// recently used first, sparing those inUse (if not nil) reports.
func (x *objIndex) victims(now time.Time, cacheBytes int64, inUse func(cid.Cid) bool) []*objMeta {
	t := now.UnixNano()
	var cached []*objMeta
	var total int64
	for _, m := range x.objs {
		if !x.kept(m, t) && (inUse == nil || !inUse(m.id)) {
			cached = append(cached, m)
			total += m.bytes
		}
	}
	if total <= cacheBytes {
		return nil
	}
	slices.SortFunc(cached, func(a, b *objMeta) int { return cmp.Compare(a.access, b.access) })
	var out []*objMeta
	for _, m := range cached {
		if total <= cacheBytes {
			break
		}
		out = append(out, m)
		total -= m.bytes
	}
	return out
}

// leaseRec is a parsed lease entry of an Append batch.
type leaseRec struct {
	id    cid.Cid
	until int64 // Unix nanoseconds; 0: the lease is ended
}

// parseLease parses a lease entry's body. It returns nil for a body that
// does not parse or whose object is not a CID in its canonical bytes of at
// most MaxObjectIDLen: such an entry is stored but leases nothing.
func parseLease(body []byte) *leaseRec {
	l, err := feed.DecodeLease(body)
	if err != nil {
		return nil
	}
	id, err := cid.Cast(l.Object)
	if err != nil || id.KeyString() != string(l.Object) || checkObjectID(id) != nil {
		return nil
	}
	r := &leaseRec{id: id}
	if !l.Ended() {
		// Nanoseconds overflow int64 after the year 2262: a lease ending
		// later ends then.
		const maxMilli = math.MaxInt64 / int64(time.Millisecond)
		r.until = math.MaxInt64
		if ms := l.Until.UnixMilli(); ms <= maxMilli {
			r.until = ms * int64(time.Millisecond)
		}
	}
	return r
}
