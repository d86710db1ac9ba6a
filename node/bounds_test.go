package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
)

// testAuthor writes a feed of another author into a node's store, as
// replication or gossip would.
type testAuthor struct {
	t    *testing.T
	key  feed.PrivateKey
	id   feed.ID
	head feed.Head
}

func newTestAuthor(t *testing.T) *testAuthor {
	k, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &testAuthor{t: t, key: k, id: k.Public()}
}

// sign signs the next entry, claimed at at.
func (a *testAuthor) sign(typ string, body []byte, at time.Time) *feed.Entry {
	a.t.Helper()
	e, err := feed.Sign(a.key, a.head, typ, body, at)
	if err != nil {
		a.t.Fatal(err)
	}
	a.head = e.Next()
	return e
}

// msgs signs n messages of room claimed at at.
func (a *testAuthor) msgs(room feed.ID, n int, at time.Time) []*feed.Entry {
	a.t.Helper()
	var es []*feed.Entry
	for i := range n {
		body, err := feed.Ctx{Context: room, Body: fmt.Appendf(nil, "message %d of %s", i, a.id.Short())}.Encode()
		if err != nil {
			a.t.Fatal(err)
		}
		es = append(es, a.sign(feed.TypeCtx, body, at))
	}
	return es
}

// store appends es to n as entries that came by gossip.
func storeEntries(t *testing.T, n *Node, es []*feed.Entry) {
	t.Helper()
	if err := n.appendLocal(es, false); err != nil {
		t.Fatal(err)
	}
}

// checkRemains reads what n's store holds of id and checks it from its
// first entry, the trust root of a pruned feed; it returns the first seq.
func checkRemains(t *testing.T, n *Node, id feed.ID) uint64 {
	t.Helper()
	tail, err := n.store.Tail(id)
	if err != nil {
		t.Fatal(err)
	}
	head, err := n.store.Head(id)
	if err != nil {
		t.Fatal(err)
	}
	es, err := n.store.Range(id, tail, int(head.Seq-tail+1))
	if err != nil || len(es) == 0 || es[0].Seq != tail {
		t.Fatalf("%s from its tail %d: %d entries, %v", id.Short(), tail, len(es), err)
	}
	if err := es[0].VerifySignature(); err != nil {
		t.Fatal(err)
	}
	ids, err := feed.VerifyRun(id, feed.Head{Seq: tail - 1, ID: es[0].Prev}, es)
	if err != nil || ids[len(ids)-1] != head.ID {
		t.Fatalf("what remains of %s does not verify: %v", id.Short(), err)
	}
	return tail
}

func encSize(es ...*feed.Entry) int64 {
	var n int64
	for _, e := range es {
		n += int64(e.EncodedSize())
	}
	return n
}

func TestForget(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	n, _ := startNodeWith(t, ctx, Config{Hops: 2})
	a, via := newTestAuthor(t), newTestAuthor(t)
	if _, err := n.Contact(ctx, a.id, feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	as := []*feed.Entry{a.sign("post", []byte("hello"), time.Now()), a.sign(feed.TypeContact, feed.Contact{Target: via.id, Rel: feed.RelFollow}.Encode(), time.Now())}
	storeEntries(t, n, as)

	// Refused: the node's own feed, a context it created.
	if _, err := n.Unfollow(ctx, n.id, true); !errors.Is(err, ErrSelf) {
		t.Fatalf("forget self: %v", err)
	}
	room, err := n.CreateContext(ctx, api.ContextCreateParams{Name: "room"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Unfollow(ctx, room.ID, true); !errors.Is(err, api.ErrInvalidParams) {
		t.Fatalf("forget a context's own feed: %v", err)
	}

	// Kept: via follows a (hops 2), so a is still replicated.
	if _, err := n.Contact(ctx, via.id, feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	storeEntries(t, n, []*feed.Entry{via.sign(feed.TypeContact, feed.Contact{Target: a.id, Rel: feed.RelFollow}.Encode(), time.Now())})
	n.repl.ScopeChanged()
	res, err := n.Unfollow(ctx, a.id, true)
	if err != nil || res.Forgotten || res.Kept == "" || res.Seq == 0 {
		t.Fatalf("forget of a feed still in scope: %+v, %v", res, err)
	}
	if h, _ := n.store.Head(a.id); h.Seq != 2 {
		t.Fatalf("a feed still in scope was deleted: head %d", h.Seq)
	}

	// Forgotten once nothing else needs it; a block stays.
	if _, err := n.Contact(ctx, via.id, feed.RelNone); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Contact(ctx, a.id, feed.RelBlock); err != nil {
		t.Fatal(err)
	}
	res, err = n.Unfollow(ctx, a.id, true)
	if err != nil || !res.Forgotten || res.FreedBytes != encSize(as...) || res.Seq != 0 {
		t.Fatalf("forget: %+v, %v", res, err)
	}
	if rel, _ := n.store.Relation(n.id, a.id); rel != feed.RelBlock {
		t.Fatalf("forget dropped the block: %v", rel)
	}
	// The store holds nothing of a any more.
	if h, _ := n.store.Head(a.id); h.Seq != 0 {
		t.Fatalf("head after forget: %d", h.Seq)
	}
	for seq := range uint64(2) {
		if _, err := n.store.Get(a.id, seq+1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("entry %d after forget: %v", seq+1, err)
		}
	}
	if cs, _ := n.store.Contacts(a.id); len(cs) != 0 {
		t.Fatalf("a's contacts after forget: %v", cs)
	}
	if b, _ := n.store.FeedBytes(a.id); b != 0 {
		t.Fatalf("a's bytes after forget: %d", b)
	}
	if _, err := n.Entries(a.id, 1, 10); !errors.Is(err, api.ErrUnknownFeed) {
		t.Fatalf("Entries after forget: %v", err)
	}
	// What remains verifies.
	checkRemains(t, n, n.id)
	checkRemains(t, n, via.id)
}

func TestRemoveObject(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)
	const size = 300 << 10
	id := putFile(t, ctx, n, size)
	keep := putFile(t, ctx, n, 10<<10)
	if _, err := n.RemoveObject(id, false); !errors.Is(err, api.ErrInvalidParams) {
		t.Fatalf("rm of a pinned object: %v", err)
	}
	res, err := n.RemoveObject(id, true)
	if err != nil || res.FreedBytes != size {
		t.Fatalf("rm --force: %+v, %v", res, err)
	}
	// The store holds nothing of it any more; the other object is whole.
	if _, err := n.store.Object(id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("record after rm: %v", err)
	}
	if _, err := n.store.AppendChunks(nil, id, 0, 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("chunk after rm: %v", err)
	}
	if _, err := n.RemoveObject(id, true); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("rm again: %v", err)
	}
	r, _, err := n.OpenObject(ctx, keep, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil || buf.Len() != 10<<10 {
		t.Fatalf("the other object: %d bytes, %v", buf.Len(), err)
	}
	if ids, _ := n.store.ObjectIDs(); len(ids) != 1 || !ids[0].Equals(keep) {
		t.Fatalf("objects after rm: %v", ids)
	}
}

// TestRetention prunes by age and by size: other authors' old messages
// go, the node's own and followed feeds' stay, and what remains verifies.
func TestRetention(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	now := time.Now()
	clock := func() time.Time { return now.Add(48 * time.Hour) }
	n, _ := startNodeWith(t, ctx, Config{Now: clock, Storage: StorageConfig{Retention: Retention{Days: 1}}})
	room, err := n.CreateContext(ctx, api.ContextCreateParams{Name: "room"})
	if err != nil {
		t.Fatal(err)
	}
	x, y := newTestAuthor(t), newTestAuthor(t)
	if _, err := n.Contact(ctx, y.id, feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	n.ctxs.Learn(room.ID, []feed.ID{x.id, y.id})
	old, recent := x.msgs(room.ID, 6, now.Add(-5*24*time.Hour)), x.msgs(room.ID, 4, now.Add(47*time.Hour))
	storeEntries(t, n, old)
	storeEntries(t, n, recent)
	storeEntries(t, n, y.msgs(room.ID, 3, now.Add(-5*24*time.Hour)))
	if _, err := n.PublishContext(ctx, room.ID, []byte("mine, old by the clock")); err != nil {
		t.Fatal(err)
	}
	before, err := n.Storage()
	if err != nil {
		t.Fatal(err)
	}

	feeds, freed, err := n.Retain(ctx)
	if err != nil || feeds != 1 || freed != encSize(old...) {
		t.Fatalf("Retain = %d feeds, %d bytes, %v; want 1, %d", feeds, freed, err, encSize(old...))
	}
	// x's old messages are gone from the store, and their bytes.
	if tail := checkRemains(t, n, x.id); tail != 7 {
		t.Fatalf("x's feed starts at %d, want 7", tail)
	}
	for seq := range uint64(6) {
		if _, err := n.store.Get(x.id, seq+1); !errors.Is(err, store.ErrPruned) {
			t.Fatalf("x's entry %d: %v, want ErrPruned", seq+1, err)
		}
	}
	if b, _ := n.store.FeedBytes(x.id); b != encSize(recent...) {
		t.Fatalf("x's bytes = %d, want %d", b, encSize(recent...))
	}
	if _, err := n.Entries(x.id, 1, 10); !errors.Is(err, api.ErrPruned) {
		t.Fatalf("Entries of pruned seqs: %v", err)
	}
	// The node's own feed, a followed feed and the context's are whole.
	for _, id := range []feed.ID{n.id, y.id, room.ID} {
		if tail := checkRemains(t, n, id); tail != 1 {
			t.Fatalf("%s pruned to %d", id.Short(), tail)
		}
	}
	hist, err := n.ContextHistory(room.ID, api.HistoryParams{Limit: 100})
	if err != nil || len(hist.Messages) != 4+3+1 {
		t.Fatalf("history after retention: %d messages, %v", len(hist.Messages), err)
	}
	after, err := n.Storage()
	if err != nil || after.Contexts[0].OthersBytes != before.Contexts[0].OthersBytes-encSize(old...) {
		t.Fatalf("others' bytes %d → %+v, %v", before.Contexts[0].OthersBytes, after.Contexts, err)
	}
	if feeds, _, err := n.Retain(ctx); err != nil || feeds != 0 {
		t.Fatalf("a second pass pruned %d feeds, %v", feeds, err)
	}

	// By size: keep the newest two of x's messages (y's count too, but
	// y is followed and never pruned, so x's go first).
	n.cfg.Storage.Contexts = map[string]Retention{room.ID.String(): {Bytes: after.Contexts[0].OthersBytes - encSize(recent[:2]...)}}
	if feeds, freed, err := n.Retain(ctx); err != nil || feeds != 1 || freed != encSize(recent[:2]...) {
		t.Fatalf("Retain by size = %d feeds, %d bytes, %v", feeds, freed, err)
	}
	if tail := checkRemains(t, n, x.id); tail != 9 {
		t.Fatalf("x's feed starts at %d, want 9", tail)
	}
}
