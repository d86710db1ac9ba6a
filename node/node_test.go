package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// testTimeout bounds each test against hangs; nothing depends on speed.
const testTimeout = 2 * time.Minute

// startNode runs a node on 127.0.0.1 in a new temp home until the test ends.
func startNode(t testing.TB, ctx context.Context) *Node {
	t.Helper()
	n, _ := startNodeIn(t, ctx, t.TempDir())
	return n
}

// startNodeIn runs a node in home (initialised if needed) until stop is
// called or the test ends.
func startNodeIn(t testing.TB, ctx context.Context, home string) (n *Node, stop func()) {
	t.Helper()
	return startNodeWith(t, ctx, Config{Home: home})
}

// startNodeWith runs a node configured by cfg until stop is called or the
// test ends: in a new temp home if cfg.Home is empty (initialised if
// needed), listening on 127.0.0.1 unless cfg.Listen is set.
func startNodeWith(t testing.TB, ctx context.Context, cfg Config) (n *Node, stop func()) {
	t.Helper()
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{"/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	if _, err := Init(cfg.Home); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			if err := n.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return n, stop
}

// waitHead waits until n holds id's feed up to seq, woken by Watch.
func waitHead(t *testing.T, ctx context.Context, n *Node, id feed.ID, seq uint64) {
	t.Helper()
	ch, stop := n.Watch(id)
	defer stop()
	for {
		h, err := n.store.Head(id)
		if err != nil {
			t.Fatal(err)
		}
		if h.Seq >= seq {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s holds %s up to %d, want %d", n.id.Short(), id.Short(), h.Seq, seq)
		}
	}
}

func TestReplicateOverQUIC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)
	for i := range 20 {
		if _, err := a.Publish(ctx, "post", fmt.Appendf(nil, "entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Contact(ctx, a.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	// Both dial at once: exactly one link must survive on each side.
	errs := make(chan error, 2)
	go func() { errs <- a.Connect(ctx, addrOf(t, b)) }()
	go func() { errs <- b.Connect(ctx, addrOf(t, a)) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	waitHead(t, ctx, b, a.ID(), 20)
	if _, err := a.Publish(ctx, "post", []byte("live")); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, a.ID(), 21)
	for _, n := range []*Node{a, b} {
		if ps := n.Peers(); len(ps) != 1 {
			t.Errorf("%s has %d peers, want 1: %+v", n.id.Short(), len(ps), ps)
		}
	}
	fs, err := b.Feeds()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, f := range fs {
		if f.ID == a.ID() {
			found = true
			if f.Local != 21 || f.Best < 21 {
				t.Errorf("B's status of A's feed: %+v", f)
			}
		}
	}
	if !found || fs[0].ID != b.ID() {
		t.Errorf("B's feeds: %+v", fs)
	}
}

func TestRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)

	if _, err := a.Publish(ctx, feed.TypeContact, nil); !errors.Is(err, ErrReservedType) || !errors.Is(err, api.ErrInvalidParams) {
		t.Errorf("publishing a contact entry directly: %v", err)
	}
	if _, err := a.Contact(ctx, a.ID(), feed.RelFollow); !errors.Is(err, ErrSelf) {
		t.Errorf("following self: %v", err)
	}
	if _, err := a.Head(b.ID()); !errors.Is(err, api.ErrUnknownFeed) {
		t.Errorf("head of an unknown feed: %v", err)
	}
	if _, err := a.Entries(b.ID(), 1, 10); !errors.Is(err, api.ErrUnknownFeed) {
		t.Errorf("entries of an unknown feed: %v", err)
	}
	if err := a.Connect(ctx, "/ip4/127.0.0.1/udp/1/quic-v1"); err == nil {
		t.Error("connect to an address without /p2p/ succeeded")
	}
	if err := a.Connect(ctx, a.Info().Addrs[0]); !errors.Is(err, ErrSelf) {
		t.Errorf("connect to self: %v", err)
	}

	// Linked, then blocked: the link goes and cannot come back.
	if err := a.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Contact(ctx, b.ID(), feed.RelBlock); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, addrOf(t, b)); !errors.Is(err, ErrBlocked) {
		t.Errorf("connect to a blocked peer: %v", err)
	}
	g, err := a.Graph()
	if err != nil || len(g.Blocks) != 1 || g.Blocks[0] != b.ID() || len(g.Follows) != 0 {
		t.Errorf("graph after block: %+v, %v", g, err)
	}
	for _, p := range a.Peers() {
		if p.ID == b.ID() {
			t.Errorf("A still lists blocked B as a peer")
		}
	}
}

// addrOf returns n's first address.
func addrOf(t testing.TB, n *Node) string {
	t.Helper()
	addrs := n.Info().Addrs
	if len(addrs) == 0 {
		t.Fatalf("%s has no addresses", n.id.Short())
	}
	return addrs[0]
}

// TestLostStoreResyncsOwnFeed: a node that lost its store and restarts with
// its key gets its own feed back from a peer and publishes on from its old
// head instead of forking its feed.
func TestLostStoreResyncsOwnFeed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	homeA := t.TempDir()
	a, stopA := startNodeIn(t, ctx, homeA)
	b := startNode(t, ctx)
	if _, err := a.Contact(ctx, b.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := a.Publish(ctx, "post", fmt.Appendf(nil, "entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Contact(ctx, a.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, a.ID(), 6)
	stopA()

	// Same key, empty store.
	homeA2 := t.TempDir()
	key, err := os.ReadFile(filepath.Join(homeA, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(homeA2, keyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	a2, _ := startNodeIn(t, ctx, homeA2)
	if a2.ID() != a.ID() {
		t.Fatal("restarted node has another identity")
	}
	if err := a2.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, a2, a2.ID(), 6)
	e, err := a2.Publish(ctx, "post", []byte("after the restore"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 7 {
		t.Fatalf("published seq %d after restoring 6 entries", e.Seq)
	}
	waitHead(t, ctx, b, a.ID(), 7)
	if p, err := b.store.ForkProof(a.ID()); err == nil {
		t.Fatalf("B holds a fork proof of A: %v", p)
	}
}
