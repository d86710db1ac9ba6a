package ebt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

func TestNote(t *testing.T) {
	tests := []struct {
		seq       uint64
		rx        bool
		want      Note
		wantSeq   uint64
		wantNoRx  bool
		wantPrint string
	}{
		{seq: 0, rx: true, want: 0, wantSeq: 0, wantPrint: "0+rx"},
		{seq: 0, rx: false, want: 1, wantSeq: 0, wantNoRx: true, wantPrint: "0"},
		{seq: 5, rx: true, want: 10, wantSeq: 5, wantPrint: "5+rx"},
		{seq: 5, rx: false, want: 11, wantSeq: 5, wantNoRx: true, wantPrint: "5"},
		{seq: 1 << 63, rx: false, want: Note(maxNoteSeq<<1 | 1), wantSeq: maxNoteSeq, wantNoRx: true, wantPrint: "4611686018427387903"},
	}
	for _, tt := range tests {
		n := MakeNote(tt.seq, tt.rx)
		if n != tt.want || n.Seq() != tt.wantSeq || n.Rx() == tt.wantNoRx || !n.Replicate() || n.String() != tt.wantPrint {
			t.Errorf("MakeNote(%d, %v) = %d (seq %d rx %v %q), want %d", tt.seq, tt.rx, n, n.Seq(), n.Rx(), n, tt.want)
		}
	}
	if DontReplicate.Replicate() || DontReplicate.Rx() || DontReplicate.Seq() != 0 || DontReplicate.String() != "-1" {
		t.Errorf("DontReplicate misbehaves")
	}
}

func testEntry(t testing.TB) *feed.Entry {
	k, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e, err := feed.Sign(k, feed.Head{}, "post", []byte("hello"), time.UnixMilli(1700000000000))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestMessageRoundTrip(t *testing.T) {
	enc := testEntry(t).Encode()
	msgs := []message{
		{typ: msgHello, capability: 0},
		{typ: msgHello, capability: Capability},
		{typ: msgHello, capability: 1 << 60},
		{typ: msgNotes, notes: []feedNote{}},
		{typ: msgNotes, notes: []feedNote{{Feed: feed.ID{1}, Note: DontReplicate}, {Feed: feed.ID{2}, Note: MakeNote(1<<40, true)}, {Feed: feed.ID{3}, Note: 1}}},
		{typ: msgEntries, entries: [][]byte{}},
		{typ: msgEntries, entries: [][]byte{enc, enc}},
	}
	for _, m := range msgs {
		b := encodeMessage(m)
		got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %+v gave %+v", m, got)
		}
	}
}

// TestMessageVectors pins the byte layout of docs/protocols/ebt.md.
func TestMessageVectors(t *testing.T) {
	id := feed.ID{0xaa}
	tests := []struct {
		m    message
		want []byte
	}{
		{message{typ: msgHello, capability: 1}, []byte{0x01, 0x01}},
		{message{typ: msgNotes, notes: []feedNote{}}, []byte{0x02, 0x00}},
		{message{typ: msgNotes, notes: []feedNote{{Feed: id, Note: DontReplicate}}}, append(append([]byte{0x02, 0x01}, id[:]...), 0x01)},
		{message{typ: msgNotes, notes: []feedNote{{Feed: id, Note: MakeNote(100, false)}}}, append(append([]byte{0x02, 0x01}, id[:]...), 0x92, 0x03)},
		{message{typ: msgEntries, entries: [][]byte{{0xee, 0xff}}}, []byte{0x03, 0x01, 0x02, 0xee, 0xff}},
	}
	for _, tt := range tests {
		if got := encodeMessage(tt.m); !bytes.Equal(got, tt.want) {
			t.Errorf("encode %+v = %x, want %x", tt.m, got, tt.want)
		}
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	id := make([]byte, 32)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"type 0", []byte{0}},
		{"too large", make([]byte, MaxMessageSize+1)},
		{"hello without capability", []byte{msgHello}},
		{"hello bad varint", []byte{msgHello, 0x80}},
		{"notes without count", []byte{msgNotes}},
		{"notes count over limit", cat([]byte{msgNotes}, uv(MaxNotes+1))},
		{"notes count over bytes", cat([]byte{msgNotes}, uv(3), id, []byte{0})},
		{"notes truncated value", cat([]byte{msgNotes}, uv(1), id, []byte{0x80})},
		{"notes value below -1", cat([]byte{msgNotes}, uv(1), id, binary.AppendVarint(nil, -2))},
		{"notes trailing", cat([]byte{msgNotes}, uv(1), id, []byte{0, 0})},
		{"entries without count", []byte{msgEntries}},
		{"entries count over limit", cat([]byte{msgEntries}, uv(MaxEntriesPerMsg+1))},
		{"entries count over bytes", cat([]byte{msgEntries}, uv(2), []byte{1, 9})},
		{"entries zero length", cat([]byte{msgEntries}, uv(1), uv(0), []byte{0})},
		{"entries length over limit", cat([]byte{msgEntries}, uv(1), uv(feed.MaxEncodedSize+1), make([]byte, feed.MaxEncodedSize+1))},
		{"entries length over bytes", cat([]byte{msgEntries}, uv(1), uv(5), []byte{1, 2})},
		{"entries trailing", cat([]byte{msgEntries}, uv(1), uv(1), []byte{1, 2})},
	}
	for _, tt := range tests {
		if _, err := decodeMessage(tt.b); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", tt.name, err)
		}
	}
	// Unknown types are not errors: message types only grow.
	if m, err := decodeMessage([]byte{0x7f, 1, 2, 3}); err != nil || m.typ != 0x7f {
		t.Errorf("unknown type: %+v, %v", m, err)
	}
}

// TestDecodeTruncated decodes every prefix of valid messages: no panic, and
// only the full message decodes to the original.
func TestDecodeTruncated(t *testing.T) {
	enc := testEntry(t).Encode()
	for _, m := range []message{
		{typ: msgNotes, notes: []feedNote{{Feed: feed.ID{1}, Note: MakeNote(300, true)}, {Feed: feed.ID{2}, Note: DontReplicate}}},
		{typ: msgEntries, entries: [][]byte{enc, enc}},
	} {
		b := encodeMessage(m)
		for i := range len(b) {
			if got, err := decodeMessage(b[:i]); err == nil && reflect.DeepEqual(got, m) {
				t.Errorf("prefix %d of %d decodes to the whole message", i, len(b))
			}
		}
	}
}

func FuzzDecodeMessage(f *testing.F) {
	enc := testEntry(f).Encode()
	f.Add([]byte{msgHello, 1})
	f.Add(encodeMessage(message{typ: msgNotes, notes: []feedNote{{Feed: feed.ID{9}, Note: MakeNote(7, false)}}}))
	f.Add(encodeMessage(message{typ: msgEntries, entries: [][]byte{enc}}))
	f.Add([]byte{msgEntries, 0x80, 0x80, 0x01})
	f.Add([]byte{msgNotes, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		switch m.typ {
		case msgNotes:
			if len(m.notes) > MaxNotes {
				t.Fatalf("%d notes", len(m.notes))
			}
		case msgEntries:
			if len(m.entries) > MaxEntriesPerMsg {
				t.Fatalf("%d entries", len(m.entries))
			}
			for _, e := range m.entries {
				if len(e) == 0 || len(e) > feed.MaxEncodedSize {
					t.Fatalf("entry of %d bytes", len(e))
				}
				feed.Decode(e) // must not panic either
			}
		}
		// Re-encoding a decoded message decodes to the same message.
		m2, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode %+v != %+v", m2, m)
		}
	})
}
