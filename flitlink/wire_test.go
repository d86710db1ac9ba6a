package flitlink

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// wireVectors are frozen encodings of version 2 (docs/protocols/flitlink.md):
// never edit them; a change of the wire needs a new capability or version.
var wireVectors = []struct {
	name string
	got  []byte
	hex  string
}{
	{"HELLO (defaults), framed", appendMessage(nil, appendHello(nil, hello{version: 2, capability: 1, maxMessage: 1 << 20})), "00000008 01 02 0001 00100000"},
	{"KEEPALIVE, framed", appendMessage(nil, []byte{ctlKeepAlive}), "00000001 02"},
	{"circuit header: ebt/1, Data", appendCircuitHeader(nil, "ebt/1", Data), "03 05 6562742f31"},
	{"message \"abc\"", appendMessage(nil, []byte("abc")), "00000003 616263"},
	{"empty message", appendMessage(nil, nil), "00000000"},
}

func TestWireVectors(t *testing.T) {
	for _, v := range wireVectors {
		want, err := hex.DecodeString(strings.ReplaceAll(v.hex, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(v.got, want) {
			t.Errorf("%s: %x, want %x", v.name, v.got, want)
		}
	}
}

func TestParseControl(t *testing.T) {
	for _, tc := range []struct {
		p   []byte
		typ uint8
		ok  bool
	}{
		{appendHello(nil, hello{version: 2, capability: 1, maxMessage: 1}), ctlHello, true},
		{append(appendHello(nil, hello{version: 2, capability: 7, maxMessage: MaxMessageLimit}), 1, 2, 3), ctlHello, true},
		{appendHello(nil, hello{version: 1, capability: 1, maxMessage: 1}), ctlHello, false},
		{appendHello(nil, hello{version: 2, capability: 0, maxMessage: 1}), ctlHello, false},
		{appendHello(nil, hello{version: 2, capability: 1, maxMessage: 0}), ctlHello, false},
		{appendHello(nil, hello{version: 2, capability: 1, maxMessage: MaxMessageLimit + 1}), ctlHello, false},
		{[]byte{ctlHello, 2, 0, 1, 0, 0, 1}, ctlHello, false},
		{[]byte{ctlKeepAlive}, ctlKeepAlive, true},
		{[]byte{ctlKeepAlive, 0}, ctlKeepAlive, false},
		{[]byte{0x7f, 1, 2}, 0x7f, true},
		{nil, 0, false},
	} {
		typ, _, err := parseControl(tc.p)
		if typ != tc.typ || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrProtocol)) {
			t.Errorf("parseControl(%x) = %d, %v; want type %d, ok %v", tc.p, typ, err, tc.typ, tc.ok)
		}
	}
}

// FuzzControl: parseControl never panics, fails only with ErrProtocol, and
// a HELLO it accepts encodes back to its first helloSize bytes.
func FuzzControl(f *testing.F) {
	f.Add(appendHello(nil, hello{version: 2, capability: 1, maxMessage: 1 << 20}))
	f.Add([]byte{ctlKeepAlive})
	f.Add([]byte{ctlHello, 2, 0, 0})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		typ, h, err := parseControl(p)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error without ErrProtocol: %v", err)
			}
			return
		}
		if typ == ctlHello {
			if got := appendHello(nil, h); !bytes.Equal(got, p[:helloSize]) {
				t.Fatalf("hello %x re-encodes to %x", p, got)
			}
		}
	})
}

// FuzzCircuitHeader: readCircuitHeader never panics, never reads past
// MaxCircuitHeader bytes, and what it accepts encodes back to what it read.
func FuzzCircuitHeader(f *testing.F) {
	f.Add(appendCircuitHeader(nil, "ebt/1", Data))
	f.Add(appendCircuitHeader(nil, strings.Repeat("x", MaxServiceLen), Control))
	f.Add([]byte{4, 1, 'x'})
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 65})
	f.Add([]byte{1, 2, 0xc3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		service, class, err := readCircuitHeader(r)
		read := len(b) - r.Len()
		if read > MaxCircuitHeader {
			t.Fatalf("read %d bytes of a header", read)
		}
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !validService(service) || class >= numClasses {
			t.Fatalf("accepted %q, class %d", service, class)
		}
		if got := appendCircuitHeader(nil, service, class); !bytes.Equal(got, b[:read]) {
			t.Fatalf("header %x re-encodes to %x", b[:read], got)
		}
	})
}

// FuzzLength: a length prefix is accepted exactly when within the limit.
func FuzzLength(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, 1)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, MaxMessageLimit)
	f.Add([]byte{0, 0x10, 0, 1}, 1<<20)
	f.Fuzz(func(t *testing.T, b []byte, limit int) {
		if len(b) < LengthSize || limit < 0 {
			return
		}
		var lb [LengthSize]byte
		copy(lb[:], b)
		n, err := parseLength(&lb, limit)
		want := int64(lb[0])<<24 | int64(lb[1])<<16 | int64(lb[2])<<8 | int64(lb[3])
		switch {
		case err != nil && (want <= int64(limit) || !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrProtocol)):
			t.Fatalf("parseLength(%x, %d) = %v", lb, limit, err)
		case err == nil && (int64(n) != want || n > limit):
			t.Fatalf("parseLength(%x, %d) = %d", lb, limit, n)
		}
	})
}
