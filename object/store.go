package object

import (
	"fmt"

	"github.com/ipfs/go-cid"
)

// Chunk is one chunk of an object: its index and its bytes.
type Chunk struct {
	Index uint64
	Data  []byte
}

// HashSink stores verified tree hashes (store.Objects satisfies it).
type HashSink interface {
	PutHashes(id cid.Cid, hashes map[Bin][]byte) error
}

// MaxHashBatch is how many hashes PutTreeHashes stores per PutHashes call
// (store.MaxPutHashes).
const MaxHashBatch = 256

// PutTreeHashes stores every hash of t below the root that covers content:
// what Serve needs (through ObjectSource.GetHash) to send the uncles of any
// chunk. A seeder that built the tree calls it once; a fetcher stores the
// uncles it verifies as it goes.
func PutTreeHashes(dst HashSink, id cid.Cid, t *Tree) error {
	n := t.Chunks()
	batch := make(map[Bin][]byte, MaxHashBatch)
	for l := uint(0); l < t.Info().Height(); l++ {
		for o := uint64(0); o<<l < n; o++ {
			b := NewBin(l, o)
			batch[b] = t.Node(b)
			if len(batch) == MaxHashBatch {
				if err := dst.PutHashes(id, batch); err != nil {
					return fmt.Errorf("object: put tree hashes: %w", err)
				}
				clear(batch)
			}
		}
	}
	if len(batch) > 0 {
		if err := dst.PutHashes(id, batch); err != nil {
			return fmt.Errorf("object: put tree hashes: %w", err)
		}
	}
	return nil
}
