package live

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/contextd/contextd/feed"
)

// hx decodes hex with spaces; r repeats a byte given in hex n times.
func hx(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func r(byteHex string, n int) string { return strings.Repeat(byteHex, n) }

var (
	testStream = feed.ID(bytes.Repeat([]byte{0x11}, 32))
	testSig    = [64]byte(bytes.Repeat([]byte{0x22}, 64))
)

// vectors are frozen encodings, written by hand from docs/protocols/swarm.md.
// They must never change: a change breaks compatibility with deployed peers.
var vectors = []struct {
	name string
	k    int
	hex  string
	msg  Message
}{
	{"handshake", -1, "01 01 " + r("11", 32) + " 02 00",
		Handshake{Capability: 1, Stream: testStream, MunroLog: 2, Hops: 0}},
	{"handshake-unknown-hops", -1, "01 01 " + r("11", 32) + " 04 ff01",
		Handshake{Capability: 1, Stream: testStream, MunroLog: 4, Hops: MaxHops}},
	{"start-live-edge", -1, "02 00", Start{From: LiveEdge}},
	{"start-300", -1, "02 ad02", Start{From: 300}},
	{"munro-k1", 1, "03 05 e807 " + r("22", 64) + " 05 68656c6c6f 00",
		Munro{Index: 5, Published: 1000, Sig: testSig, Chunks: [][]byte{[]byte("hello"), nil}}},
	{"munro-k0-empty", 0, "03 00 00 " + r("22", 64) + " 00",
		Munro{Sig: testSig, Chunks: [][]byte{nil}}},
	{"keepalive", -1, "04", Keepalive{}},
	{"end", -1, "05 07 " + r("22", 64), End{Munros: 7, Sig: testSig}},
	{"unknown", -1, "7f 0102", Unknown{MsgType: 0x7f, Body: []byte{1, 2}}},
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		b := hx(v.hex)
		if got := v.msg.Append(nil); !bytes.Equal(got, b) {
			t.Errorf("%s: Append = %x, want %x", v.name, got, b)
		}
		m, err := Decode(b, v.k)
		if err != nil {
			t.Errorf("%s: Decode: %v", v.name, err)
			continue
		}
		if !reflect.DeepEqual(m, v.msg) {
			t.Errorf("%s: Decode = %#v, want %#v", v.name, m, v.msg)
		}
		// Every truncation of a known message is malformed.
		if _, ok := v.msg.(Unknown); !ok {
			for n := range len(b) {
				if _, err := Decode(b[:n], v.k); !errors.Is(err, ErrMalformed) {
					t.Errorf("%s cut to %d bytes: %v, want ErrMalformed", v.name, n, err)
				}
			}
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		k    int
		hex  string
	}{
		{"type 0", -1, "00"},
		{"trailing byte", -1, "04 00"},
		{"non-minimal uvarint", -1, "02 8000"},
		{"munro log past the limit", -1, "01 01 " + r("11", 32) + " 05 00"},
		{"hops past the limit", -1, "01 01 " + r("11", 32) + " 02 8002"},
		{"munro before the handshake", -1, "03 00 00 " + r("22", 64) + " 00"},
		{"munro with a missing chunk", 1, "03 00 00 " + r("22", 64) + " 00"},
		{"chunk past the limit", 0, "03 00 00 " + r("22", 64) + " 818001" + r("00", MaxChunkSize+1)},
		{"munro index past the limit", 0, "03 8080808080808080 08 00 " + r("22", 64) + " 00"},
		{"publish time past int64", 0, "03 00 ffffffffffffffffff01 " + r("22", 64) + " 00"},
		{"end count past the limit", -1, "05 ffffffffffffffffff01" + r("22", 64)},
	} {
		if m, err := Decode(hx(c.hex), c.k); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %#v, %v; want ErrMalformed", c.name, m, err)
		}
	}
	if _, err := Decode(make([]byte, MaxMessageSize+1), 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("oversized message: %v", err)
	}
}

// TestSignatureVector freezes what a publisher signs: the same key, munro
// and END must always give these signatures.
func TestSignatureVector(t *testing.T) {
	key, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	m := Munro{Index: 1, Published: 1_700_000_000_000_000, Chunks: [][]byte{[]byte("a"), []byte("b"), nil, nil}}
	if err := m.Sign(key, 2); err != nil {
		t.Fatal(err)
	}
	e := End{Munros: 2}
	e.Sign(key)
	const (
		wantMunro = "88efeaf6d9a5ebdbcb8cd00a750bd7abc280f2797b3f13801c6ce39ffe7e208e0de4901daf4c3058ba3f3b882e98a1c1fd66617626acccf61c855a68ff82c308"
		wantEnd   = "cbbe7fde34a9502e2299ba29932e9219edb333300a7e5370e7abb23bb25fddf93e5a05dab87bd39ecdc39147a510184d9418feabaf14fa3f6ae1d575b7fab601"
	)
	if got := hex.EncodeToString(m.Sig[:]); got != wantMunro {
		t.Errorf("munro signature %s, want %s", got, wantMunro)
	}
	if got := hex.EncodeToString(e.Sig[:]); got != wantEnd {
		t.Errorf("END signature %s, want %s", got, wantEnd)
	}
	if err := m.Verify(key.Public(), 2); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := e.Verify(key.Public()); err != nil {
		t.Errorf("END Verify: %v", err)
	}
	// Whatever changes, the signature no longer verifies.
	for name, bad := range map[string]func(Munro) Munro{
		"chunk":     func(m Munro) Munro { m.Chunks = [][]byte{[]byte("x"), m.Chunks[1], nil, nil}; return m },
		"empty->1":  func(m Munro) Munro { m.Chunks = [][]byte{m.Chunks[0], m.Chunks[1], {0}, nil}; return m },
		"index":     func(m Munro) Munro { m.Index++; return m },
		"published": func(m Munro) Munro { m.Published++; return m },
		"signature": func(m Munro) Munro { m.Sig[5] ^= 1; return m },
		"k":         func(m Munro) Munro { m.Chunks = m.Chunks[:2]; return m },
	} {
		if err := bad(m).Verify(key.Public(), 2); !errors.Is(err, ErrBadMunro) {
			t.Errorf("munro with another %s: Verify = %v, want ErrBadMunro", name, err)
		}
	}
	if err := m.Verify(key.Public(), 1); !errors.Is(err, ErrBadMunro) {
		t.Errorf("munro verified as k=1: %v", err)
	}
	e.Munros++
	if err := e.Verify(key.Public()); !errors.Is(err, ErrBadMunro) {
		t.Errorf("END with another count: Verify = %v, want ErrBadMunro", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range vectors {
		f.Add(hx(v.hex), int8(v.k))
	}
	f.Add(hx("03 ffffffffffffffff7f"), int8(2))
	f.Add(hx("01 ff"), int8(-1))
	f.Fuzz(func(t *testing.T, b []byte, k int8) {
		m, err := Decode(b, int(k))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if got := m.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %#v gives %x, want %x", m, got, b)
		}
		if mu, ok := m.(Munro); ok {
			if len(mu.Chunks) != 1<<k {
				t.Fatalf("munro of %d chunks at k=%d", len(mu.Chunks), k)
			}
			for _, c := range mu.Chunks {
				if len(c) > MaxChunkSize || c != nil && len(c) == 0 {
					t.Fatalf("chunk of %d bytes (nil: %v)", len(c), c == nil)
				}
			}
			// A random munro never verifies against a key.
			if mu.Verify(testStream, int(k)) == nil {
				t.Fatal("a decoded random munro verified")
			}
		}
	})
}
