package object

import (
	"fmt"
	"math/bits"
)

// SubtreeRoot returns the hash of the complete subtree whose leaves are
// chunks, left to right: len(chunks) must be a power of two (1 gives the
// leaf hash of chunks[0]). Chunks may be of any length, empty included;
// no padding applies, as every leaf is present. A live stream's publisher
// signs such roots (munros) and its viewers recompute them.
func (h Hash) SubtreeRoot(chunks [][]byte) ([]byte, error) {
	n := len(chunks)
	if !h.Valid() {
		return nil, ErrBadHash
	}
	if n == 0 || bits.OnesCount(uint(n)) != 1 {
		return nil, fmt.Errorf("object: subtree of %d leaves (want a power of two)", n)
	}
	hh := h.new()
	level := make([][]byte, n)
	for i, c := range chunks {
		level[i] = leafHash(hh, c)
	}
	for len(level) > 1 {
		for i := range len(level) / 2 {
			level[i] = nodeHash(hh, level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0], nil
}
