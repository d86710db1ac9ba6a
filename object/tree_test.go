package object

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/bits"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
)

func build(t testing.TB, data []byte, cfg Config) *Tree {
	t.Helper()
	tr, err := Build(bytes.NewReader(data), cfg)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return tr
}

// TestLibswiftVectors reproduces the two public vectors of libswift's
// tests/hashtest.cpp (SHA-1, 1 KiB chunks): the root is the PPSPP swarm ID.
func TestLibswiftVectors(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		leaves []string
		root   string
	}{
		{"123", []byte("123\n"),
			[]string{"a8fdc205a9f19cc1c7507a60c4f01b13d11d7fd0"},
			"a8fdc205a9f19cc1c7507a60c4f01b13d11d7fd0"},
		{"456", bytes.Repeat([]byte("$"), 1028),
			[]string{"4d38c7459a659d769bb956c2d758d266008199a4", "a923e4b60d2a2a2a5ede87479e0314b028e3ae60"},
			"5b53677d3a695f29f1b4e18ab6d705312ef7f8c3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := build(t, tt.data, Config{Hash: SHA1, ChunkSize: 1024})
			if got := hex.EncodeToString(tr.Root()); got != tt.root {
				t.Errorf("root = %s, want %s", got, tt.root)
			}
			if tr.Size() != int64(len(tt.data)) || tr.Chunks() != uint64(len(tt.leaves)) {
				t.Errorf("size, chunks = %d, %d, want %d, %d", tr.Size(), tr.Chunks(), len(tt.data), len(tt.leaves))
			}
			for i, want := range tt.leaves {
				if got := hex.EncodeToString(tr.Node(ChunkBin(uint64(i)))); got != want {
					t.Errorf("chunk %d hash = %s, want %s", i, got, want)
				}
			}
		})
	}
}

func h256(parts ...[]byte) []byte {
	s := sha256.Sum256(bytes.Join(parts, nil))
	return s[:]
}

// TestTreeRules checks RFC 7574 trees computed by hand: SHA-256, 1 KiB
// chunks, the last chunk short, nodes past the content zero hashes.
func TestTreeRules(t *testing.T) {
	const cs = 1024
	chunk := func(i, n int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, n) }
	z := make([]byte, sha256.Size)
	l := func(i, n int) []byte { return h256(chunk(i, n)) }
	tests := []struct {
		name   string
		chunks [][]byte
		root   []byte
	}{
		{"empty", nil, h256(nil)},
		{"one byte", [][]byte{chunk(0, 1)}, l(0, 1)},
		{"one full chunk", [][]byte{chunk(0, cs)}, l(0, cs)},
		{"two", [][]byte{chunk(0, cs), chunk(1, 7)}, h256(l(0, cs), l(1, 7))},
		{"three", [][]byte{chunk(0, cs), chunk(1, cs), chunk(2, 1)},
			h256(h256(l(0, cs), l(1, cs)), h256(l(2, 1), z))},
		{"four", [][]byte{chunk(0, cs), chunk(1, cs), chunk(2, cs), chunk(3, cs)},
			h256(h256(l(0, cs), l(1, cs)), h256(l(2, cs), l(3, cs)))},
		{"five", [][]byte{chunk(0, cs), chunk(1, cs), chunk(2, cs), chunk(3, cs), chunk(4, 3)},
			h256(h256(h256(l(0, cs), l(1, cs)), h256(l(2, cs), l(3, cs))), h256(h256(l(4, 3), z), z))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Join(tt.chunks, nil)
			tr := build(t, data, Config{ChunkSize: cs})
			if !bytes.Equal(tr.Root(), tt.root) {
				t.Errorf("root = %x, want %x", tr.Root(), tt.root)
			}
			wantChunks := max(uint64(len(tt.chunks)), 1)
			if tr.Chunks() != wantChunks || tr.Size() != int64(len(data)) {
				t.Errorf("chunks, size = %d, %d, want %d, %d", tr.Chunks(), tr.Size(), wantChunks, len(data))
			}
			if got := tr.Node(tr.Info().RootBin()); !bytes.Equal(got, tt.root) {
				t.Errorf("Node(root bin) = %x, want the root", got)
			}
			if tr.Node(tr.Info().RootBin().Parent()) != nil {
				t.Errorf("Node above the root is not nil")
			}
		})
	}
}

func TestBuildStreams(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 700) // 11200 bytes, 11 chunks of 1 KiB
	want := build(t, data, Config{ChunkSize: 1024}).Root()
	got, err := Build(iotest.OneByteReader(bytes.NewReader(data)), Config{ChunkSize: 1024})
	if err != nil || !bytes.Equal(got.Root(), want) {
		t.Errorf("one byte at a time: root %x, %v; want %x", got.Root(), err, want)
	}
	boom := errors.New("boom")
	if _, err := Build(iotest.ErrReader(boom), Config{}); !errors.Is(err, boom) {
		t.Errorf("read error = %v, want %v", err, boom)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		cfg     Config
		wantErr error
		chunk   int
		hash    Hash
	}{
		{Config{}, nil, DefaultChunkSize, SHA256},
		{Config{Hash: SHA1, ChunkSize: 1024}, nil, 1024, SHA1},
		{Config{ChunkSize: MaxChunkSize}, nil, MaxChunkSize, SHA256},
		{Config{ChunkSize: 512}, ErrBadChunkSize, 0, 0},
		{Config{ChunkSize: 3072}, ErrBadChunkSize, 0, 0},
		{Config{ChunkSize: -1024}, ErrBadChunkSize, 0, 0},
		{Config{ChunkSize: 2 * MaxChunkSize}, ErrBadChunkSize, 0, 0},
		{Config{Hash: 0x13}, ErrBadHash, 0, 0},
	}
	for _, tt := range tests {
		tr, err := Build(strings.NewReader("x"), tt.cfg)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%+v: err = %v, want %v", tt.cfg, err, tt.wantErr)
			continue
		}
		if err == nil && (tr.ChunkSize() != tt.chunk || tr.Hash() != tt.hash) {
			t.Errorf("%+v: chunk, hash = %d, %v, want %d, %v", tt.cfg, tr.ChunkSize(), tr.Hash(), tt.chunk, tt.hash)
		}
	}
	for s, want := range map[string]Hash{"": SHA256, "sha256": SHA256, "sha1": SHA1} {
		if h, err := ParseHash(s); err != nil || h != want || (s != "" && h.String() != s) {
			t.Errorf("ParseHash(%q) = %v, %v", s, h, err)
		}
	}
	if _, err := ParseHash("md5"); !errors.Is(err, ErrBadHash) {
		t.Errorf("ParseHash(md5) = %v", err)
	}
}

func TestPeaks(t *testing.T) {
	for n := 1; n <= 19; n++ {
		for _, h := range []Hash{SHA256, SHA1} {
			tr := build(t, bytes.Repeat([]byte{byte(n)}, (n-1)*1024+5), Config{Hash: h, ChunkSize: 1024})
			peaks := tr.Peaks()
			root, chunks, err := RootFromPeaks(h, peaks)
			if err != nil || !bytes.Equal(root, tr.Root()) || chunks != uint64(n) {
				t.Errorf("%v, %d chunks: RootFromPeaks = %x, %d, %v; want %x, %d", h, n, root, chunks, err, tr.Root(), n)
			}
			if len(peaks) > 1 {
				if _, _, err := RootFromPeaks(h, peaks[1:]); !errors.Is(err, ErrBadPeaks) {
					t.Errorf("%d chunks, first peak dropped: err = %v", n, err)
				}
				swapped := append([]Peak{peaks[1], peaks[0]}, peaks[2:]...)
				if _, _, err := RootFromPeaks(h, swapped); !errors.Is(err, ErrBadPeaks) {
					t.Errorf("%d chunks, peaks swapped: err = %v", n, err)
				}
			}
			bad := append([]Peak(nil), peaks...)
			last := len(bad) - 1
			bad[last].Hash = bytes.Clone(bad[last].Hash)
			bad[last].Hash[0] ^= 1
			if root, _, _ := RootFromPeaks(h, bad); bytes.Equal(root, tr.Root()) {
				t.Errorf("%d chunks: a tampered peak derives the root", n)
			}
		}
	}
	if _, _, err := RootFromPeaks(SHA256, nil); !errors.Is(err, ErrBadPeaks) {
		t.Errorf("no peaks: err = %v", err)
	}
}

func TestID(t *testing.T) {
	one := bytes.Repeat([]byte("z"), 1024)
	two := append(bytes.Clone(one), 'z')
	tests := []struct {
		name  string
		data  []byte
		hash  Hash
		codec uint64
		want  string // "" = not checked here
	}{
		{"empty sha256", nil, SHA256, cid.Raw, feed.Hash(sha256.Sum256(nil)).String()},
		{"one chunk sha256", one, SHA256, cid.Raw, feed.Hash(sha256.Sum256(one)).String()},
		{"two chunks sha256", two, SHA256, CodecRoot, ""},
		{"one chunk sha1", one, SHA1, cid.Raw, ""},
		{"two chunks sha1", two, SHA1, CodecRoot, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := build(t, tt.data, Config{Hash: tt.hash, ChunkSize: 1024})
			id := tr.ID()
			if tt.want != "" && id.String() != tt.want {
				t.Errorf("ID = %s, want %s", id, tt.want)
			}
			p := id.Prefix()
			if p.Version != 1 || p.Codec != tt.codec || p.MhType != uint64(tt.hash) {
				t.Errorf("prefix = %+v, want v1 codec %#x mh %#x", p, tt.codec, uint64(tt.hash))
			}
			back, err := cid.Decode(id.String())
			if err != nil || !back.Equals(id) || !bytes.Equal(back.Hash()[2:], tr.Root()) {
				t.Errorf("decode %s = %v, %v", id, back, err)
			}
		})
	}
	s1 := sha1.Sum(one)
	if tr := build(t, one, Config{Hash: SHA1, ChunkSize: 1024}); !bytes.Equal(tr.Root(), s1[:]) {
		t.Errorf("single-chunk sha1 root = %x, want sha1 of the bytes %x", tr.Root(), s1)
	}
}

// TestVerifyChunk verifies every chunk of trees of 1..9 chunks with its
// uncles, then tampers with each input in turn.
func TestVerifyChunk(t *testing.T) {
	for n := 1; n <= 9; n++ {
		data := make([]byte, (n-1)*1024+100)
		for i := range data {
			data[i] = byte(i * 7 / 3)
		}
		tr := build(t, data, Config{ChunkSize: 1024})
		in := tr.Info()
		for i := uint64(0); i < tr.Chunks(); i++ {
			chunk := data[i*1024 : min((i+1)*1024, uint64(len(data)))]
			uncles := tr.Uncles(i)
			if err := in.VerifyChunk(i, chunk, uncles); err != nil {
				t.Fatalf("%d chunks, chunk %d: %v", n, i, err)
			}
			bad := bytes.Clone(chunk)
			bad[len(bad)/2] ^= 0x80
			if err := in.VerifyChunk(i, bad, uncles); !errors.Is(err, ErrBadChunk) {
				t.Errorf("%d chunks, chunk %d tampered: err = %v", n, i, err)
			}
			if err := in.VerifyChunk(i, chunk[:len(chunk)-1], uncles); !errors.Is(err, ErrBadChunk) {
				t.Errorf("%d chunks, chunk %d truncated: err = %v", n, i, err)
			}
			for u := range uncles {
				tampered := append([][]byte(nil), uncles...)
				tampered[u] = bytes.Clone(uncles[u])
				tampered[u][3] ^= 1
				if err := in.VerifyChunk(i, chunk, tampered); !errors.Is(err, ErrBadChunk) {
					t.Errorf("%d chunks, chunk %d, uncle %d tampered: err = %v", n, i, u, err)
				}
			}
			if len(uncles) > 0 {
				if err := in.VerifyChunk(i, chunk, uncles[1:]); !errors.Is(err, ErrBadChunk) {
					t.Errorf("%d chunks, chunk %d, an uncle short: err = %v", n, i, err)
				}
			}
		}
		if err := in.VerifyChunk(tr.Chunks(), nil, tr.Uncles(0)); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%d chunks: chunk past the end: err = %v", n, err)
		}
	}
}

// fuzzTree builds the tree of a fuzzed object: 1 KiB chunks, SHA-1 or
// SHA-256.
func fuzzTree(t *testing.T, data []byte, sha1 bool) *Tree {
	t.Helper()
	cfg := Config{ChunkSize: 1024}
	if sha1 {
		cfg.Hash = SHA1
	}
	return build(t, data, cfg)
}

func FuzzVerifyChunk(f *testing.F) {
	f.Add([]byte("123\n"), uint64(0), uint16(0), uint8(0), false)
	f.Add(bytes.Repeat([]byte("$"), 1028), uint64(1), uint16(3), uint8(0), true)
	f.Add(bytes.Repeat([]byte("ab"), 2600), uint64(4), uint16(700), uint8(2), false)
	f.Fuzz(func(t *testing.T, data []byte, index uint64, flip uint16, which uint8, sha1 bool) {
		data = data[:min(len(data), 16<<10)]
		tr := fuzzTree(t, data, sha1)
		in := tr.Info()
		// Garbage must not panic.
		_ = in.VerifyChunk(index, data, [][]byte{data, nil})
		_ = Info{Hash: Hash(which), ChunkSize: int(flip), Size: int64(index), Root: data}.VerifyChunk(index, data, nil)

		i := index % tr.Chunks()
		chunk := data[min(i*1024, uint64(len(data))):min((i+1)*1024, uint64(len(data)))]
		uncles := tr.Uncles(i)
		if err := in.VerifyChunk(i, chunk, uncles); err != nil {
			t.Fatalf("chunk %d of %d: %v", i, tr.Chunks(), err)
		}
		// Flip one bit of the chunk or of one uncle: it must not verify.
		target := bytes.Clone(chunk)
		if int(which) <= len(uncles) && which > 0 {
			uncles = append([][]byte(nil), uncles...)
			uncles[which-1] = bytes.Clone(uncles[which-1])
			target = uncles[which-1]
		} else {
			chunk = target
		}
		if len(target) == 0 {
			return // an empty chunk has no bit to flip
		}
		target[int(flip)%len(target)] ^= 1 << (flip % 8)
		if err := in.VerifyChunk(i, chunk, uncles); !errors.Is(err, ErrBadChunk) {
			t.Fatalf("tampered chunk %d (which %d) verified: %v", i, which, err)
		}
	})
}

// TestSubtreeRoot: a complete subtree's root is the root of the object
// made of the same chunks (same hashing, no padding needed), and a count
// that is not a power of two is refused.
func TestSubtreeRoot(t *testing.T) {
	const cs = MinChunkSize
	data := make([]byte, 8*cs)
	for i := range data {
		data[i] = byte(i * 7)
	}
	tree, err := Build(bytes.NewReader(data), Config{ChunkSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	for i := range 8 {
		chunks = append(chunks, data[i*cs:(i+1)*cs])
	}
	for _, k := range []int{1, 2, 4, 8} {
		got, err := SHA256.SubtreeRoot(chunks[:k])
		if err != nil {
			t.Fatal(err)
		}
		l := uint(bits.TrailingZeros(uint(k)))
		if want := tree.Node(NewBin(l, 0)); !bytes.Equal(got, want) {
			t.Errorf("%d leaves: root %x, want %x", k, got, want)
		}
	}
	for _, k := range []int{0, 3, 6} {
		if _, err := SHA256.SubtreeRoot(chunks[:k]); err == nil {
			t.Errorf("%d leaves: no error", k)
		}
	}
	empty, err := SHA1.SubtreeRoot([][]byte{nil, {}})
	if err != nil || len(empty) != SHA1.Size() {
		t.Errorf("two empty leaves: %x, %v", empty, err)
	}
}
