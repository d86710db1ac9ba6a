package flitlink_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
)

var (
	idA = feed.ID{0xa}
	idB = feed.ID{0xb}
)

// newPair returns two links over a new memlink connection: a is the
// initiator. Both links are closed when the test ends.
func newPair(t testing.TB, mcfg memlink.Config, cfgA, cfgB flitlink.Config) (a, b *flitlink.Link) {
	t.Helper()
	sa, sb := memlink.NewPair(mcfg, idA, idB)
	a = flitlink.NewLink(sa, idB, true, cfgA)
	b = flitlink.NewLink(sb, idA, false, cfgB)
	t.Cleanup(func() {
		a.Close()
		b.Close()
	})
	return a, b
}

// networkPair returns two links over a new memlink network (whose knobs,
// such as Stall, the test turns): a is the initiator. Both links are
// closed when the test ends.
func networkPair(t *testing.T, ctx context.Context, mcfg memlink.Config) (n *memlink.Network, a, b *flitlink.Link) {
	t.Helper()
	n = memlink.NewNetwork(mcfg)
	eb := n.Endpoint(idB)
	a, err := n.Endpoint(idA).Dial(ctx, idB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if b, err = eb.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return n, a, b
}

// rawPeer returns a link (the acceptor) and the initiator's session, which
// the test drives by hand.
func rawPeer(t *testing.T, cfg flitlink.Config) (*flitlink.Link, flitlink.Session) {
	t.Helper()
	sa, sb := memlink.NewPair(memlink.Config{Latency: time.Millisecond}, idA, idB)
	l := flitlink.NewLink(sb, idA, false, cfg)
	t.Cleanup(func() {
		l.Close()
		sa.Close()
	})
	return l, sa
}

// testCtx returns a context that fails a stuck test after a (fake, inside
// synctest) minute instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openPair opens a circuit from a and accepts it on b.
func openPair(t *testing.T, a, b *flitlink.Link, service string, class flitlink.Class) (ca, cb *flitlink.Circuit) {
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
	if cb.Service() != service || cb.Class() != class {
		t.Fatalf("accepted %q/%v, opened %q/%v", cb.Service(), cb.Class(), service, class)
	}
	return ca, cb
}

// checkAlive fails the test if a link died.
func checkAlive(t *testing.T, links ...*flitlink.Link) {
	t.Helper()
	for _, l := range links {
		if err := l.Err(); err != nil {
			t.Errorf("link to %s died: %v", l.Remote().Short(), err)
		}
	}
}

// message encodes msg with its length prefix, as on the wire.
func message(msg []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)
}

// helloMsg is a HELLO of version v and max message size maxMsg, framed.
func helloMsg(v byte, maxMsg uint32) []byte {
	return message(binary.BigEndian.AppendUint32([]byte{0x01, v, 0, 1}, maxMsg))
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
