package p2plink

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

// newHost starts a libp2p host on loopback QUIC only.
func newHost(t testing.TB, priv crypto.PrivKey) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.Transport(quic.NewTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.Ping(false),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newNode(t testing.TB) (host.Host, feed.ID) {
	t.Helper()
	k, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := crypto.UnmarshalEd25519PrivateKey(k.Ed25519())
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t, priv)
	if id, err := feed.IDFromPeerIDBytes([]byte(h.ID())); err != nil || id != k.Public() {
		t.Fatalf("host ID %s is not the feed ID %s: %v", h.ID(), k.Public(), err)
	}
	return h, k.Public()
}

func connect(t testing.TB, ctx context.Context, from, to host.Host) {
	t.Helper()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

func testCtx(t *testing.T) context.Context {
	// A guard against a hung network test, not a timing assumption.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLinkOverQUIC(t *testing.T) {
	ctx := testCtx(t)
	ha, ida := newNode(t)
	hb, idb := newNode(t)
	ta, tb := New(ha, flitlink.Config{}), New(hb, flitlink.Config{})
	defer ta.Close()
	defer tb.Close()
	connect(t, ctx, ha, hb)

	la, err := ta.Dial(ctx, idb)
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	lb, err := tb.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if la.Remote() != idb || lb.Remote() != ida || !la.Initiator() || lb.Initiator() {
		t.Fatalf("remote/initiator: %v %v %v %v", la.Remote(), lb.Remote(), la.Initiator(), lb.Initiator())
	}

	ca, err := la.Open(ctx, "ebt/1", flitlink.Data)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := lb.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	rand.Read(big)
	for _, msg := range [][]byte{[]byte("hello"), big} {
		errc := make(chan error, 1)
		go func() { errc <- ca.Send(ctx, msg) }()
		got, err := cb.Recv(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Recv = %d bytes, %v; want %d", len(got), err, len(msg))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		// And back.
		go func() { errc <- cb.Send(ctx, msg) }()
		if got, err := ca.Recv(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("reply = %d bytes, %v", len(got), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	// The session reports quic-go's round-trip times.
	if latest, min, ok := la.RTT(); !ok || latest <= 0 || min <= 0 {
		t.Errorf("RTT() = %v, %v, %v", latest, min, ok)
	}

	// A second link between the same hosts (as while node settles which
	// to keep): circuits find their own link by its nonce.
	la2, err := tb.Dial(ctx, ida)
	if err != nil {
		t.Fatal(err)
	}
	defer la2.Close()
	lb2, err := ta.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lb2.Close()
	for _, p := range [][2]*flitlink.Link{{la, lb}, {lb, la}, {la2, lb2}, {lb2, la2}} {
		c, err := p[0].Open(ctx, "which", flitlink.Control)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		got, err := p[1].Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := got.Recv(ctx); err != nil || string(m) != "x" {
			t.Fatalf("Recv = %q, %v", m, err)
		}
		c.Close()
		got.Close()
	}

	// Closing one side's link kills the other, not the connection.
	la.Close()
	select {
	case <-lb.Done():
	case <-ctx.Done():
		t.Fatal("peer link survived Close")
	}
	if !errors.Is(lb.Err(), flitlink.ErrLinkClosed) {
		t.Errorf("peer link error: %v", lb.Err())
	}
	if len(ha.Network().ConnsToPeer(hb.ID())) == 0 || la2.Err() != nil {
		t.Errorf("closing a link closed the connection (other link: %v)", la2.Err())
	}

	// After Close, the handler is gone: dials to it fail, Accept too.
	tb.Close()
	if _, err := tb.Accept(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
	if l, err := ta.Dial(ctx, idb); err == nil {
		// With lazy protocol negotiation the refusal shows on the link.
		select {
		case <-l.Done():
		case <-ctx.Done():
			t.Error("link to a closed transport survived")
		}
		l.Close()
	}
}

func TestBacklogAndForeignKeys(t *testing.T) {
	ctx := testCtx(t)
	ha, _ := newNode(t)
	hb, idb := newNode(t)
	ta, tb := New(ha, flitlink.Config{}), New(hb, flitlink.Config{})
	defer ta.Close()
	defer tb.Close()
	connect(t, ctx, ha, hb)

	// Over the backlog, streams are reset: one of AcceptBacklog+1 dials dies.
	dead := make(chan *flitlink.Link, AcceptBacklog+1)
	for range AcceptBacklog + 1 {
		l, err := ta.Dial(ctx, idb)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			<-l.Done()
			dead <- l
		}()
	}
	select {
	case l := <-dead:
		t.Logf("link over the backlog died: %v", l.Err())
	case <-ctx.Done():
		t.Fatal("no link was refused over the backlog")
	}
	for range AcceptBacklog {
		l, err := tb.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}

	// A peer whose key is not ed25519 is refused.
	priv, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hc := newHost(t, priv)
	tc := New(hc, flitlink.Config{})
	defer tc.Close()
	connect(t, ctx, hc, hb)
	l, err := tc.Dial(ctx, idb)
	if err == nil {
		defer l.Close()
		select {
		case <-l.Done():
		case <-ctx.Done():
			t.Fatal("link from a secp256k1 peer survived")
		}
		err = l.Err()
	}
	t.Logf("secp256k1 peer: %v", err)
	// The handler reset the stream instead of queueing a link.
	if n := len(tb.backlog); n != 0 {
		t.Errorf("%d links from a secp256k1 peer queued", n)
	}
}

// TestBadPreamble: streams whose preamble has another version or kind, or
// names a link the host does not know, are reset and make no link.
func TestBadPreamble(t *testing.T) {
	ctx := testCtx(t)
	ha, _ := newNode(t)
	hb, _ := newNode(t)
	tb := New(hb, flitlink.Config{})
	defer tb.Close()
	connect(t, ctx, ha, hb)
	for _, pre := range [][]byte{
		{1, kindLink, 0, 0, 0, 0, 0, 0, 0, 1},         // version 1
		{flitlink.Version, 3, 0, 0, 0, 0, 0, 0, 0, 1}, // unknown kind
		appendPreamble(nil, kindOwnLink, 42),          // a circuit of no link
	} {
		s, err := ha.NewStream(ctx, hb.ID(), ProtocolID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(pre); err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second)) // a guard, not a timing assumption
		if _, err := io.ReadAll(s); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("preamble %x: %v, want a reset", pre, err)
		}
		s.Reset()
	}
	if n := len(tb.backlog); n != 0 {
		t.Errorf("%d links queued from bad preambles", n)
	}
}
