package object

import (
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
)

// InfoFromID returns the hash and root an object ID commits to: the Info of
// the object with Size and ChunkSize left zero.
func InfoFromID(id cid.Cid) (Info, error) {
	if !id.Defined() || (id.Prefix().Codec != cid.Raw && id.Prefix().Codec != CodecRoot) {
		return Info{}, fmt.Errorf("object: %s is not an object ID (want a raw or swarm-root CIDv1)", id)
	}
	dm, err := multihash.Decode(id.Hash())
	if err != nil {
		return Info{}, fmt.Errorf("object: object ID %s: %w", id, err)
	}
	h := Hash(dm.Code)
	if !h.Valid() || len(dm.Digest) != h.Size() {
		return Info{}, fmt.Errorf("%w: object ID %s", ErrBadHash, id)
	}
	return Info{Hash: h, Root: dm.Digest}, nil
}
