package object

import (
	"bytes"
	"crypto/sha1" // selectable only to reproduce PPSPP swarm IDs
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/bits"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

// Hash is the hash function of a tree, named by its multihash code.
// The zero value means the default, SHA256, wherever a Config is read.
type Hash uint64

const (
	// SHA256 is the default hash (multihash sha2-256).
	SHA256 Hash = multihash.SHA2_256
	// SHA1 is the PPSPP/libswift hash (multihash sha1), kept to reproduce swarm IDs.
	SHA1 Hash = multihash.SHA1
)

// Chunk size limits. A chunk size is a power of two in [MinChunkSize, MaxChunkSize].
const (
	DefaultChunkSize = 16 << 10
	MinChunkSize     = 1 << 10
	MaxChunkSize     = 1 << 24
)

// CodecRoot is the multicodec of the ID of a multi-chunk object: the CID's
// multihash is the tree root, not a hash of the bytes. It is ours, taken from
// the multicodec private-use range (0x300000–0x3fffff), "7574" after the RFC.
const CodecRoot = 0x307574

var (
	// ErrBadHash reports a hash function other than SHA256 or SHA1.
	ErrBadHash = errors.New("object: unknown hash (want sha256 or sha1)")
	// ErrBadChunkSize reports a chunk size that is not a power of two in range.
	ErrBadChunkSize = fmt.Errorf("object: chunk size must be a power of two from %d to %d", MinChunkSize, MaxChunkSize)
	// ErrBadChunk reports a chunk, an uncle or an index that does not verify against the root.
	ErrBadChunk = errors.New("object: chunk does not verify")
	// ErrBadPeaks reports peak hashes that do not form an RFC 7574 peak list.
	ErrBadPeaks = errors.New("object: bad peak hashes")
)

// ParseHash parses "sha256" or "sha1" ("" is sha256).
func ParseHash(s string) (Hash, error) {
	switch s {
	case "", "sha256", "sha2-256":
		return SHA256, nil
	case "sha1":
		return SHA1, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrBadHash, s)
}

// String returns "sha256" or "sha1".
func (h Hash) String() string {
	switch h {
	case SHA256:
		return "sha256"
	case SHA1:
		return "sha1"
	}
	return fmt.Sprintf("hash(%#x)", uint64(h))
}

// Size returns the length of a digest in bytes, 0 for an unknown hash.
func (h Hash) Size() int {
	switch h {
	case SHA256:
		return sha256.Size
	case SHA1:
		return sha1.Size
	}
	return 0
}

func (h Hash) new() hash.Hash {
	if h == SHA1 {
		return sha1.New()
	}
	return sha256.New()
}

func (h Hash) Valid() bool { return h == SHA256 || h == SHA1 }

// Config chooses how an object is cut and hashed. The zero value is SHA-256
// with 16 KiB chunks.
type Config struct {
	Hash      Hash // zero: SHA256
	ChunkSize int  // zero: DefaultChunkSize
}

// fill returns c with defaults filled in, or an error if c is invalid.
func (c Config) fill() (Config, error) {
	if c.Hash == 0 {
		c.Hash = SHA256
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if !c.Hash.Valid() {
		return c, fmt.Errorf("%w: %v", ErrBadHash, c.Hash)
	}
	if err := CheckChunkSize(c.ChunkSize); err != nil {
		return c, err
	}
	return c, nil
}

// CheckChunkSize reports whether n is a power of two in [MinChunkSize, MaxChunkSize].
func CheckChunkSize(n int) error {
	if n < MinChunkSize || n > MaxChunkSize || n&(n-1) != 0 {
		return fmt.Errorf("%w: %d", ErrBadChunkSize, n)
	}
	return nil
}

// Info is what a peer must know of an object to verify its chunks: the
// hash, the chunk size, the size in bytes (from the peak hashes) and the root.
type Info struct {
	Hash      Hash
	ChunkSize int
	Size      int64
	Root      []byte
}

// Chunks returns the number of chunks: ⌈Size/ChunkSize⌉, and 1 for an empty
// object (one empty chunk). It returns 0 if the chunk size or size is invalid.
func (in Info) Chunks() uint64 {
	if CheckChunkSize(in.ChunkSize) != nil || in.Size < 0 {
		return 0
	}
	n := (uint64(in.Size) + uint64(in.ChunkSize) - 1) / uint64(in.ChunkSize)
	return max(n, 1)
}

// ChunkLen returns the length chunk i must have.
func (in Info) ChunkLen(i uint64) int {
	rest := uint64(in.Size) - i*uint64(in.ChunkSize)
	return int(min(rest, uint64(in.ChunkSize)))
}

// Height returns the layer of the root: the smallest k with 2^k ≥ Chunks().
func (in Info) Height() uint { return coverLayer(in.Chunks()) }

// RootBin returns the bin of the root: the top of the smallest tree covering
// every chunk.
func (in Info) RootBin() Bin { return NewBin(in.Height(), 0) }

// coverLayer returns the smallest k with 2^k ≥ n (0 for n ≤ 1).
func coverLayer(n uint64) uint {
	if n <= 1 {
		return 0
	}
	return uint(bits.Len64(n - 1))
}

// ID returns the object's CIDv1. A single-chunk object gets a raw CID whose
// multihash is the hash of its bytes (for SHA-256, the CID IPFS gives a raw
// leaf). A larger object gets CodecRoot with the tree root as the multihash.
func (in Info) ID() cid.Cid {
	codec := uint64(CodecRoot)
	if in.Chunks() == 1 {
		codec = cid.Raw
	}
	mh, err := multihash.Encode(in.Root, uint64(in.Hash))
	if err != nil {
		return cid.Undef // only for an Info not from a Tree
	}
	return cid.NewCidV1(codec, mh)
}

// VerifyChunk checks chunk index against the root: data must have the
// chunk's exact length, and uncles are the sibling hashes on the path from the
// chunk up to the root, the chunk's sibling first (Height() of them; a sibling
// wholly past the end of the object is the zero hash). It returns nil or an
// error wrapping ErrBadChunk.
func (in Info) VerifyChunk(index uint64, data []byte, uncles [][]byte) error {
	if !in.Hash.Valid() || in.Size < 0 || CheckChunkSize(in.ChunkSize) != nil || len(in.Root) != in.Hash.Size() {
		return fmt.Errorf("%w: bad object info", ErrBadChunk)
	}
	n := in.Chunks()
	if index >= n {
		return fmt.Errorf("%w: chunk %d of %d", ErrBadChunk, index, n)
	}
	if len(data) != in.ChunkLen(index) {
		return fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrBadChunk, index, len(data), in.ChunkLen(index))
	}
	if k := in.Height(); uint(len(uncles)) != k {
		return fmt.Errorf("%w: %d uncle hashes, want %d", ErrBadChunk, len(uncles), k)
	}
	hs := in.Hash.Size()
	hh := in.Hash.new()
	sum := leafHash(hh, data)
	b := ChunkBin(index)
	for _, u := range uncles {
		if len(u) != hs {
			return fmt.Errorf("%w: uncle of %d bytes", ErrBadChunk, len(u))
		}
		if b.IsLeft() {
			sum = nodeHash(hh, sum, u)
		} else {
			sum = nodeHash(hh, u, sum)
		}
		b = b.Parent()
	}
	if !bytes.Equal(sum, in.Root) {
		return fmt.Errorf("%w: chunk %d", ErrBadChunk, index)
	}
	return nil
}

func leafHash(h hash.Hash, data []byte) []byte {
	h.Reset()
	h.Write(data)
	return h.Sum(nil)
}

func nodeHash(h hash.Hash, left, right []byte) []byte {
	h.Reset()
	h.Write(left)
	h.Write(right)
	return h.Sum(nil)
}

// Tree is the RFC 7574 Merkle tree of an object. It holds every hash of the
// smallest covering tree that touches content (about 2 per chunk), never the
// content. A Tree is immutable once built and safe for concurrent use.
type Tree struct {
	info Info
	// levels[l] holds the hashes of layer l, offsets 0 up to the last node
	// that covers content, concatenated. Nodes past them are zero hashes.
	levels [][]byte
}

// Build reads r to the end, chunk by chunk, and returns its tree. Memory is
// one chunk buffer plus the hashes.
func Build(r io.Reader, cfg Config) (*Tree, error) {
	cfg, err := cfg.fill()
	if err != nil {
		return nil, err
	}
	hh := cfg.Hash.new()
	buf := make([]byte, cfg.ChunkSize)
	var leaves []byte
	var size int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 || len(leaves) == 0 && err == io.EOF {
			// An empty object is one empty chunk.
			leaves = append(leaves, leafHash(hh, buf[:n])...)
			size += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("object: read chunk %d: %w", len(leaves)/cfg.Hash.Size(), err)
		}
	}
	t := &Tree{info: Info{Hash: cfg.Hash, ChunkSize: cfg.ChunkSize, Size: size}}
	t.levels = buildLevels(hh, cfg.Hash.Size(), leaves)
	top := t.levels[len(t.levels)-1]
	t.info.Root = top[:cfg.Hash.Size():cfg.Hash.Size()]
	return t, nil
}

// buildLevels hashes the layers above the leaves up to the covering root.
// A right child wholly past the content is the zero hash.
func buildLevels(hh hash.Hash, hs int, leaves []byte) [][]byte {
	levels := [][]byte{leaves}
	zero := make([]byte, hs)
	for cur := leaves; len(cur) > hs; {
		n := len(cur) / hs
		next := make([]byte, 0, (n+1)/2*hs)
		for i := 0; i < n; i += 2 {
			right := zero
			if i+1 < n {
				right = cur[(i+1)*hs : (i+2)*hs]
			}
			next = append(next, nodeHash(hh, cur[i*hs:(i+1)*hs], right)...)
		}
		levels = append(levels, next)
		cur = next
	}
	return levels
}

// Info returns what a peer needs to verify chunks of this object.
func (t *Tree) Info() Info {
	in := t.info
	in.Root = bytes.Clone(in.Root)
	return in
}

// Root returns the root hash: the top of the smallest tree covering every chunk.
func (t *Tree) Root() []byte { return bytes.Clone(t.info.Root) }

// Size returns the object's size in bytes.
func (t *Tree) Size() int64 { return t.info.Size }

// Chunks returns the number of chunks (1 for an empty object).
func (t *Tree) Chunks() uint64 { return t.info.Chunks() }

// ChunkSize returns the chunk size in bytes.
func (t *Tree) ChunkSize() int { return t.info.ChunkSize }

// Hash returns the tree's hash function.
func (t *Tree) Hash() Hash { return t.info.Hash }

// ID returns the object's CIDv1 (see Info.ID).
func (t *Tree) ID() cid.Cid { return t.info.ID() }

// Node returns the hash of bin b: a zero hash if b lies wholly past the
// content inside the covering tree, nil if b is above the root.
func (t *Tree) Node(b Bin) []byte {
	l := b.Layer()
	if l >= uint(len(t.levels)) {
		return nil
	}
	hs := t.info.Hash.Size()
	o := b.Offset()
	if o >= uint64(len(t.levels[l])/hs) {
		if o >= uint64(1)<<(uint(len(t.levels))-1-l) {
			return nil
		}
		return make([]byte, hs)
	}
	return bytes.Clone(t.levels[l][o*uint64(hs) : (o+1)*uint64(hs)])
}

// Uncles returns the sibling hashes from chunk index up to the root, the
// chunk's sibling first: what VerifyChunk takes. It returns nil if index is
// past the last chunk.
func (t *Tree) Uncles(index uint64) [][]byte {
	if index >= t.Chunks() {
		return nil
	}
	uncles := make([][]byte, 0, len(t.levels)-1)
	for b := ChunkBin(index); b.Layer() < uint(len(t.levels)-1); b = b.Parent() {
		uncles = append(uncles, t.Node(b.Sibling()))
	}
	return uncles
}

// Peak is a peak hash: the root of one of the largest complete subtrees
// that together cover the content, left to right (RFC 7574 §5.2, §6.1.2).
type Peak struct {
	Bin  Bin
	Hash []byte
}

// Peaks returns the peak hashes: one per set bit of Chunks(), largest first.
// Their bins give the number of chunks; with the root they prove the size.
func (t *Tree) Peaks() []Peak {
	n := t.Chunks()
	var peaks []Peak
	var off uint64
	for l := 63; l >= 0; l-- {
		if n&(uint64(1)<<l) == 0 {
			continue
		}
		b := NewBin(uint(l), off>>l)
		peaks = append(peaks, Peak{Bin: b, Hash: t.Node(b)})
		off += uint64(1) << l
	}
	return peaks
}

// RootFromPeaks checks that peaks are an RFC 7574 peak list (complete
// subtrees, left to right from chunk 0, strictly shrinking) and returns the
// root they derive and the number of chunks they cover. The root is built
// from the last peak up: a left node is hashed with a zero right sibling, a
// right node with the peak before it.
func RootFromPeaks(h Hash, peaks []Peak) (root []byte, chunks uint64, err error) {
	if !h.Valid() {
		return nil, 0, fmt.Errorf("%w: %v", ErrBadHash, h)
	}
	if len(peaks) == 0 || len(peaks) > 64 {
		return nil, 0, fmt.Errorf("%w: %d peaks", ErrBadPeaks, len(peaks))
	}
	for i, p := range peaks {
		if len(p.Hash) != h.Size() || p.Bin.Layer() >= 63 {
			return nil, 0, fmt.Errorf("%w: peak %d", ErrBadPeaks, i)
		}
		if p.Bin.BaseOffset() != chunks || i > 0 && p.Bin.Layer() >= peaks[i-1].Bin.Layer() {
			return nil, 0, fmt.Errorf("%w: peak %d at %v", ErrBadPeaks, i, p.Bin)
		}
		chunks += p.Bin.BaseLength()
	}
	hh := h.new()
	zero := make([]byte, h.Size())
	c := len(peaks) - 1
	b, sum := peaks[c].Bin, bytes.Clone(peaks[c].Hash)
	for c--; c >= 0; {
		if b.IsLeft() {
			sum = nodeHash(hh, sum, zero)
		} else {
			if peaks[c].Bin != b.Sibling() {
				return nil, 0, fmt.Errorf("%w: peak %d at %v", ErrBadPeaks, c, peaks[c].Bin)
			}
			sum = nodeHash(hh, peaks[c].Hash, sum)
			c--
		}
		b = b.Parent()
	}
	return sum, chunks, nil
}
