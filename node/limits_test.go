package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/p2plink"
	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/swarm"
)

func TestAbusive(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("ebt: %w: too many", ebt.ErrAbuse), true},
		{fmt.Errorf("x: %w", ebt.ErrProtocol), true},
		{fmt.Errorf("x: %w", swarm.ErrAbuse), true},
		{fmt.Errorf("x: %w", swarm.ErrMalformed), true},
		{fmt.Errorf("%w: %w", flitlink.ErrLinkClosed, flitlink.ErrProtocol), true},
		{fmt.Errorf("x: %w", swarm.ErrMismatch), false},
		{ebt.ErrBlocked, false},
		{flitlink.ErrLinkClosed, false},
		{context.Canceled, false},
		{nil, false},
	} {
		if got := abusive(tc.err); got != tc.want {
			t.Errorf("abusive(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestDrop: a dropped peer loses its link and connections and is refused,
// whichever side dials, until its cool-down ends; other peers are not.
func TestDrop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, _ := startNodeWith(t, ctx, Config{Limits: Limits{CooldownSeconds: 3600}})
	b, c := startNode(t, ctx), startNode(t, ctx)
	for _, n := range []*Node{b, c} {
		if err := n.Connect(ctx, addrOf(t, a)); err != nil {
			t.Fatal(err)
		}
	}
	waitLinked(t, ctx, a, b, true)
	waitLinked(t, ctx, a, c, true)
	a.drop(b.ID(), fmt.Errorf("test: %w", contexts.ErrAbuse))
	a.drop(b.ID(), fmt.Errorf("test: %w", contexts.ErrAbuse)) // logged once
	waitLinked(t, ctx, a, b, false)
	// The peer's dial fails, or (over a connection it has not yet seen
	// closed) opens a link the node never takes, which then dies.
	b.Connect(ctx, addrOf(t, a))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	waitLinked(t, wctx, a, b, false)
	if err := a.Connect(ctx, addrOf(t, b)); err == nil {
		t.Error("the node dialed the dropped peer")
	}
	if !linked(a, c) {
		t.Errorf("another peer lost its link: a has %v, c has %v", a.Peers(), c.Peers())
	}
	// Refused by the gater, for the cool-down and no longer.
	if (gater{a}).allow(peer.ID(b.ID().PeerIDBytes())) || !(gater{a}).allow(peer.ID(c.ID().PeerIDBytes())) {
		t.Error("the gater does not refuse the dropped peer alone")
	}
	if a.bans.Banned(time.Now().Add(time.Hour+time.Second), b.ID()) {
		t.Error("refused after the cool-down")
	}
}

// waitLinked waits until n and p both list each other as peers (want) or
// neither does.
func waitLinked(t *testing.T, ctx context.Context, n, p *Node, want bool) {
	t.Helper()
	for linked(n, p) != want || linked(p, n) != want {
		if ctx.Err() != nil {
			t.Fatalf("%s and %s: linked is not %v", n.ID().Short(), p.ID().Short(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

func linked(n, p *Node) bool {
	for _, q := range n.Peers() {
		if q.ID == p.ID() {
			return true
		}
	}
	return false
}

func TestDefaultLimits(t *testing.T) {
	l := DefaultLimits()
	if l.NotesPerSec <= 0 || l.EntriesPerSec <= 0 || l.MaxFeedsPerPeer <= 0 || l.ChunkRequestsPerSec <= 0 || l.GossipPerSec <= 0 {
		t.Errorf("a default rate is not set: %+v", l)
	}
	if p := l.Policy(); p.Strikes <= 0 || p.Forgive <= 0 || p.Cooldown <= 0 {
		t.Errorf("default policy %+v", p)
	}
}

// TestDropOversizedFrame: a peer that sends a flitlink frame beyond its
// bounds is dropped and refused.
func TestDropOversizedFrame(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := startNode(t, ctx)
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHost(key, []string{"/ip4/127.0.0.1/udp/0/quic-v1"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ai, err := peer.AddrInfoFromString(addrOf(t, a))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(ctx, *ai); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, ai.ID, p2plink.ProtocolID)
	if err != nil {
		t.Fatal(err)
	}
	// A link's control stream (preamble: version 2, kind 0, a nonce)
	// whose first message announces 16 MiB - 1 bytes: the limit is 256.
	if _, err := s.Write([]byte{2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	for !a.refused(key.Public()) {
		if ctx.Err() != nil {
			t.Fatal("the peer was not dropped")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLimitsConfig: init writes the default limits to config.json, and
// what an operator sets there is read back.
func TestLimitsConfig(t *testing.T) {
	home := t.TempDir()
	if _, err := Init(home); err != nil {
		t.Fatal(err)
	}
	fc, err := LoadFileConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	if fc.Limits != DefaultLimits() {
		t.Errorf("a new home's limits: %+v, want %+v", fc.Limits, DefaultLimits())
	}
	b := []byte(`{"version": 1, "limits": {"gossip_per_sec": 50, "strikes": 3, "cooldown_seconds": 60}}`)
	if err := os.WriteFile(filepath.Join(home, configFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if fc, err = LoadFileConfig(home); err != nil {
		t.Fatal(err)
	}
	l := fc.Limits
	if l.GossipPerSec != 50 || l.contexts().GossipPerSec != 50 || l.Policy() != (limit.Policy{Strikes: 3, Forgive: limit.DefaultPolicy.Forgive, Cooldown: time.Minute}) {
		t.Errorf("limits read: %+v, policy %+v", l, l.Policy())
	}
	// The node fills what is not set with the defaults, keeping the rest.
	l.fill()
	if l.NotesPerSec != ebt.DefaultNotesPerSec || l.GossipPerSec != 50 {
		t.Errorf("filled limits: %+v", l)
	}
}
