package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// waitMessages waits until n holds want messages in id, woken by
// WatchContext, and returns them all in cursor order.
func waitMessages(t *testing.T, ctx context.Context, n *Node, id feed.ID, want int) []api.Message {
	t.Helper()
	ch, stop := n.WatchContext(id)
	defer stop()
	for {
		ms, _, err := n.ContextMessages(id, 0, 10*want+10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) >= want {
			return ms
		}
		select {
		case <-ch:
		case <-ctx.Done():
			fs, _ := n.Feeds()
			t.Fatalf("%s holds %d messages of %s, want %d; gossip %+v; feeds %+v; ebt %+v", n.id.Short(), len(ms), id.Short(), want, n.ContextStats(), fs, n.EBTPeers())
		}
	}
}

// checkOrder fails unless ms has no duplicate and each author's messages
// are in seq order with consecutive cursors.
func checkOrder(t *testing.T, ms []api.Message) map[feed.Hash]bool {
	t.Helper()
	seen := map[feed.Hash]bool{}
	last := map[feed.ID]uint64{}
	for i, m := range ms {
		if seen[m.ID] {
			t.Fatalf("message %s twice", m.ID)
		}
		seen[m.ID] = true
		if m.Seq <= last[m.Author] {
			t.Fatalf("author %s seq %d after %d", m.Author.Short(), m.Seq, last[m.Author])
		}
		last[m.Author] = m.Seq
		if m.Cursor != uint64(i+1) {
			t.Fatalf("message %d has cursor %d", i, m.Cursor)
		}
	}
	return seen
}

// TestContextChain: three nodes in a chain A–B–C over QUIC. A creates a
// context, B and C join by ID; each publishes while the others run; all
// end with the same messages, each once, each author in order. A fourth
// node D, linked to C only, joins late and gets the history, then live.
func TestContextChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b, c := startLogged(t, ctx, "A"), startLogged(t, ctx, "B"), startLogged(t, ctx, "C")
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	room, err := a.CreateContext(ctx, api.ContextCreateParams{Name: "room", Description: "a test room"})
	if err != nil {
		t.Fatal(err)
	}
	if !room.Owner || room.Name != "room" || !room.Joined {
		t.Fatalf("created %+v", room)
	}
	for _, n := range []*Node{b, c} {
		if _, err := n.JoinContext(ctx, room.ID); err != nil {
			t.Fatal(err)
		}
	}
	const each = 20
	errc := make(chan error, 3)
	published := make([][]api.Message, 3) // what PublishContext returned, per node
	for i, n := range []*Node{a, b, c} {
		go func() {
			for j := range each {
				m, err := n.PublishContext(ctx, room.ID, fmt.Appendf(nil, "%s says %d", n.id.Short(), j))
				if err != nil {
					errc <- err
					return
				}
				published[i] = append(published[i], m)
			}
			errc <- nil
		}()
	}
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	var sets []map[feed.Hash]bool
	for i, n := range []*Node{a, b, c} {
		ms := waitMessages(t, ctx, n, room.ID, 3*each)
		sets = append(sets, checkOrder(t, ms))
		for _, p := range published[i] {
			if p.Cursor == 0 || p.Cursor > uint64(len(ms)) || ms[p.Cursor-1].ID != p.ID || p.Author != n.id {
				t.Fatalf("publish returned %+v, not the message at its cursor", p)
			}
		}
	}
	for i, s := range sets {
		if len(s) != 3*each {
			t.Fatalf("node %d holds %d messages", i, len(s))
		}
		for id := range sets[0] {
			if !s[id] {
				t.Fatalf("node %d lacks %s", i, id)
			}
		}
	}
	waitHead(t, ctx, c, room.ID, 1) // the context's own feed, with its meta
	info, err := c.contextInfo(room.ID)
	if err != nil || info.Name != "room" || info.Owner {
		t.Fatalf("C sees %+v, %v", info, err)
	}

	d := startLogged(t, ctx, "D")
	if err := d.Connect(ctx, addrOf(t, c)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.JoinContext(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, waitMessages(t, ctx, d, room.ID, 3*each))
	if _, err := b.PublishContext(ctx, room.ID, []byte("after D joined")); err != nil {
		t.Fatal(err)
	}
	ms := checkOrder(t, waitMessages(t, ctx, d, room.ID, 3*each+1))
	if len(ms) != 3*each+1 {
		t.Fatalf("D holds %d messages", len(ms))
	}
}

// TestContextBadInput: publishing to a context not joined, a body over the
// limit, a ban by a node without the context's key.
func TestContextBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := startNode(t, ctx)
	other := startNode(t, ctx).ID()
	if _, err := a.PublishContext(ctx, other, []byte("x")); !errors.Is(err, api.ErrNotJoined) {
		t.Fatalf("publish to a context not joined: %v", err)
	}
	if err := a.SendContext(ctx, other, []byte("x")); !errors.Is(err, api.ErrNotJoined) {
		t.Fatalf("send to a context not joined: %v", err)
	}
	room, err := a.CreateContext(ctx, api.ContextCreateParams{Name: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PublishContext(ctx, room.ID, make([]byte, api.MaxMessageBody+1)); !errors.Is(err, feed.ErrTooLarge) {
		t.Fatalf("oversized body: %v", err)
	}
	if _, err := a.Publish(ctx, feed.TypeCtx, nil); !errors.Is(err, ErrReservedType) {
		t.Fatalf("feed.publish of type ctx: %v", err)
	}
	if _, err := a.BanContext(ctx, other, room.ID, true); !errors.Is(err, api.ErrNotAllowed) {
		t.Fatalf("ban without the key: %v", err)
	}
	if c, err := a.store.CtxCursor(room.ID); err != nil || c != 0 {
		t.Fatalf("messages stored: %d, %v", c, err)
	}
}

// rawGossiper is a bare libp2p host with plain gossipsub (no contextd
// validation): it injects what a hostile or buggy peer could send.
type rawGossiper struct {
	key   feed.PrivateKey
	topic *pubsub.Topic
}

func newRawGossiper(t *testing.T, ctx context.Context, to *Node, room feed.ID) *rawGossiper {
	t.Helper()
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHost(key, []string{"/ip4/127.0.0.1/udp/0/quic-v1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ps, err := pubsub.NewGossipSub(ctx, h, contexts.GossipOptions(contexts.Lean)...)
	if err != nil {
		t.Fatal(err)
	}
	topic, err := ps.Join(contexts.Topic(room))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topic.Subscribe(); err != nil {
		t.Fatal(err)
	}
	events, err := topic.EventHandler()
	if err != nil {
		t.Fatal(err)
	}
	defer events.Cancel()
	if err := h.Connect(ctx, peer.AddrInfo{ID: to.host.ID(), Addrs: to.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// Wait until this peer's gossip knows the node is in the topic.
	if ev, err := events.NextPeerEvent(ctx); err != nil || ev.Type != pubsub.PeerJoin {
		t.Fatalf("gossip peer never saw the node join the topic: %+v, %v", ev, err)
	}
	return &rawGossiper{key: key, topic: topic}
}

// entry signs the next ctx entry of g's feed after head.
func (g *rawGossiper) entry(t *testing.T, head feed.Head, room feed.ID, text string) *feed.Entry {
	t.Helper()
	body, err := feed.Ctx{Context: room, Body: []byte(text)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	e, err := feed.Sign(g.key, head, feed.TypeCtx, body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (g *rawGossiper) send(t *testing.T, ctx context.Context, e *feed.Entry) {
	t.Helper()
	if err := g.topic.Publish(ctx, append([]byte{1}, e.Encode()...)); err != nil {
		t.Fatal(err)
	}
}

// TestContextGossipValidation: a message with a bad signature, one from an
// author the context bans and one from an author the node blocks are
// dropped and stored nowhere, and the peer that sent them is still heard.
func TestContextGossipValidation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	room, err := a.CreateContext(ctx, api.ContextCreateParams{Name: "moderated"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JoinContext(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	g := newRawGossiper(t, ctx, b, room.ID)
	banned, blocked := startNode(t, ctx).key, startNode(t, ctx).key
	if _, err := a.BanContext(ctx, room.ID, banned.Public(), true); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, room.ID, 2) // meta, ban
	if _, err := b.Contact(ctx, blocked.Public(), feed.RelBlock); err != nil {
		t.Fatal(err)
	}

	// A good message first: the path from the gossiper to B works.
	first := g.entry(t, feed.Head{}, room.ID, "hello")
	g.send(t, ctx, first)
	waitMessages(t, ctx, b, room.ID, 1)

	// A forged, a banned and a blocked author's message, then a good one.
	// pubsub validates a peer's messages on several workers, so the good
	// one may be stored before the others are judged: the counter says
	// when all three were.
	bad := g.entry(t, first.Next(), room.ID, "forged")
	bad.Sig[0] ^= 1
	g.send(t, ctx, bad)
	for _, key := range []feed.PrivateKey{banned, blocked} {
		e, err := feed.Sign(key, feed.Head{}, feed.TypeCtx, must(feed.Ctx{Context: room.ID, Body: []byte("spam")}.Encode()), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		g.send(t, ctx, e)
	}
	good := g.entry(t, first.Next(), room.ID, "still here")
	g.send(t, ctx, good)
	waitMessages(t, ctx, b, room.ID, 2)
	for st := b.ContextStats(); st.Rejected != 3; st = b.ContextStats() {
		select {
		case <-ctx.Done():
			t.Fatalf("gossip rejected or ignored %d messages, want 3 (%+v)", st.Rejected, st)
		case <-time.After(10 * time.Millisecond):
		}
	}
	ms, _, err := b.ContextMessages(room.ID, 0, 10)
	if err != nil || len(ms) != 2 || ms[0].ID != first.ID() || ms[1].ID != good.ID() {
		t.Fatalf("B holds %+v (%v), want only the two good messages", ms, err)
	}
	for _, id := range []feed.ID{g.key.Public(), banned.Public(), blocked.Public()} {
		if h, _ := b.store.Head(id); id != good.Author && h.Seq != 0 {
			t.Fatalf("B stored %s's feed up to %d", id.Short(), h.Seq)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// lockedWriter serialises writes to a buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startLogged is startNode with the node's log (without Badger's lines)
// shown if the test fails.
func startLogged(t *testing.T, ctx context.Context, name string) *Node {
	var buf bytes.Buffer
	var mu sync.Mutex
	h := slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})
	n, _ := startNodeWith(t, ctx, Config{Logger: slog.New(h)})
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			var keep []string
			for _, l := range strings.Split(buf.String(), "\n") {
				if !strings.Contains(l, "component=badger") {
					keep = append(keep, l)
				}
			}
			t.Logf("%s (%s) log:\n%s", name, n.id.Short(), strings.Join(keep, "\n"))
			mu.Unlock()
		}
	})
	return n
}

// waitFanout waits until n gossips context id on fanout f.
func waitFanout(t *testing.T, ctx context.Context, n *Node, id feed.ID, f contexts.Fanout) {
	t.Helper()
	for {
		if got, ok := n.ctxs.Fanout(id); ok && got == f {
			return
		}
		select {
		case <-ctx.Done():
			got, ok := n.ctxs.Fanout(id)
			t.Fatalf("%s gossips %s on %s (joined %v), want %s", n.id.Short(), id.Short(), got, ok, f)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestContextFanout: a context created wide, and a person's key, gossip
// on the wide mesh; a room on the lean one. A joiner that does not hold
// the context's feed yet starts lean and moves once the feed tells it,
// and its messages then go by gossip on the wide mesh. A move never joins
// a context left meanwhile.
func TestContextFanout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	room := must(a.CreateContext(ctx, api.ContextCreateParams{Name: "room"}))
	stage := must(a.CreateContext(ctx, api.ContextCreateParams{Name: "stage", Wide: true}))
	if !stage.Wide || room.Wide {
		t.Fatalf("created %+v and %+v", room, stage)
	}
	waitFanout(t, ctx, a, room.ID, contexts.Lean)
	waitFanout(t, ctx, a, stage.ID, contexts.Wide)
	// A person's own key names the room of their followers.
	must(a.Publish(ctx, "post", []byte("hello")))
	for _, id := range []feed.ID{room.ID, stage.ID, a.id} {
		must(b.JoinContext(ctx, id))
	}
	waitFanout(t, ctx, b, stage.ID, contexts.Wide)
	waitFanout(t, ctx, b, a.id, contexts.Wide)
	waitFanout(t, ctx, b, room.ID, contexts.Lean)
	if info := must(b.contextInfo(stage.ID)); !info.Wide || info.Name != "stage" {
		t.Fatalf("B sees %+v", info)
	}
	if info := must(b.contextInfo(a.id)); !info.Wide {
		t.Fatalf("B sees A's own key as %+v, not wide", info)
	}
	if info := must(b.contextInfo(room.ID)); info.Wide {
		t.Fatalf("B sees the room as %+v, wide", info)
	}

	// Both on the wide mesh: B's message reaches A by gossip.
	before := a.ctxs.Stats().Received
	sent := must(b.PublishContext(ctx, stage.ID, []byte("from B")))
	got := waitMessages(t, ctx, a, stage.ID, 1)
	if got[0].ID != sent.ID {
		t.Fatalf("A holds %+v, B sent %+v", got[0], sent)
	}
	for a.ctxs.Stats().Received == before {
		select {
		case <-ctx.Done():
			t.Fatal("B's message reached A, but not by gossip")
		case <-time.After(20 * time.Millisecond):
		}
	}

	if err := b.LeaveContext(room.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.ctxs.Move(room.ID, contexts.Wide); err != nil || b.ctxs.Joined(room.ID) {
		t.Fatalf("a move after leaving: %v, joined %v", err, b.ctxs.Joined(room.ID))
	}
}
