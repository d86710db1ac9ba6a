package object

import (
	"fmt"
	"math/bits"
)

// Bin names a node of the Merkle tree by its RFC 7574 bin number: chunk i is
// bin 2i, and the node at layer l, offset o (covering chunks o·2^l up to
// (o+1)·2^l − 1) is bin (2o+1)·2^l − 1. The layer of a bin is its number of
// trailing one bits.
type Bin uint64

// NewBin returns the bin at layer (0 = a chunk) and offset (counted in nodes
// of that layer, from 0). layer must be below 63.
func NewBin(layer uint, offset uint64) Bin {
	return Bin(offset<<(layer+1) | (1<<layer - 1))
}

// ChunkBin returns the bin of chunk i: 2i.
func ChunkBin(i uint64) Bin { return Bin(i << 1) }

// Layer returns the height of b above the chunks (0 for a chunk).
func (b Bin) Layer() uint { return uint(bits.TrailingZeros64(^uint64(b))) }

// Offset returns the position of b among the nodes of its layer.
func (b Bin) Offset() uint64 {
	l := b.Layer()
	if l >= 63 {
		return 0
	}
	return uint64(b) >> (l + 1)
}

// IsBase reports whether b is a chunk (layer 0).
func (b Bin) IsBase() bool { return b&1 == 0 }

// IsLeft reports whether b is the left child of its parent.
func (b Bin) IsLeft() bool { return b.Offset()&1 == 0 }

// IsRight reports whether b is the right child of its parent.
func (b Bin) IsRight() bool { return !b.IsLeft() }

// Parent returns the node one layer up that covers b.
func (b Bin) Parent() Bin { return NewBin(b.Layer()+1, b.Offset()>>1) }

// Sibling returns the other child of b's parent.
func (b Bin) Sibling() Bin { return b ^ Bin(uint64(1)<<(b.Layer()+1)) }

// Left returns b's left child; a chunk has none and returns itself.
func (b Bin) Left() Bin {
	if b.IsBase() {
		return b
	}
	return b - Bin(uint64(1)<<(b.Layer()-1))
}

// Right returns b's right child; a chunk has none and returns itself.
func (b Bin) Right() Bin {
	if b.IsBase() {
		return b
	}
	return b + Bin(uint64(1)<<(b.Layer()-1))
}

// BaseLeft returns the bin of the first chunk b covers.
func (b Bin) BaseLeft() Bin { return b &^ Bin(uint64(1)<<(b.Layer()+1)-1) }

// BaseRight returns the bin of the last chunk b covers.
func (b Bin) BaseRight() Bin { return b + Bin(uint64(1)<<b.Layer()-1) }

// BaseOffset returns the index of the first chunk b covers.
func (b Bin) BaseOffset() uint64 { return uint64(b.BaseLeft()) >> 1 }

// BaseLength returns the number of chunks b covers: 2^layer.
func (b Bin) BaseLength() uint64 { return uint64(1) << b.Layer() }

// String prints the bin number with its layer and offset, "5(1,1)".
func (b Bin) String() string { return fmt.Sprintf("%d(%d,%d)", uint64(b), b.Layer(), b.Offset()) }
