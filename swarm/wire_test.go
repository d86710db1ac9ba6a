package swarm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
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

// testCID is a raw sha256 CID: 01 55 12 20 and 32 bytes of 0xab.
var testCID = hx("01551220" + r("ab", 32))

// testAddr is /ip4/127.0.0.1/tcp/4001 in binary multiaddr form.
var testAddr = hx("04 7f000001 06 0fa1")

// vectors are frozen encodings, written by hand from docs/protocols/swarm.md.
// They must never change: a change breaks compatibility with deployed peers.
var vectors = []struct {
	name     string
	hashSize int
	hex      string
	msg      Message
}{
	{"handshake", 0,
		"01 01 24 01551220" + r("ab", 32) + " 12 808001 a08d06 40",
		Handshake{Capability: 1, ObjectID: testCID, Hash: object.SHA256, ChunkSize: 16384, Size: 100000, MaxRequests: 64}},
	{"handshake-sha1-empty", 0,
		"01 00 18 01551114" + r("cd", 20) + " 11 8008 00 00",
		Handshake{Capability: 0, ObjectID: hx("01551114" + r("cd", 20)), Hash: object.SHA1, ChunkSize: 1024, Size: 0, MaxRequests: 0}},
	{"have", 0,
		"02 02 00 09 14 00",
		Have{Ranges: []Range{{0, 9}, {20, 20}}}},
	{"have-empty", 0,
		"02 00",
		Have{Ranges: []Range{}}},
	{"request", 0,
		"03 01 ac02 01",
		Request{Ranges: []Range{{300, 301}}}},
	{"integrity", 32,
		"04 02 02 " + r("11", 32) + " 05 " + r("22", 32),
		Integrity{Hashes: []object.BinHash{{Bin: 2, Hash: hx(r("11", 32))}, {Bin: 5, Hash: hx(r("22", 32))}}}},
	{"integrity-sha1", 20,
		"04 01 03 " + r("33", 20),
		Integrity{Hashes: []object.BinHash{{Bin: 3, Hash: hx(r("33", 20))}}}},
	{"data", 0,
		"05 06 05 68656c6c6f",
		Data{Bin: 6, Data: []byte("hello")}},
	{"data-empty", 0,
		"05 00 00",
		Data{Bin: 0}},
	{"cancel", 0,
		"06 01 07 00",
		Cancel{Ranges: []Range{{7, 7}}}},
	{"pex", 0,
		"07 02 002408011220" + r("01", 32) + " 08 047f000001060fa1 002408011220" + r("02", 32) + " 00",
		Pex{Peers: []PexPeer{{ID: feed.ID{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Addr: testAddr},
			{ID: feed.ID{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}}}}},
	{"chunks", 32,
		"0a 10 01 23 " + r("44", 32) + " 05 68656c6c6f",
		Chunks{First: 16, Hashes: []object.BinHash{{Bin: 35, Hash: hx(r("44", 32))}}, Data: []byte("hello")}},
	{"chunks-empty", 20,
		"0a 00 00 00",
		Chunks{First: 0, Hashes: []object.BinHash{}}},
	{"choke", 0, "08", Choke{}},
	{"unchoke", 0, "09", Unchoke{}},
}

func TestVectors(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, v := range vectors {
		b := hx(v.hex)
		if got := v.msg.Append(nil); !bytes.Equal(got, b) {
			t.Errorf("%s: Append = %x, want %x", v.name, got, b)
		}
		m, err := Decode(b, v.hashSize)
		if err != nil {
			t.Errorf("%s: Decode: %v", v.name, err)
			continue
		}
		if !reflect.DeepEqual(m, v.msg) {
			t.Errorf("%s: Decode = %#v, want %#v", v.name, m, v.msg)
		}
		if m.Type() != MsgType(b[0]) {
			t.Errorf("%s: Type() = %v, want %v", v.name, m.Type(), MsgType(b[0]))
		}
		seen[m.Type()] = true
	}
	for t0 := TypeHandshake; t0 <= TypeChunks; t0++ {
		if !seen[t0] {
			t.Errorf("no vector for %v", t0)
		}
	}
}

func TestTruncatedVectorsFail(t *testing.T) {
	for _, v := range vectors {
		b := hx(v.hex)
		for i := range len(b) {
			if m, err := Decode(b[:i], v.hashSize); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: truncated to %d bytes: %#v, %v", v.name, i, m, err)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	msgs := []struct {
		m        Message
		hashSize int
	}{
		{Handshake{Capability: Capability, ObjectID: testCID, Hash: object.SHA256, ChunkSize: object.DefaultChunkSize, Size: 1 << 40, MaxRequests: 256}, 0},
		{Handshake{Capability: 1 << 62, ObjectID: bytes.Repeat([]byte{7}, MaxObjectIDSize), Hash: object.SHA1, ChunkSize: MaxDataSize, Size: 1<<63 - 1, MaxRequests: MaxRequestsInFlight}, 0},
		{Have{Ranges: []Range{{0, MaxChunkIndex}}}, 0},
		{Have{Ranges: make([]Range, MaxRanges)}, 0},
		{Request{Ranges: []Range{{5, 5}, {1, 3}, {MaxChunkIndex, MaxChunkIndex}}}, 0},
		{Request{Ranges: []Range{}}, 0},
		{Cancel{Ranges: []Range{{1 << 40, 1<<40 + 1000}}}, 0},
		{Integrity{Hashes: []object.BinHash{}}, 32},
		{Integrity{Hashes: []object.BinHash{{Bin: MaxBin, Hash: make([]byte, 32)}, {Bin: 0, Hash: bytes.Repeat([]byte{1}, 32)}}}, 32},
		{Integrity{Hashes: func() []object.BinHash {
			hs := make([]object.BinHash, MaxUncles)
			for i := range hs {
				hs[i] = object.BinHash{Bin: object.NewBin(uint(i%50), 3), Hash: bytes.Repeat([]byte{byte(i)}, 20)}
			}
			return hs
		}()}, 20},
		{Data{Bin: object.ChunkBin(MaxChunkIndex), Data: bytes.Repeat([]byte{9}, MaxDataSize)}, 0},
		{Data{Bin: object.ChunkBin(1), Data: []byte{0}}, 0},
		{Pex{Peers: []PexPeer{}}, 0},
		{Pex{Peers: func() []PexPeer {
			ps := make([]PexPeer, MaxPeers)
			for i := range ps {
				ps[i] = PexPeer{ID: feed.ID{byte(i), 1}, Addr: bytes.Repeat([]byte{byte(i)}, i%(MaxAddrSize+1))}
				if i == 0 {
					ps[i].Addr = nil
				}
			}
			return ps
		}()}, 0},
		{Choke{}, 32},
		{Unchoke{}, 0},
		{Unknown{MsgType: 0x7f, Body: []byte{1, 2, 3}}, 0},
		{Unknown{MsgType: 0xff, Body: []byte{}}, 0},
	}
	for i, tt := range msgs {
		b := tt.m.Append(nil)
		if len(b) > MaxMessageSize {
			t.Fatalf("%d: %v of %d bytes", i, tt.m.Type(), len(b))
		}
		m, err := Decode(b, tt.hashSize)
		if err != nil {
			t.Errorf("%d: Decode(%v): %v", i, tt.m.Type(), err)
			continue
		}
		if !reflect.DeepEqual(m, tt.m) {
			t.Errorf("%d: round trip of %v: got %#v", i, tt.m.Type(), m)
		}
		if b2 := m.Append([]byte{0xee}); !bytes.Equal(b2[1:], b) || b2[0] != 0xee {
			t.Errorf("%d: re-encoding of %v differs", i, tt.m.Type())
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	hs := func(id, hash, cs, size, maxReq string) string {
		return "01 01 " + id + " " + hash + " " + cs + " " + size + " " + maxReq
	}
	id := "24 01551220" + r("ab", 32)
	peer := "002408011220" + r("01", 32)
	tests := []struct {
		name     string
		hex      string
		hashSize int
	}{
		{"empty", "", 32},
		{"type 0", "00", 32},
		{"type 0 with body", "00 01 02", 32},
		{"trailing choke", "08 00", 32},
		{"trailing unchoke", "09 09", 32},
		{"trailing have", "02 00 00", 32},
		{"trailing handshake", hs(id, "12", "808001", "00", "40") + " 00", 32},
		{"trailing data", "05 00 01 61 62", 32},
		{"trailing integrity", "04 00 00", 32},
		{"trailing pex", "07 00 00", 32},
		{"trailing chunks", "0a 00 00 01 61 62", 32},
		{"chunks before the handshake", "0a 00 00 00", 0},
		{"chunks over the message size", "0a 00 00 818040", 32},
		{"chunks past the last chunk index", "0a 8080808080808080 40 00 00", 32},
		{"non-minimal count", "02 8000", 32},
		{"non-minimal range", "02 01 8100 00", 32},
		{"uvarint overflow", "02 ffffffffffffffffffff01", 32},
		{"handshake object ID empty", hs("00", "12", "808001", "00", "40"), 32},
		{"handshake object ID over limit", hs("8101"+r("00", 129), "12", "808001", "00", "40"), 32},
		{"handshake object ID past end", "01 01 24 0155", 32},
		{"handshake object ID length huge", "01 01 ffffffffffffffffff01", 32},
		{"handshake hash unknown", hs(id, "13", "808001", "00", "40"), 32},
		{"handshake hash zero", hs(id, "00", "808001", "00", "40"), 32},
		{"handshake chunk size not power of two", hs(id, "12", "e807", "00", "40"), 32},
		{"handshake chunk size too small", hs(id, "12", "8004", "00", "40"), 32},
		{"handshake chunk size zero", hs(id, "12", "00", "00", "40"), 32},
		{"handshake chunk size past MaxDataSize", hs(id, "12", "808040", "00", "40"), 32},
		{"handshake chunk size huge", hs(id, "12", "80808080808080808001", "00", "40"), 32},
		{"handshake size 2^63", hs(id, "12", "808001", "80808080808080808001", "40"), 32},
		{"handshake max requests over limit", hs(id, "12", "808001", "00", "818004"), 32},
		{"have count over limit", "02 8140" + r("00", 2*8193), 32},
		{"have count past end", "02 05 00 00", 32},
		{"have count huge", "02 ffffffffffffffff7f", 32},
		{"have range start past MaxChunkIndex", "02 01 80808080808080 10 00", 32},
		{"have range end past MaxChunkIndex", "02 01 ffffffffffffff0f 01", 32},
		{"have range length overflow", "02 01 01 ffffffffffffffffff01", 32},
		{"request count past end", "03 01 00", 32},
		{"cancel count past end", "06 02 00 00 00", 32},
		{"integrity before handshake", "04 01 02 " + r("11", 32), 0},
		{"integrity hash size over limit", "04 01 02 " + r("11", 65), 65},
		{"integrity count over limit", "04 41 " + r("02"+r("11", 32), 65), 32},
		{"integrity hash past end", "04 01 02 " + r("11", 31), 32},
		{"integrity hash size mismatch", "04 01 02 " + r("11", 32), 20},
		{"integrity bin past MaxBin", "04 01 8080808080808020 " + r("11", 32), 32},
		{"data bin not a chunk", "05 01 01 61", 32},
		{"data bin past MaxBin", "05 8080808080808020 01 61", 32},
		{"data over MaxDataSize", "05 00 818020" + r("00", MaxDataSize+1), 32},
		{"data past end", "05 00 05 6162", 32},
		{"data length huge", "05 00 ffffffffffffffffff01", 32},
		{"pex count over limit", "07 8102" + r(peer+"00", 257), 32},
		{"pex count past end", "07 02 " + peer + "00", 32},
		{"pex bad peer ID", "07 01 002408011221" + r("01", 32) + " 00", 32},
		{"pex address over limit", "07 01 " + peer + " 8102" + r("00", 257), 32},
		{"pex address past end", "07 01 " + peer + " 09 047f00", 32},
	}
	for _, tt := range tests {
		m, err := Decode(hx(tt.hex), tt.hashSize)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode = %#v, %v; want ErrMalformed", tt.name, m, err)
		}
	}
	// A message over MaxMessageSize is rejected whatever it holds.
	big := Unknown{MsgType: 0x7f, Body: make([]byte, MaxMessageSize)}.Append(nil)
	if _, err := Decode(big, 32); !errors.Is(err, ErrMalformed) {
		t.Errorf("message of %d bytes: %v", len(big), err)
	}
}

func TestUnknownTypeIgnored(t *testing.T) {
	b := hx("7f 0102")
	m, err := Decode(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if u, ok := m.(Unknown); !ok || u.MsgType != 0x7f || !bytes.Equal(u.Body, []byte{1, 2}) {
		t.Fatalf("Decode = %#v", m)
	}
	if m.Type().String() != "type(0x7f)" || TypeIntegrity.String() != "INTEGRITY" {
		t.Errorf("String: %v %v", m.Type(), TypeIntegrity)
	}
}

func TestLimitsConsistent(t *testing.T) {
	if MaxBin != object.ChunkBin(MaxChunkIndex) || object.NewBin(53, 0) > MaxBin || MaxChunkIndex != 1<<53-1 {
		t.Errorf("MaxBin %d, MaxChunkIndex %d", uint64(MaxBin), uint64(MaxChunkIndex))
	}
	if MaxUncles < int(object.NewBin(53, 0).Layer()) {
		t.Errorf("MaxUncles %d below the tallest tree", MaxUncles)
	}
	if object.CheckChunkSize(MaxDataSize) != nil || MaxDataSize*2+16 <= MaxMessageSize {
		t.Errorf("MaxDataSize %d is not the largest chunk size that fits a message", MaxDataSize)
	}
	if len(feed.ID{}.PeerIDBytes()) != PeerIDSize {
		t.Errorf("PeerIDSize %d", PeerIDSize)
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range vectors {
		f.Add(hx(v.hex), uint8(v.hashSize))
	}
	f.Add(hx("02 ffffffffffffffff7f"), uint8(32))
	f.Add(hx("7f 01"), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, hs uint8) {
		m, err := Decode(b, int(hs))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if got := m.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding %#v gives %x, want %x", m, got, b)
		}
		switch m := m.(type) {
		case Handshake:
			if object.CheckChunkSize(m.ChunkSize) != nil || m.Size < 0 || len(m.ObjectID) > MaxObjectIDSize {
				t.Fatalf("bad handshake %#v", m)
			}
		case Have:
			checkRanges(t, m.Ranges)
		case Request:
			checkRanges(t, m.Ranges)
		case Cancel:
			checkRanges(t, m.Ranges)
		case Integrity:
			if len(m.Hashes) > MaxUncles {
				t.Fatalf("%d hashes", len(m.Hashes))
			}
			for _, h := range m.Hashes {
				if len(h.Hash) != int(hs) || h.Bin > MaxBin {
					t.Fatalf("bad hash %v %x", h.Bin, h.Hash)
				}
			}
		case Data:
			if !m.Bin.IsBase() || len(m.Data) > MaxDataSize {
				t.Fatalf("bad data %v %d", m.Bin, len(m.Data))
			}
		case Pex:
			if len(m.Peers) > MaxPeers {
				t.Fatalf("%d peers", len(m.Peers))
			}
		case Unknown:
			if m.MsgType <= TypeUnchoke {
				t.Fatalf("known type %v decoded as Unknown", m.MsgType)
			}
		}
	})
}

func checkRanges(t *testing.T, rs []Range) {
	if len(rs) > MaxRanges {
		t.Fatalf("%d ranges", len(rs))
	}
	for _, r := range rs {
		if r.First > r.Last || r.Last > MaxChunkIndex {
			t.Fatalf("bad range %v", r)
		}
	}
}
