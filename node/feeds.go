package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
)

// Publish appends an entry of type typ with body to the node's own feed.
// The types the node writes itself (contact, lease, ctx, ctxmeta) are
// refused.
func (n *Node) Publish(ctx context.Context, typ string, body []byte) (*feed.Entry, error) {
	switch typ {
	case feed.TypeContact, feed.TypeLease, feed.TypeCtx, feed.TypeCtxMeta:
		return nil, fmt.Errorf("%w: %q", ErrReservedType, typ)
	}
	return n.appendOwn(typ, body)
}

// appendOwn signs and stores the next entry of the node's own feed and
// tells replication and subscribers.
func (n *Node) appendOwn(typ string, body []byte) (*feed.Entry, error) {
	return n.appendAs(n.key, typ, body)
}

// appendAs signs with key and stores the next entry of key's feed (the
// node's own, or a context's it created) and tells replication and
// subscribers.
func (n *Node) appendAs(key feed.PrivateKey, typ string, body []byte) (*feed.Entry, error) {
	n.pubMu.Lock()
	defer n.pubMu.Unlock()
	author := key.Public()
	head, err := n.store.Head(author)
	if err != nil {
		return nil, err
	}
	if best, behind := n.repl.OwnFeedBehind(head.Seq); behind && author == n.id {
		return nil, fmt.Errorf("%w: a peer holds this node's own feed up to seq %d but this node only to %d "+
			"(was its store lost?); publishing now would fork the feed, so wait until `contextd sync` says caught up",
			ErrOwnFeedBehind, best, head.Seq)
	}
	e, err := feed.Sign(key, head, typ, body, time.Now())
	if err != nil {
		return nil, err
	}
	if err := n.appendLocal([]*feed.Entry{e}, true); errors.Is(err, store.ErrForked) {
		return nil, fmt.Errorf("%w: feed %s: %w", api.ErrForked, author, err)
	} else if err != nil {
		return nil, fmt.Errorf("node: append to %s: %w", author.Short(), err)
	}
	return e, nil
}

// Contact publishes what the node says of target (follow, block or none),
// updates the replication scope, and drops the link to a blocked peer.
func (n *Node) Contact(ctx context.Context, target feed.ID, rel feed.Relation) (*feed.Entry, error) {
	if target == n.id {
		return nil, ErrSelf
	}
	e, err := n.appendOwn(feed.TypeContact, feed.Contact{Target: target, Rel: rel}.Encode())
	if err != nil {
		return nil, err
	}
	n.repl.ScopeChanged()
	if rel == feed.RelBlock {
		n.mu.Lock()
		l := n.peers[target]
		n.mu.Unlock()
		if l != nil {
			l.Close()
		}
	}
	return e, nil
}

// knows reports whether the node holds or wants id's feed.
func (n *Node) knows(id feed.ID, head feed.Head) (bool, error) {
	if head.Seq > 0 || id == n.id {
		return true, nil
	}
	rel, err := n.store.Relation(n.id, id)
	return rel == feed.RelFollow, err
}

// Head returns how far the node has id's feed. A feed the node neither
// holds nor follows is api.ErrUnknownFeed.
func (n *Node) Head(id feed.ID) (feed.Head, error) {
	h, err := n.store.Head(id)
	if err != nil {
		return h, err
	}
	if ok, err := n.knows(id, h); err != nil {
		return h, err
	} else if !ok {
		return h, fmt.Errorf("%w: %s (follow it to replicate it)", api.ErrUnknownFeed, id)
	}
	return h, nil
}

// Entries returns up to limit entries of id's feed from seq from on. Seqs
// that retention pruned are api.ErrPruned, naming where the feed starts.
func (n *Node) Entries(id feed.ID, from uint64, limit int) ([]*feed.Entry, error) {
	if _, err := n.Head(id); err != nil {
		return nil, err
	}
	es, err := n.store.Range(id, from, limit)
	if errors.Is(err, store.ErrPruned) {
		return nil, fmt.Errorf("%w: %w", api.ErrPruned, err)
	}
	return es, err
}

// Watch returns a channel that receives a signal (coalesced) whenever id's
// head moves, and a function that stops it.
func (n *Node) Watch(id feed.ID) (<-chan struct{}, func()) { return n.feedSig.watch(id) }

// signals are coalescing "something changed" signals keyed by ID. The zero
// value is ready to use.
type signals struct {
	mu       sync.Mutex
	watchers map[feed.ID]map[chan struct{}]struct{} // guarded by mu
}

// watch returns a channel that receives a signal (coalesced) whenever id
// is notified, and a function that stops it.
func (s *signals) watch(id feed.ID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.watchers == nil {
		s.watchers = map[feed.ID]map[chan struct{}]struct{}{}
	}
	if s.watchers[id] == nil {
		s.watchers[id] = map[chan struct{}]struct{}{}
	}
	s.watchers[id][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers[id], ch)
		if len(s.watchers[id]) == 0 {
			delete(s.watchers, id)
		}
	}
}

// notify wakes the watchers of id.
func (s *signals) notify(id feed.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.watchers[id] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Graph returns whom the node follows and blocks.
func (n *Node) Graph() (api.Graph, error) {
	cs, err := n.store.Contacts(n.id)
	if err != nil {
		return api.Graph{}, err
	}
	g := api.Graph{Follows: []feed.ID{}, Blocks: []feed.ID{}}
	for id, rel := range cs {
		switch rel {
		case feed.RelFollow:
			g.Follows = append(g.Follows, id)
		case feed.RelBlock:
			g.Blocks = append(g.Blocks, id)
		}
	}
	slices.SortFunc(g.Follows, feed.ID.Compare)
	slices.SortFunc(g.Blocks, feed.ID.Compare)
	return g, nil
}

// Feeds reports every feed the node holds or follows: how far it has it,
// the most any connected peer has said it has (from the peers' last EBT
// notes), and whether a fork proof froze it.
func (n *Node) Feeds() ([]api.FeedStatus, error) {
	heads, err := n.store.Heads()
	if err != nil {
		return nil, err
	}
	g, err := n.Graph()
	if err != nil {
		return nil, err
	}
	ids := []feed.ID{n.id}
	for id := range heads {
		if id != n.id {
			ids = append(ids, id)
		}
	}
	for _, id := range g.Follows {
		if _, ok := heads[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids[1:], feed.ID.Compare)

	best := map[feed.ID]uint64{}
	for _, p := range n.Peers() {
		clock, err := n.store.PeerClock(p.ID)
		if err != nil {
			return nil, err
		}
		for id, note := range clock {
			if note >= 0 {
				best[id] = max(best[id], uint64(note>>1))
			}
		}
	}
	out := make([]api.FeedStatus, 0, len(ids))
	for _, id := range ids {
		local := heads[id].Seq
		fs := api.FeedStatus{ID: id, Local: local, Best: max(local, best[id])}
		if fs.Bytes, err = n.store.FeedBytes(id); err != nil {
			return nil, err
		}
		if tail, err := n.store.Tail(id); err != nil {
			return nil, err
		} else if tail > 1 {
			fs.From = tail
		}
		if p, err := n.store.ForkProof(id); err == nil {
			fs.Forked, fs.ForkSeq = true, p.Seq()
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		out = append(out, fs)
	}
	return out, nil
}

// Progress reports replication progress in entries.
func (n *Node) Progress() api.Progress {
	p := n.repl.Progress()
	return api.Progress{Start: p.Start, Current: p.Current, Target: p.Target}
}

// EBTPeers reports each replication session.
func (n *Node) EBTPeers() []api.EBTPeer {
	ps := n.repl.Peers()
	out := make([]api.EBTPeer, 0, len(ps))
	for _, p := range ps {
		out = append(out, api.EBTPeer{
			ID: p.ID, State: p.State, Feeds: p.Feeds, Rx: p.Rx, Tx: p.Tx,
			Received: p.Received, Sent: p.Sent, Invalid: p.Invalid, Duplicate: p.Duplicate,
		})
	}
	return out
}
