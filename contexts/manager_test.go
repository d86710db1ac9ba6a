package contexts

import (
	"sync"
	"testing"
	"testing/synctest"

	"github.com/contextd/contextd/feed"
)

// memNode is a contexts.Node over in-memory feeds.
type memNode struct {
	mu    sync.Mutex
	feeds map[feed.ID][]*feed.Entry
	want  []feed.ID
}

func (n *memNode) Head(a feed.ID) (feed.Head, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	es := n.feeds[a]
	if len(es) == 0 {
		return feed.Head{}, nil
	}
	return es[len(es)-1].Next(), nil
}

func (n *memNode) Relation(a, t feed.ID) (feed.Relation, error) { return feed.RelNone, nil }
func (n *memNode) Members(feed.ID) ([]Member, error)            { return nil, nil }
func (n *memNode) Want(fs []feed.ID) {
	n.mu.Lock()
	n.want = fs
	n.mu.Unlock()
}

// Append appends e if it extends its feed, as the store does.
func (n *memNode) Append(e *feed.Entry) error {
	h, _ := n.Head(e.Author)
	if e.Seq != h.Seq+1 || e.Prev != h.ID {
		return errNotNext
	}
	n.mu.Lock()
	n.feeds[e.Author] = append(n.feeds[e.Author], e)
	n.mu.Unlock()
	return nil
}

var errNotNext = &struct{ error }{}

func (n *memNode) len(a feed.ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.feeds[a])
}

// newBareManager is a Manager without gossip: what receive, hold and the
// drainer need.
func newBareManager(t *testing.T, node Node, maxHeld int) *Manager {
	t.Helper()
	m := newManager(Config{Node: node, MaxHeld: maxHeld})
	t.Cleanup(func() { m.cancel(); m.wg.Wait() })
	return m
}

func chainOf(t *testing.T, key feed.PrivateKey, room feed.ID, n int) []*feed.Entry {
	var es []*feed.Entry
	var head feed.Head
	for range n {
		e := ctxEntry(t, key, head, room, "m")
		head = e.Next()
		es = append(es, e)
	}
	return es
}

// TestHoldAndDrain: entries gossiped ahead of a gap wait, bounded, and go
// in, in order, once the gap fills by gossip or by replication.
func TestHoldAndDrain(t *testing.T) { synctest.Test(t, testHoldAndDrain) }

func testHoldAndDrain(t *testing.T) {
	node := &memNode{feeds: map[feed.ID][]*feed.Entry{}}
	m := newBareManager(t, node, 3)
	key, room := testKey(t, 1), testKey(t, 9).Public()
	a := key.Public()
	es := chainOf(t, key, room, 8)

	m.receive(es[2])
	m.receive(es[1])
	if node.len(a) != 0 || m.Stats().Held != 2 {
		t.Fatalf("stored %d, held %d before the gap filled", node.len(a), m.Stats().Held)
	}
	m.receive(es[0]) // fills the gap: 1, 2, 3 go in
	if node.len(a) != 3 || m.Stats().Held != 0 {
		t.Fatalf("stored %d, held %d after the gap filled", node.len(a), m.Stats().Held)
	}
	m.receive(es[1]) // a duplicate: nothing changes
	// Hold bound: 5, 6, 7 fill it; 8 is dropped.
	for _, e := range es[4:] {
		m.receive(e)
	}
	if st := m.Stats(); st.Held != 3 {
		t.Fatalf("held %d, bound 3", st.Held)
	}
	// Replication brings 4; the drainer appends 5, 6, 7.
	if err := node.Append(es[3]); err != nil {
		t.Fatal(err)
	}
	m.Appended(a)
	synctest.Wait() // the drainer is done
	if node.len(a) != 7 {
		t.Fatalf("stored %d after replication filled the gap, want 7", node.len(a))
	}
	if st := m.Stats(); st.Held != 0 || st.Filled != 5 {
		t.Fatalf("stats after drain: %+v", st)
	}
	// An entry that does not link to the head (another branch) is not stored.
	other := ctxEntry(t, key, es[6].Next(), room, "x")
	other.Prev[0] ^= 1
	m.receive(other)
	if node.len(a) != 7 {
		t.Fatal("an entry not linking to the head was stored")
	}
	// Far ahead: not held.
	far := ctxEntry(t, key, feed.Head{Seq: 7 + maxAhead + 1, ID: es[6].ID()}, room, "far")
	m.receive(far)
	if m.Stats().Held != 0 {
		t.Fatal("an entry far ahead was held")
	}
}

// TestLearnBounded: however many authors peers name, a context's known
// authors (and so the feeds replicated for it) stay within MaxAuthors.
func TestLearnBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		node := &memNode{feeds: map[feed.ID][]*feed.Entry{}}
		m := newBareManager(t, node, 1)
		room := testKey(t, 9).Public()
		m.authors[room] = map[feed.ID]bool{room: true}
		many := make([]feed.ID, MaxAuthors+100)
		for i := range many {
			many[i][0], many[i][1], many[i][2] = byte(i), byte(i>>8), 1
		}
		m.Learn(room, many)
		if n := len(m.authors[room]); n != MaxAuthors {
			t.Fatalf("knows %d authors, bound %d", n, MaxAuthors)
		}
		node.mu.Lock()
		defer node.mu.Unlock()
		if len(node.want) != MaxAuthors {
			t.Fatalf("wants %d feeds, bound %d", len(node.want), MaxAuthors)
		}
	})
}
