package flitlink

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

var (
	idA = feed.ID{0xa}
	idB = feed.ID{0xb}
)

// newPair returns two links over net.Pipe: a is the initiator. tap, if not
// nil, wraps a's end and records what a writes. Both links are closed when
// the test ends.
func newPair(t *testing.T, cfgA, cfgB Config, tap *tapConn) (a, b *Link) {
	t.Helper()
	ca, cb := net.Pipe()
	var conn net.Conn = ca
	if tap != nil {
		tap.Conn = ca
		conn = tap
	}
	a = NewLink(conn, idB, true, cfgA)
	b = NewLink(cb, idA, false, cfgB)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// testCtx returns a context that fails a stuck test after a (fake, inside
// synctest) minute instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openPair opens a circuit from a and accepts it on b.
func openPair(t *testing.T, a, b *Link, service string, class Class) (ca, cb *Circuit) {
	t.Helper()
	ctx := testCtx(t)
	ca, err := a.Open(ctx, service, class)
	if err != nil {
		t.Fatalf("Open(%q): %v", service, err)
	}
	cb, err = b.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if cb.Service() != service || cb.Class() != class || cb.ID() != ca.ID() {
		t.Fatalf("accepted %q/%v/%d, opened %q/%v/%d", cb.Service(), cb.Class(), cb.ID(), service, class, ca.ID())
	}
	return ca, cb
}

// tapConn records the bytes written through it. While held, each Write
// blocks until release.
type tapConn struct {
	net.Conn

	mu      sync.Mutex
	written []byte
	gate    chan struct{} // non-nil while held
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	c.mu.Lock()
	c.written = append(c.written, p...)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// hold makes later Writes block; it returns the offset of the bytes
// recorded so far.
func (c *tapConn) hold() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gate = make(chan struct{})
	return len(c.written)
}

func (c *tapConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.gate)
	c.gate = nil
}

func (c *tapConn) since(off int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.written[off:])
}

// splitFrames parses a recorded byte stream into frame headers.
func splitFrames(t *testing.T, b []byte) []header {
	t.Helper()
	var hs []header
	r := bytes.NewReader(b)
	var hb [HeaderSize]byte
	buf := make([]byte, MaxFlitSize)
	for r.Len() > 0 {
		h, _, err := readFrame(r, &hb, buf, MaxFlitSize)
		if err != nil {
			t.Fatalf("recorded stream: frame %d: %v", len(hs), err)
		}
		hs = append(hs, h)
	}
	return hs
}

// rawFrame encodes one frame.
func rawFrame(circuit uint32, flags uint8, payload []byte) []byte {
	b := appendHeader(nil, header{circuit: circuit, flags: flags, length: len(payload)})
	return append(b, payload...)
}

// rawControl encodes one control frame.
func rawControl(m control) []byte {
	return appendControlFrame(nil, &m)
}

func rawHello(flit, maxMsg, window uint32) []byte {
	return rawControl(control{typ: ctlHello, version: Version, capability: Capability, flitSize: flit, maxMessage: maxMsg, window: window})
}

// pattern returns n deterministic bytes that differ per seed.
func pattern(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
