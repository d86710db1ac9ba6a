package rpctest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Node is an in-memory rpc.Node: feeds of signed entries, watchers, a
// graph. Its own feed (key KeyFor(0)) is capped at MaxOwn entries so that
// fuzzing stays small. It is safe for concurrent use.
type Node struct {
	self feed.PrivateKey

	mu       sync.Mutex // guards everything below
	feeds    map[feed.ID][]*feed.Entry
	watchers map[feed.ID]map[chan struct{}]struct{}
	graph    map[feed.ID]feed.Relation
	watches  int // live Watch registrations
	panicky  bool
	fail     error // returned by Entries when set

	objs objects  // guarded by its own mutex
	ctxs contexts // likewise
	live streams  // likewise
}

// MaxOwn caps the node's own feed; Publish fails with api.ErrUnavailable beyond it.
const MaxOwn = 1000

// NewNode returns an empty node whose own key is KeyFor(0).
func NewNode() *Node {
	return &Node{
		self:     KeyFor(0),
		feeds:    make(map[feed.ID][]*feed.Entry),
		watchers: make(map[feed.ID]map[chan struct{}]struct{}),
		graph:    make(map[feed.ID]feed.Relation),
	}
}

// KeyFor returns a deterministic test key; KeyFor(0) is the node's own.
func KeyFor(i byte) feed.PrivateKey {
	seed := make([]byte, 32)
	seed[0] = i + 1
	k, err := feed.PrivateKeyFromSeed(seed)
	if err != nil {
		panic(err)
	}
	return k
}

// Append signs and appends an entry to key's feed and signals its watchers.
func (n *Node) Append(key feed.PrivateKey, typ string, body []byte) (*feed.Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := key.Public()
	var head feed.Head
	if es := n.feeds[id]; len(es) > 0 {
		head = es[len(es)-1].Next()
	}
	e, err := feed.Sign(key, head, typ, body, time.UnixMilli(1700000000000+int64(head.Seq)))
	if err != nil {
		return nil, err
	}
	n.feeds[id] = append(n.feeds[id], e)
	for ch := range n.watchers[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return e, nil
}

// SetPanic makes Info panic (p true) or not.
func (n *Node) SetPanic(p bool) {
	n.mu.Lock()
	n.panicky = p
	n.mu.Unlock()
}

// SetEntriesError makes Entries fail with err (nil: succeed again).
func (n *Node) SetEntriesError(err error) {
	n.mu.Lock()
	n.fail = err
	n.mu.Unlock()
}

func (n *Node) checkPanic() {
	n.mu.Lock()
	p := n.panicky
	n.mu.Unlock()
	if p {
		panic("fake node panics")
	}
}

func (n *Node) Info() api.NodeInfo {
	n.checkPanic()
	id := n.self.Public()
	return api.NodeInfo{ID: id, Addrs: []string{"/ip4/127.0.0.1/udp/4001/quic-v1/p2p/" + id.String()}, Version: "test"}
}

func (n *Node) Peers() []api.Peer { return nil }

// Connect fails: with api.ErrInvalidParams for addr "bad", with
// api.ErrUnavailable otherwise.
func (n *Node) Connect(ctx context.Context, addr string) error {
	if addr == "bad" {
		return fmt.Errorf("%w: addr %q is not a multiaddr", api.ErrInvalidParams, addr)
	}
	return fmt.Errorf("dial %s: %w", addr, api.ErrUnavailable)
}

func (n *Node) Publish(ctx context.Context, typ string, body []byte) (*feed.Entry, error) {
	n.mu.Lock()
	full := len(n.feeds[n.self.Public()]) >= MaxOwn
	n.mu.Unlock()
	if full {
		return nil, fmt.Errorf("fake feed is full: %w", api.ErrUnavailable)
	}
	return n.Append(n.self, typ, body)
}

func (n *Node) Head(id feed.ID) (feed.Head, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	es := n.feeds[id]
	if len(es) == 0 {
		return feed.Head{}, fmt.Errorf("%w: %s", api.ErrUnknownFeed, id)
	}
	return es[len(es)-1].Next(), nil
}

func (n *Node) Entries(id feed.ID, from uint64, limit int) ([]*feed.Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail != nil {
		return nil, n.fail
	}
	es, ok := n.feeds[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", api.ErrUnknownFeed, id)
	}
	if from == 0 {
		from = 1
	}
	if from > uint64(len(es)) {
		return nil, nil
	}
	es = es[from-1:]
	if len(es) > limit {
		es = es[:limit]
	}
	return append([]*feed.Entry(nil), es...), nil
}

func (n *Node) Watch(id feed.ID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.watchers[id] == nil {
		n.watchers[id] = make(map[chan struct{}]struct{})
	}
	n.watchers[id][ch] = struct{}{}
	n.watches++
	n.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.watchers[id], ch)
			n.watches--
			n.mu.Unlock()
		})
	}
}

// Watches returns the number of Watch registrations not yet stopped.
func (n *Node) Watches() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.watches
}

func (n *Node) Contact(ctx context.Context, target feed.ID, rel feed.Relation) (*feed.Entry, error) {
	e, err := n.Append(n.self, feed.TypeContact, feed.Contact{Target: target, Rel: rel}.Encode())
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if rel == feed.RelNone {
		delete(n.graph, target)
	} else {
		n.graph[target] = rel
	}
	return e, nil
}

// Feeds lists every feed the node holds, its own first (Best = Local).
func (n *Node) Feeds() ([]api.FeedStatus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	self := n.self.Public()
	out := []api.FeedStatus{{ID: self, Local: uint64(len(n.feeds[self])), Best: uint64(len(n.feeds[self]))}}
	ids := make([]feed.ID, 0, len(n.feeds))
	for id := range n.feeds {
		if id != self {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b feed.ID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		l := uint64(len(n.feeds[id]))
		out = append(out, api.FeedStatus{ID: id, Local: l, Best: l})
	}
	return out, nil
}

func (n *Node) Graph() (api.Graph, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var g api.Graph
	for id, rel := range n.graph {
		switch rel {
		case feed.RelFollow:
			g.Follows = append(g.Follows, id)
		case feed.RelBlock:
			g.Blocks = append(g.Blocks, id)
		}
	}
	return g, nil
}

func (n *Node) Progress() api.Progress { return api.Progress{Start: 1, Current: 2, Target: 3} }

func (n *Node) EBTPeers() []api.EBTPeer { return nil }
