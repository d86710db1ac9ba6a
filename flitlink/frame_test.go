package flitlink

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// Frozen wire vectors: these bytes are the protocol and never change.
var wireVectors = []struct {
	name string
	hex  string
	make func() []byte
}{
	{"hello", "0000000001000010" + "01" + "01" + "0001" + "00004000" + "00100000" + "00040000", func() []byte {
		return rawHello(16<<10, 1<<20, 256<<10)
	}},
	{"open", "000000000100000c" + "02" + "00000001" + "03" + "05" + "6562742f31", func() []byte {
		return rawControl(control{typ: ctlOpen, circuit: 1, class: Data, service: "ebt/1"})
	}},
	{"accept", "0000000001000005" + "03" + "00000001", func() []byte {
		return rawControl(control{typ: ctlAccept, circuit: 1})
	}},
	{"refuse", "0000000001000006" + "04" + "00000003" + "01", func() []byte {
		return rawControl(control{typ: ctlRefuse, circuit: 3, reason: RefuseBacklogFull})
	}},
	{"close", "0000000001000005" + "05" + "00000002", func() []byte {
		return rawControl(control{typ: ctlClose, circuit: 2})
	}},
	{"credit", "0000000001000009" + "06" + "00000001" + "00010000", func() []byte {
		return rawControl(control{typ: ctlCredit, circuit: 1, credit: 64 << 10})
	}},
	{"first fragment", "0000000103000003" + "616263", func() []byte {
		return rawFrame(1, flagFirst|flagMore, []byte("abc"))
	}},
	{"last fragment", "0000000100000001" + "64", func() []byte {
		return rawFrame(1, 0, []byte("d"))
	}},
	{"empty message", "0000000201000000", func() []byte {
		return rawFrame(2, flagFirst, nil)
	}},
	{"cancel", "0000000704000000", func() []byte {
		return rawFrame(7, flagCancel, nil)
	}},
}

func TestWireVectors(t *testing.T) {
	for _, v := range wireVectors {
		want, err := hex.DecodeString(v.hex)
		if err != nil {
			t.Fatal(err)
		}
		if got := v.make(); !bytes.Equal(got, want) {
			t.Errorf("%s: encoded %x, want %x", v.name, got, want)
		}
		// Decodes, and every truncation fails.
		var hb [HeaderSize]byte
		buf := make([]byte, MaxControlSize)
		h, p, err := readFrame(bytes.NewReader(want), &hb, buf, 64)
		if err != nil {
			t.Errorf("%s: %v", v.name, err)
			continue
		}
		if h.circuit == 0 {
			m, err := parseControl(p)
			if err != nil {
				t.Errorf("%s: %v", v.name, err)
			}
			if got := appendControl(nil, &m); !bytes.Equal(got, p) {
				t.Errorf("%s: re-encoded %x, want %x", v.name, got, p)
			}
			for i := range len(p) {
				if _, err := parseControl(p[:i]); err == nil {
					t.Errorf("%s: truncated to %d bytes parses", v.name, i)
				}
			}
		}
		for i := range len(want) {
			if _, _, err := readFrame(bytes.NewReader(want[:i]), &hb, buf, 64); err == nil {
				t.Errorf("%s: truncated to %d bytes reads", v.name, i)
			}
		}
	}
}

func TestParseHeader(t *testing.T) {
	for _, tc := range []struct {
		hdr string
		ok  bool
	}{
		{"0000000101000040", true},  // whole message at the limit
		{"0000000101000041", false}, // one byte over the flit size
		{"00000001ff000001", false}, // unknown flags
		{"0000000102000000", false}, // empty middle fragment
		{"0000000104000001", false}, // cancel with payload
		{"0000000105000000", false}, // cancel with first
		{"0000000003000005", false}, // fragmented control
		{"0000000001000000", false}, // empty control
		{"0000000001000101", false}, // control over MaxControlSize
		{"0000000001000100", true},  // control at MaxControlSize
	} {
		var hb [HeaderSize]byte
		hex.Decode(hb[:], []byte(tc.hdr))
		_, err := parseHeader(&hb, 64)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.hdr, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v is not ErrProtocol", tc.hdr, err)
		}
	}
}

// FuzzFrame feeds arbitrary bytes to the frame reader: it must never panic,
// never return a payload over its limit, and what it accepts must re-encode
// to the same bytes.
func FuzzFrame(f *testing.F) {
	for _, v := range wireVectors {
		b, _ := hex.DecodeString(v.hex)
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 1, 1, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		const maxData = 64
		var hb [HeaderSize]byte
		buf := make([]byte, MaxControlSize)
		r := bytes.NewReader(data)
		for {
			start := len(data) - r.Len()
			h, p, err := readFrame(r, &hb, buf, maxData)
			if err != nil {
				return
			}
			if (h.circuit == 0 && len(p) > MaxControlSize) || (h.circuit != 0 && len(p) > maxData) {
				t.Fatalf("payload of %d bytes accepted", len(p))
			}
			end := len(data) - r.Len()
			if enc := append(appendHeader(nil, h), p...); !bytes.Equal(enc, data[start:end]) {
				t.Fatalf("re-encoded %x, read %x", enc, data[start:end])
			}
			if h.circuit == 0 {
				m, err := parseControl(p)
				if err != nil || m.typ < ctlHello || m.typ > ctlCredit {
					continue
				}
				m2, err := parseControl(appendControl(nil, &m))
				if err != nil || m2 != m {
					t.Fatalf("control %+v re-parsed as %+v, %v", m, m2, err)
				}
			}
		}
	})
}

// fuzzConn serves a fixed input to a link and swallows its output.
type fuzzConn struct{ r *bytes.Reader }

func (c *fuzzConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *fuzzConn) Close() error                { return nil }

// FuzzLink feeds arbitrary bytes into a Link's reader, with an application
// that accepts and reads every circuit: the link must end (the input ends in
// EOF) without panicking, holding at most the memory its limits allow.
func FuzzLink(f *testing.F) {
	const flit, maxMsg, window = 512, 2048, 1024
	hello := rawHello(flit, maxMsg, window)
	open1 := rawControl(control{typ: ctlOpen, circuit: 1, class: Voice, service: "s"})
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	f.Add([]byte{})
	f.Add(hello)
	f.Add(cat(hello, open1, rawFrame(1, flagFirst, []byte("hi"))))
	f.Add(cat(hello, open1, rawFrame(1, flagFirst|flagMore, pattern(1, flit)), rawFrame(1, 0, []byte("x")),
		rawControl(control{typ: ctlClose, circuit: 1})))
	f.Add(cat(hello, open1, rawFrame(1, flagFirst|flagMore, []byte("a")), rawFrame(1, flagCancel, nil),
		rawFrame(1, flagFirst, nil), rawControl(control{typ: ctlCredit, circuit: 1, credit: 7})))
	f.Add(cat(hello, open1, rawControl(control{typ: ctlOpen, circuit: 3, class: Data, service: "t"}),
		rawControl(control{typ: ctlOpen, circuit: 5, class: Data, service: "u"})))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := NewLink(&fuzzConn{r: bytes.NewReader(data)}, idA, false,
			Config{FlitSize: flit, MaxMessageSize: maxMsg, Window: window, AcceptBacklog: 2})
		defer l.Close()
		for {
			c, err := l.Accept(t.Context())
			if err != nil {
				break
			}
			for {
				if _, err := c.Recv(t.Context()); err != nil {
					break
				}
			}
		}
		<-l.Done() // Accept failed: the link is dead
		if err := l.Err(); !errors.Is(err, ErrLinkClosed) {
			t.Fatalf("Err() = %v", err)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.circuits {
			if c.queuedCost > window || c.partialLen > maxMsg || cap(c.partial) > 2*maxMsg {
				t.Fatalf("circuit %d holds %d queued, %d partial (cap %d)", c.id, c.queuedCost, c.partialLen, cap(c.partial))
			}
		}
	})
}
