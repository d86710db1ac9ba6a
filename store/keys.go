package store

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/contextd/contextd/feed"
)

// Key prefixes of the Badger layout (doc.go describes the whole layout).
const (
	prefixEntry   = 'e' // e author seqBE8 → canonical entry encoding
	prefixHead    = 'h' // h author → seqBE8 id32
	prefixContact = 'c' // c author target → relation byte (absent = RelNone)
	prefixClock   = 'p' // p peer feed → note, int64 BE8
	prefixFork    = 'f' // f author → fork proof encoding
	keySchema     = 'v' // v → schema version byte

	// Object keys (badger_objects.go): the object ID is the CID's bytes
	// after a length byte, so one ID's keys never share a prefix with
	// another's. Chunks and tree hashes are in the blobs database, the
	// rest in the main one.
	prefixObject    = 'o' // o idlen id → object info
	prefixObjState  = 's' // s idlen id → access(8) pinned(1)
	prefixChunkSum  = 'q' // blobs: q idlen id indexBE8 → CRC-32C of the chunk, whose bytes are in its chunk file
	prefixChunkV3   = 'k' // blobs, layout 3 and before: k idlen id indexBE8 → chunk bytes (moved on open)
	prefixTreeHash  = 't' // blobs: t idlen id binBE8 → tree hash
	prefixLease     = 'l' // l idlen id author → until, Unix ns int64 BE8 (from lease entries)
	prefixTombstone = 'd' // d idlen id → empty: the object's blobs are being deleted
)

// schemaVersion is the layout this build reads and writes (2: chunks and
// tree hashes moved to the blobs database; object state without counts;
// 3: byte counts of feeds and contexts, prune points, feed tombstones;
// 4: chunk bytes in chunk files, their checksums in the blobs database).
const schemaVersion = 4

// schemaUpgradable is the oldest layout OpenBadger upgrades in place: a
// version 2 main database lacks only the byte counts, which it computes;
// a version 2 or 3 blobs database has its chunks moved into chunk files.
const schemaUpgradable = 2

const (
	idLen       = len(feed.ID{})
	entryKeyLen = 1 + idLen + 8
	headValLen  = 8 + len(feed.Hash{})
	pairKeyLen  = 1 + 2*idLen // contact and clock keys

	maxLeaseKeyLen = 2 + MaxObjectIDLen + idLen // a lease key of the longest object ID
)

func entryKey(author feed.ID, seq uint64) []byte {
	k := make([]byte, 0, entryKeyLen)
	k = append(k, prefixEntry)
	k = append(k, author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// idKey is a one-ID key: an author's entry prefix, head or fork proof, or a
// peer's clock prefix.
func idKey(prefix byte, id feed.ID) []byte {
	k := make([]byte, 0, 1+idLen)
	k = append(k, prefix)
	return append(k, id[:]...)
}

// pairKey is a contact or clock key.
func pairKey(prefix byte, a, b feed.ID) []byte {
	k := make([]byte, 0, pairKeyLen)
	k = append(k, prefix)
	k = append(k, a[:]...)
	return append(k, b[:]...)
}

// keyID returns the ID at byte off of key; ok is false if key is too short.
func keyID(key []byte, off int) (id feed.ID, ok bool) {
	if len(key) < off+idLen {
		return id, false
	}
	copy(id[:], key[off:])
	return id, true
}

func encodeHead(h feed.Head) []byte {
	v := make([]byte, 0, headValLen)
	v = binary.BigEndian.AppendUint64(v, h.Seq)
	return append(v, h.ID[:]...)
}

func decodeHead(v []byte) (feed.Head, error) {
	var h feed.Head
	if len(v) != headValLen {
		return h, fmt.Errorf("%w: head of %d bytes, want %d", ErrCorrupt, len(v), headValLen)
	}
	h.Seq = binary.BigEndian.Uint64(v)
	copy(h.ID[:], v[8:])
	if h.Seq == 0 {
		return feed.Head{}, fmt.Errorf("%w: head at seq 0", ErrCorrupt)
	}
	return h, nil
}

func decodeRelation(v []byte) (feed.Relation, error) {
	if len(v) != 1 || feed.Relation(v[0]) > feed.RelBlock {
		return feed.RelNone, fmt.Errorf("%w: relation %x", ErrCorrupt, v)
	}
	return feed.Relation(v[0]), nil
}

func encodeNote(n int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(n)) }

func decodeNote(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: note of %d bytes, want 8", ErrCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// decodeEntry decodes the stored value of the entry key for (author, seq)
// and checks that it is that entry.
func decodeEntry(author feed.ID, seq uint64, v []byte) (*feed.Entry, error) {
	e, err := feed.Decode(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s seq %d: %w", ErrCorrupt, author.Short(), seq, err)
	}
	if e.Author != author || e.Seq != seq {
		return nil, fmt.Errorf("%w: key %s seq %d holds %s seq %d", ErrCorrupt, author.Short(), seq, e.Author.Short(), e.Seq)
	}
	return e, nil
}

// decodeEntryKey splits an entry key.
func decodeEntryKey(k []byte) (author feed.ID, seq uint64, err error) {
	if len(k) != entryKeyLen || k[0] != prefixEntry {
		return author, 0, fmt.Errorf("%w: entry key %x", ErrCorrupt, k)
	}
	author, _ = keyID(k, 1)
	return author, binary.BigEndian.Uint64(k[1+idLen:]), nil
}

// checkEncoding checks, without decoding it, that v looks like the stored
// encoding of the entry key for (author, seq): version, author and seq in
// place. Readers that hand encodings on (ebt) leave the rest to the peer
// that decodes them.
func checkEncoding(author feed.ID, seq uint64, v []byte) error {
	const seqAt = 1 + idLen
	if len(v) < seqAt+8 || v[0] != feed.Version || !bytes.Equal(v[1:seqAt], author[:]) || binary.BigEndian.Uint64(v[seqAt:]) != seq {
		return fmt.Errorf("%w: key %s seq %d holds another entry", ErrCorrupt, author.Short(), seq)
	}
	return nil
}
