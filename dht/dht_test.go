package dht

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// newHost builds a host the way node does: QUIC only on loopback, no relays,
// no metrics.
func newHost(t *testing.T) (host.Host, feed.ID) {
	t.Helper()
	key, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := crypto.UnmarshalEd25519PrivateKey(key.Ed25519())
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.Transport(quic.NewTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, key.Public()
}

func newDHT(t *testing.T, ctx context.Context, h host.Host, bootstrap ...peer.AddrInfo) *DHT {
	t.Helper()
	d, err := New(ctx, h, Config{Bootstrap: bootstrap, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// star is three DHT nodes where A and B know only D, both bootstrapped.
type star struct {
	hD, hA, hB host.Host
	idA        feed.ID
	dA, dB     *DHT
}

func newStar(t *testing.T, ctx context.Context) star {
	t.Helper()
	var n star
	n.hD, _ = newHost(t)
	n.hA, n.idA = newHost(t)
	n.hB, _ = newHost(t)
	bootD := peer.AddrInfo{ID: n.hD.ID(), Addrs: n.hD.Addrs()}
	newDHT(t, ctx, n.hD)
	n.dA = newDHT(t, ctx, n.hA, bootD)
	n.dB = newDHT(t, ctx, n.hB, bootD)
	for _, d := range []*DHT{n.dA, n.dB} {
		if err := d.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestProvideFindOverBootstrap runs three nodes: A and B know only D. A
// provides an object; B finds A as its provider, and A's addresses, through
// the DHT.
func TestProvideFindOverBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()

	n := newStar(t, ctx)
	hA, idA, dA, dB := n.hA, n.idA, n.dA, n.dB

	for _, h := range []host.Host{n.hD, hA, n.hB} {
		protos := h.Mux().Protocols()
		if !slices.Contains(protos, Protocol) {
			t.Errorf("host %s does not serve %s: %v", h.ID(), Protocol, protos)
		}
		for _, p := range protos {
			if strings.HasPrefix(string(p), "/ipfs/kad/") || strings.HasPrefix(string(p), "/ipfs/lan/kad/") {
				t.Errorf("host %s serves public DHT protocol %s", h.ID(), p)
			}
		}
	}

	tree, err := object.Build(bytes.NewReader([]byte("an object only A holds")), object.Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := tree.ID()
	if err := dA.Provide(ctx, c); err != nil {
		t.Fatal(err)
	}

	provs, err := dB.FindProviders(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(provs) != 1 || provs[0].ID != hA.ID() {
		t.Fatalf("providers of %s = %v, want [%s]", c, provs, hA.ID())
	}
	if len(provs[0].Addrs) == 0 {
		t.Errorf("provider %s came without addresses", hA.ID())
	}

	ai, err := dB.FindPeer(ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	if ai.ID != hA.ID() {
		t.Fatalf("FindPeer(A) = %s, want %s", ai.ID, hA.ID())
	}
	for _, want := range hA.Addrs() {
		if !slices.ContainsFunc(ai.Addrs, want.Equal) {
			t.Errorf("FindPeer(A) addrs %v lack A's listen address %s", ai.Addrs, want)
		}
	}
}

// TestReprovide announces several objects through D and finds each from B.
func TestReprovide(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()

	n := newStar(t, ctx)
	hA, dA, dB := n.hA, n.dA, n.dB

	var ids []cid.Cid
	for i := range 20 {
		tree, err := object.Build(bytes.NewReader([]byte{byte(i)}), object.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tree.ID())
	}
	if err := dA.Reprovide(ctx, ids); err != nil {
		t.Fatal(err)
	}
	for _, c := range ids {
		provs, err := dB.FindProviders(ctx, c, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(provs) != 1 || provs[0].ID != hA.ID() {
			t.Fatalf("providers of %s = %v, want [%s]", c, provs, hA.ID())
		}
	}
}

// TestBootstrapUnreachable fails cleanly when no bootstrap peer answers.
func TestBootstrapUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	hA, _ := newHost(t)
	hGone, _ := newHost(t)
	gone := peer.AddrInfo{ID: hGone.ID(), Addrs: hGone.Addrs()}
	hGone.Close()

	dA := newDHT(t, ctx, hA, gone)
	bctx, bcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer bcancel()
	if err := dA.Bootstrap(bctx); !errors.Is(err, ErrNoBootstrap) {
		t.Fatalf("Bootstrap with a dead peer = %v, want ErrNoBootstrap", err)
	}
}

// TestFindPeerUnknown reports ErrNotFound for an ID nobody knows.
func TestFindPeerUnknown(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	hD, _ := newHost(t)
	hB, _ := newHost(t)
	newDHT(t, ctx, hD)
	dB := newDHT(t, ctx, hB, peer.AddrInfo{ID: hD.ID(), Addrs: hD.Addrs()})
	if err := dB.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	key, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dB.FindPeer(ctx, key.Public()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("FindPeer(unknown) = %v, want ErrNotFound", err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
