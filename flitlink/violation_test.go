package flitlink_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/flitlink"
)

// rawCircuit opens a stream on the raw session, writes hdr, and returns
// the stream after reading the link's reply (or without, if it resets).
func rawCircuit(t *testing.T, s flitlink.Session, hdr []byte) flitlink.Stream {
	t.Helper()
	st, err := s.OpenStream(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(hdr); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestViolations: a peer that breaks the protocol loses its link with
// ErrProtocol, whether on the control stream or on a circuit.
func TestViolations(t *testing.T) {
	hello := helloMsg(flitlink.Version, 1<<20)
	for _, tc := range []struct {
		name    string
		control []byte // written on the control stream
		circuit []byte // if not nil: a circuit stream with these bytes
		recv    bool   // the violation shows when the circuit is read
	}{
		{name: "hello of version 1", control: helloMsg(1, 1<<20)},
		{name: "hello with max message 0", control: helloMsg(flitlink.Version, 0)},
		{name: "short hello", control: message([]byte{0x01, 2, 0, 1})},
		{name: "second hello", control: append(hello, hello...)},
		{name: "keepalive before hello", control: message([]byte{0x02})},
		{name: "keepalive with a body", control: append(hello, message([]byte{0x02, 0})...)},
		{name: "empty control message", control: append(hello, 0, 0, 0, 0)},
		{name: "oversized control message", control: append(hello, 0, 0, 1, 1)},
		{name: "circuit of unknown class", control: hello, circuit: []byte{4, 1, 'x'}},
		{name: "circuit with an empty service", control: hello, circuit: []byte{3, 0}},
		{name: "circuit with a non-UTF-8 service", control: hello, circuit: []byte{3, 1, 0xff}},
		{name: "oversized message", control: hello, circuit: []byte{3, 1, 'x', 0, 0x10, 0, 1}, recv: true},
		{name: "end inside a message", control: hello, circuit: []byte{3, 1, 'x', 0, 0, 0, 10, 'a', 'b'}, recv: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := testCtx(t)
				l, raw := rawPeer(t, flitlink.Config{})
				if _, err := raw.Control().Write(tc.control); err != nil {
					t.Fatal(err)
				}
				if tc.circuit != nil {
					st := rawCircuit(t, raw, tc.circuit)
					st.CloseWrite()
				}
				if tc.recv {
					c, err := l.Accept(ctx)
					if err != nil {
						t.Fatalf("Accept: %v", err)
					}
					if _, err := c.Recv(ctx); !errors.Is(err, flitlink.ErrProtocol) || !errors.Is(err, flitlink.ErrLinkClosed) {
						t.Fatalf("Recv: %v, want ErrProtocol", err)
					}
				}
				<-l.Done()
				if err := l.Err(); !errors.Is(err, flitlink.ErrProtocol) {
					t.Fatalf("link died of %v, want ErrProtocol", err)
				}
			})
		})
	}
}

// TestTolerated: what a later capability may send is skipped.
func TestTolerated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		l, raw := rawPeer(t, flitlink.Config{})
		hello := append(helloMsg(flitlink.Version, 1<<20)[4:], 0xaa, 0xbb) // trailing fields
		ctl := append(message(hello), message([]byte{0x7f, 1, 2, 3})...)   // an unknown type
		if _, err := raw.Control().Write(ctl); err != nil {
			t.Fatal(err)
		}
		st := rawCircuit(t, raw, append([]byte{1, 2, 'o', 'k'}, message([]byte("hi"))...))
		var reply [1]byte
		if _, err := io.ReadFull(st, reply[:]); err != nil || reply[0] != 0 {
			t.Fatalf("reply %v, %v; want accept (0)", reply, err)
		}
		c, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.Service() != "ok" || c.Class() != flitlink.Voice {
			t.Errorf("accepted %q/%v", c.Service(), c.Class())
		}
		if got, err := c.Recv(ctx); err != nil || string(got) != "hi" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
		if err := c.Send(ctx, []byte("yo")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 6)
		if _, err := io.ReadFull(st, got); err != nil || !bytes.Equal(got, message([]byte("yo"))) {
			t.Fatalf("raw read %x, %v", got, err)
		}
		if l.Err() != nil {
			t.Fatalf("link died: %v", l.Err())
		}
	})
}

// FuzzLink feeds arbitrary bytes to a link after a valid hello: on a
// circuit stream, and on the control stream. The link must never panic,
// and may die only of a protocol violation or the stream's end.
func FuzzLink(f *testing.F) {
	for _, seed := range [][]byte{
		{3, 1, 'x', 0, 0, 0, 2, 'h', 'i'},
		{3, 1, 'x', 0, 0, 0, 0},
		{3, 1, 'x', 0xff, 0xff, 0xff, 0xff},
		{9, 1, 'x'},
		{0, 64},
		{0, 0, 0, 1, 0x02, 0, 0, 0, 1, 0x7f},
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, onControl bool) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			l, raw := rawPeer(t, flitlink.Config{MaxMessageSize: 1 << 10})
			ctl := helloMsg(flitlink.Version, 1<<20)
			if onControl {
				ctl = append(ctl, b...)
			}
			if _, err := raw.Control().Write(ctl); err != nil {
				t.Fatal(err)
			}
			if !onControl {
				st := rawCircuit(t, raw, b)
				st.CloseWrite()
			}
			go func() {
				for {
					c, err := l.Accept(ctx)
					if err != nil {
						return
					}
					for {
						m, err := c.Recv(ctx)
						if err != nil {
							break
						}
						if len(m) > 1<<10 {
							t.Errorf("received %d bytes over the maximum", len(m))
						}
					}
				}
			}()
			time.Sleep(100 * time.Millisecond) // what was written has arrived and been read
			synctest.Wait()
			if err := l.Err(); err != nil && !errors.Is(err, flitlink.ErrProtocol) {
				t.Fatalf("link died of %v", err)
			}
		})
	})
}
