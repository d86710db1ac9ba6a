package object

import (
	"bytes"
	"errors"
	"testing"
)

// rangeOf returns chunks first..first+k-1 of data (chunk size cs) as one
// slice, and a lookup serving the tree's hashes of the bins in uncles.
func rangeOf(tr *Tree, data []byte, cs int, first, k uint64) ([]byte, func(Bin) []byte) {
	lo := min(first*uint64(cs), uint64(len(data)))
	hi := min((first+k)*uint64(cs), uint64(len(data)))
	sent := map[Bin][]byte{}
	for _, u := range tr.Info().RangeUncles(first, k) {
		sent[u] = tr.Node(u)
	}
	return data[lo:hi], func(b Bin) []byte { return sent[b] }
}

// TestVerifyRange: every run of chunks of objects of 1 to 19 chunks
// verifies with exactly the uncles RangeUncles names, proves hashes equal
// to the tree's, and fails with any bit of the data or of an uncle
// flipped, with an uncle missing, or with a byte too many or too few.
func TestVerifyRange(t *testing.T) {
	const cs = MinChunkSize
	for n := 1; n <= 19; n++ {
		data := make([]byte, n*cs-cs/3)
		if n == 1 {
			data = data[:0]
		}
		for i := range data {
			data[i] = byte(i*31 + n)
		}
		tr := build(t, data, Config{ChunkSize: cs})
		in := tr.Info()
		for first := uint64(0); first < tr.Chunks(); first++ {
			for k := uint64(1); first+k <= tr.Chunks(); k++ {
				run, known := rangeOf(tr, data, cs, first, k)
				chunks, proved, err := in.VerifyRange(first, run, known)
				if err != nil {
					t.Fatalf("%d chunks, run %d+%d: %v", n, first, k, err)
				}
				if uint64(len(chunks)) != k || !bytes.Equal(bytes.Join(chunks, nil), run) {
					t.Fatalf("%d chunks, run %d+%d: %d chunks back", n, first, k, len(chunks))
				}
				for _, p := range proved {
					if !bytes.Equal(p.Hash, tr.Node(p.Bin)) {
						t.Fatalf("%d chunks, run %d+%d: proved %v wrong", n, first, k, p.Bin)
					}
				}
				// Each chunk's own uncles are among what was proved or
				// lie past the content: a seeder holding the run can
				// serve each chunk alone.
				have := map[Bin]bool{}
				for _, p := range proved {
					have[p.Bin] = true
				}
				for c := first; c < first+k; c++ {
					for b := ChunkBin(c); b.Layer() < in.Height(); b = b.Parent() {
						if u := b.Sibling(); !have[u] && u.BaseOffset() < tr.Chunks() {
							t.Fatalf("%d chunks, run %d+%d: uncle %v of chunk %d not proved", n, first, k, u, c)
						}
					}
				}
				tamper(t, in, first, run, known, tr.Info().RangeUncles(first, k))
			}
		}
	}
}

func tamper(t *testing.T, in Info, first uint64, run []byte, known func(Bin) []byte, uncles []Bin) {
	t.Helper()
	bad := func(what string, run []byte, known func(Bin) []byte) {
		t.Helper()
		if _, _, err := in.VerifyRange(first, run, known); !errors.Is(err, ErrBadChunk) {
			t.Fatalf("run at %d, %s: err = %v", first, what, err)
		}
	}
	if len(run) > 0 {
		flipped := bytes.Clone(run)
		flipped[len(run)/2] ^= 4
		bad("a data bit flipped", flipped, known)
		bad("a byte short", run[:len(run)-1], known)
	}
	bad("a byte too many", append(bytes.Clone(run), 0), known)
	for _, u := range uncles {
		bad("uncle "+u.String()+" missing", run, func(b Bin) []byte {
			if b == u {
				return nil
			}
			return known(b)
		})
		bad("uncle "+u.String()+" flipped", run, func(b Bin) []byte {
			h := bytes.Clone(known(b))
			if b == u {
				h[0] ^= 1
			}
			return h
		})
	}
}

func TestSubtrees(t *testing.T) {
	for _, c := range []struct {
		first, count uint64
		want         []Bin
	}{
		{0, 1, []Bin{0}},
		{0, 4, []Bin{3}},
		{1, 4, []Bin{2, 5, 8}},
		{3, 6, []Bin{6, 11, 16}},
		{16, 16, []Bin{NewBin(4, 1)}},
	} {
		got := Subtrees(c.first, c.count)
		if len(got) != len(c.want) {
			t.Errorf("Subtrees(%d, %d) = %v, want %v", c.first, c.count, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Subtrees(%d, %d) = %v, want %v", c.first, c.count, got, c.want)
			}
		}
	}
}

func FuzzVerifyRange(f *testing.F) {
	f.Add([]byte("123\n"), uint64(0), uint8(1), uint16(0), false)
	f.Add(bytes.Repeat([]byte("$"), 5000), uint64(1), uint8(3), uint16(9), true)
	f.Fuzz(func(t *testing.T, data []byte, first uint64, k uint8, flip uint16, sha1 bool) {
		data = data[:min(len(data), 16<<10)]
		tr := fuzzTree(t, data, sha1)
		in := tr.Info()
		// Garbage must not panic.
		_, _, _ = in.VerifyRange(first, data, func(Bin) []byte { return data })
		first %= tr.Chunks()
		count := max(1, uint64(k)%(tr.Chunks()-first+1))
		run, known := rangeOf(tr, data, 1024, first, count)
		if _, _, err := in.VerifyRange(first, run, known); err != nil {
			t.Fatalf("run %d+%d of %d: %v", first, count, tr.Chunks(), err)
		}
		if len(run) == 0 {
			return
		}
		run = bytes.Clone(run)
		run[int(flip)%len(run)] ^= 1 << (flip % 8)
		if _, _, err := in.VerifyRange(first, run, known); !errors.Is(err, ErrBadChunk) {
			t.Fatalf("tampered run %d+%d verified: %v", first, count, err)
		}
	})
}
