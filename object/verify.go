package object

import (
	"bytes"
	"fmt"
)

// BinHash is one tree node: its bin and its hash.
type BinHash struct {
	Bin  Bin
	Hash []byte
}

// MaxRangeUncles bounds the uncles a run of chunks needs, however long
// and wherever it lies: at most two subtrees per layer cover it, and each
// needs its sibling on every layer up to the root (a tree is at most 54
// layers high: 2^63 bytes in 1 KiB chunks).
const MaxRangeUncles = 2 * 54

// Subtrees returns the maximal complete subtrees that cover chunks first
// to first+count-1, left to right: the smallest set of bins whose leaves
// are exactly those chunks.
func Subtrees(first, count uint64) []Bin {
	var out []Bin
	for a, b := first, first+count; a < b; {
		l := uint(0)
		for l < 63 && a%(uint64(1)<<(l+1)) == 0 && a+uint64(1)<<(l+1) <= b {
			l++
		}
		out = append(out, NewBin(l, a>>l))
		a += uint64(1) << l
	}
	return out
}

// RangeUncles returns the bins a receiver of chunks first to
// first+count-1 needs, beyond the chunks themselves, to verify them with
// VerifyRange, in the order it needs them: the siblings on the path from
// each covering subtree (Subtrees) to the root, except those the run
// itself gives (another covering subtree, or a node an earlier path
// already reached) and those wholly past the content (the zero hash).
func (in Info) RangeUncles(first, count uint64) []Bin {
	n, h := in.Chunks(), in.Height()
	subtrees := Subtrees(first, count)
	given := make(map[Bin]bool, len(subtrees)+int(h))
	for _, s := range subtrees {
		given[s] = true
	}
	var out []Bin
	for _, s := range subtrees {
		for b := s; b.Layer() < h; b = b.Parent() {
			if u := b.Sibling(); !given[u] && u.BaseOffset() < n {
				out = append(out, u)
				given[u] = true
			}
			given[b.Parent()] = true
		}
	}
	return out
}

// VerifyRange checks chunks first to first+k-1 against the root, where
// data is their bytes concatenated (each chunk of its exact length, so k
// follows from len(data)) and known returns the hash of a bin the sender
// supplied (nil if none; it need not be trustworthy: a wrong one fails
// the check). Hashes inside the run are computed from data; siblings past
// the content are the zero hash. It returns the run's chunks (slices of
// data) and every tree hash the check proved below the root (leaves,
// inner nodes, the uncles used and the nodes on their paths), which a
// seeder needs to serve these chunks again; or an error wrapping
// ErrBadChunk.
func (in Info) VerifyRange(first uint64, data []byte, known func(Bin) []byte) (chunks [][]byte, proved []BinHash, err error) {
	if !in.Hash.Valid() || in.Size < 0 || CheckChunkSize(in.ChunkSize) != nil || len(in.Root) != in.Hash.Size() {
		return nil, nil, fmt.Errorf("%w: bad object info", ErrBadChunk)
	}
	n := in.Chunks()
	if first >= n {
		return nil, nil, fmt.Errorf("%w: chunk %d of %d", ErrBadChunk, first, n)
	}
	for c, rest := first, data; len(rest) > 0 || c == first; c++ {
		if c >= n {
			return nil, nil, fmt.Errorf("%w: %d bytes past the last chunk", ErrBadChunk, len(rest))
		}
		l := in.ChunkLen(c)
		if len(rest) < l {
			return nil, nil, fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrBadChunk, c, len(rest), l)
		}
		chunks, rest = append(chunks, rest[:l:l]), rest[l:]
	}
	k := uint64(len(chunks))
	hh := in.Hash.new()
	hs := in.Hash.Size()
	height := in.Height()
	zero := make([]byte, hs)
	hashes := make(map[Bin][]byte, 2*k+uint64(height))
	proved = make([]BinHash, 0, 2*k+uint64(height))
	put := func(b Bin, h []byte) {
		hashes[b] = h
		proved = append(proved, BinHash{Bin: b, Hash: h})
	}
	for i, c := range chunks {
		put(ChunkBin(first+uint64(i)), leafHash(hh, c))
	}
	subtrees := Subtrees(first, k)
	for _, s := range subtrees {
		for l := uint(1); l <= s.Layer(); l++ {
			base := s.BaseOffset() >> l
			for o := range s.BaseLength() >> l {
				b := NewBin(l, base+o)
				put(b, nodeHash(hh, hashes[b.Left()], hashes[b.Right()]))
			}
		}
	}
	for _, s := range subtrees {
		sum := hashes[s]
		for b := s; b.Layer() < height; b = b.Parent() {
			u := b.Sibling()
			uh, ok := hashes[u]
			switch {
			case ok:
			case u.BaseOffset() >= n:
				uh = zero
			default:
				if uh = known(u); len(uh) != hs {
					return nil, nil, fmt.Errorf("%w: chunk %d: uncle %v not sent", ErrBadChunk, s.BaseOffset(), u)
				}
				put(u, uh)
			}
			if b.IsLeft() {
				sum = nodeHash(hh, sum, uh)
			} else {
				sum = nodeHash(hh, uh, sum)
			}
			if p := b.Parent(); p.Layer() < height {
				if _, ok := hashes[p]; !ok {
					put(p, sum)
				}
			}
		}
		if !bytes.Equal(sum, in.Root) {
			return nil, nil, fmt.Errorf("%w: chunks %d to %d", ErrBadChunk, first, first+k-1)
		}
	}
	return chunks, proved, nil
}
