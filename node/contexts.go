package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
)

// Context limits of the node.
const (
	// ctxKeyDir holds the keys of the contexts this node created, one
	// file per context named by its ID (hex seed, mode 0600).
	ctxKeyDir = "contexts"
	// ctxLinkPeers is how many DHT providers of a context a join links.
	ctxLinkPeers = 4
	// ctxAskTimeout bounds one members exchange with a peer.
	ctxAskTimeout = 10 * time.Second
	// Members exchanges with every linked peer (exchangeMembers): this
	// long after something new was learned, and otherwise at an interval
	// doubling from membersEvery to membersEveryMax.
	membersSoon     = 200 * time.Millisecond
	membersEvery    = 2 * time.Second
	membersEveryMax = time.Minute
	// metaScan bounds the entries of a context's own feed read to find its
	// latest ctxmeta entry.
	metaScan = 1000
)

// ctxNode adapts the node to contexts.Node.
type ctxNode struct{ n *Node }

func (c ctxNode) Head(a feed.ID) (feed.Head, error)            { return c.n.store.Head(a) }
func (c ctxNode) Relation(a, t feed.ID) (feed.Relation, error) { return c.n.store.Relation(a, t) }
func (c ctxNode) Want(feeds []feed.ID)                         { c.n.repl.Want(feeds) }
func (c ctxNode) Append(e *feed.Entry) error                   { return c.n.appendLocal([]*feed.Entry{e}, false) }

func (c ctxNode) Members(id feed.ID) ([]contexts.Member, error) {
	ms, err := c.n.store.CtxMembers(id)
	if err != nil {
		return nil, err
	}
	out := make([]contexts.Member, len(ms))
	for i, m := range ms {
		out[i] = contexts.Member{Author: m.Author, Seq: m.Seq}
	}
	return out, nil
}

// ctxStore is the store replication appends through: after an append it
// wakes the readers of the contexts the entries belong to.
type ctxStore struct {
	*store.Badger
	n *Node
}

func (s ctxStore) Append(es []*feed.Entry) error { return s.AppendIDs(es, nil) }

func (s ctxStore) AppendIDs(es []*feed.Entry, ids []feed.Hash) error {
	if err := s.Badger.AppendIDs(es, ids); err != nil {
		return err
	}
	if len(es) > 0 {
		s.n.appended(es[0].Author, es)
	}
	return nil
}

// appendLocal stores entries of one author that did not come by
// replication (the node's own, gossiped ones) and tells replication and
// the readers. With durable set (the node's own entries) the store is
// synced first: nothing leaves the node that a power loss could take back.
func (n *Node) appendLocal(es []*feed.Entry, durable bool) error {
	if err := n.store.Append(es); err != nil {
		return err
	}
	if durable {
		if err := n.store.Sync(); err != nil {
			return err
		}
	}
	n.repl.Appended(es[0].Author)
	n.appended(es[0].Author, es)
	return nil
}

// appended wakes the watchers of author's feed and of the contexts of the
// ctx entries among es, and lets the contexts drain held entries.
func (n *Node) appended(author feed.ID, es []*feed.Entry) {
	n.feedSig.notify(author)
	for _, e := range es {
		if e.Type != feed.TypeCtx {
			continue
		}
		if c, err := feed.DecodeCtx(e.Body); err == nil {
			n.ctxSig.notify(c.Context)
			if author != n.id {
				n.metrics.contexts.Delivered(e, time.Now())
			}
		}
	}
	if n.ctxs != nil {
		n.ctxs.Appended(author)
		if decidesFanout(es) && n.ctxs.Joined(author) {
			n.wg.Go(func() { n.refreshFanout(author) })
		}
	}
}

// decidesFanout reports whether es, entries of one feed, may change the
// fanout of the context that feed's key names: a context's meta, or the
// feed's first entry (which tells a context from a person).
func decidesFanout(es []*feed.Entry) bool {
	if len(es) > 0 && es[0].Seq == 1 {
		return true
	}
	for _, e := range es {
		if e.Type == feed.TypeCtxMeta {
			return true
		}
	}
	return false
}

// refreshFanout moves joined context id to the gossip mesh its feed now
// calls for.
func (n *Node) refreshFanout(id feed.ID) {
	if err := n.ctxs.Move(id, n.contextFanout(id)); err != nil && !errors.Is(err, contexts.ErrClosed) {
		n.log.Warn("move context to its mesh", "context", id, "err", err)
	}
}

// contextFanout returns the gossip fanout of context id as far as the node
// knows it: Wide for a context created wide (its meta says so) and for a
// person's key (a feed whose first entry is not a ctxmeta: the room of
// their followers); Lean for a room, and for a context whose feed the node
// does not hold yet (refreshFanout moves it when the feed arrives).
func (n *Node) contextFanout(id feed.ID) contexts.Fanout {
	meta, ok, err := n.contextMeta(id)
	switch {
	case err != nil:
		n.log.Warn("read context meta", "context", id, "err", err)
		return contexts.Lean
	case ok && meta.Wide:
		return contexts.Wide
	case ok:
		return contexts.Lean
	}
	first, err := n.store.Get(id, 1)
	if err != nil || first.Type == feed.TypeCtxMeta {
		return contexts.Lean
	}
	return contexts.Wide
}

// ctxKeyPath is where the key of context id is kept, if this node made it.
func (n *Node) ctxKeyPath(id feed.ID) string {
	return filepath.Join(n.cfg.Home, ctxKeyDir, id.String())
}

// ctxKey returns the key of context id; api.ErrNotAllowed if this node
// does not hold it.
func (n *Node) ctxKey(id feed.ID) (feed.PrivateKey, error) {
	k, err := readKeyFile(n.ctxKeyPath(id))
	if errors.Is(err, os.ErrNotExist) {
		return k, fmt.Errorf("%w: this node does not hold the key of context %s (only its creator can)", api.ErrNotAllowed, id)
	}
	return k, err
}

// CreateContext makes a new context key, keeps it, writes the context's
// meta to its feed and joins it.
func (n *Node) CreateContext(ctx context.Context, p api.ContextCreateParams) (api.Context, error) {
	meta, err := feed.CtxMeta{Name: p.Name, Description: p.Description, Wide: p.Wide}.Encode()
	if err != nil {
		return api.Context{}, fmt.Errorf("%w: %w", api.ErrInvalidParams, err)
	}
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		return api.Context{}, err
	}
	id := key.Public()
	if err := os.MkdirAll(filepath.Join(n.cfg.Home, ctxKeyDir), 0o700); err != nil {
		return api.Context{}, fmt.Errorf("node: create context key directory: %w", err)
	}
	if err := writeFileExcl(n.ctxKeyPath(id), []byte(hex.EncodeToString(key.Seed())+"\n")); err != nil {
		return api.Context{}, err
	}
	if _, err := n.appendAs(key, feed.TypeCtxMeta, meta); err != nil {
		return api.Context{}, err
	}
	return n.JoinContext(ctx, id)
}

// JoinContext joins context id: its gossip, its history (the authors
// linked peers and DHT providers know are replicated) and its members.
func (n *Node) JoinContext(ctx context.Context, id feed.ID) (api.Context, error) {
	if id.IsZero() {
		return api.Context{}, fmt.Errorf("%w: zero context ID", api.ErrInvalidParams)
	}
	if err := n.store.SetJoined(id, true); err != nil {
		return api.Context{}, err
	}
	if err := n.ctxs.Join(id, n.contextFanout(id)); err != nil {
		return api.Context{}, err
	}
	n.wg.Go(func() { n.discover(n.ctx, id) })
	return n.contextInfo(id)
}

// discover finds members of context id through the DHT, if the node has
// one: it announces this node as a member and links a few others. (Linked
// peers learn of the join through the members exchange.)
func (n *Node) discover(ctx context.Context, id feed.ID) {
	if len(n.cfg.Bootstrap) == 0 {
		return
	}
	c := contextCID(id)
	n.provide(ctx, c)
	ais, err := n.dht.FindProviders(ctx, c, 2*ctxLinkPeers)
	if err != nil {
		n.log.Debug("find context members", "context", id, "err", err)
		return
	}
	linked := 0
	for _, ai := range ais {
		if linked == ctxLinkPeers || ai.ID == n.host.ID() {
			continue
		}
		if _, err := n.link(ctx, ai); err != nil {
			n.log.Debug("link context member", "context", id, "peer", ai.ID, "err", err)
			continue
		}
		linked++
	}
}

// contextCID is the DHT key members of context id provide.
func contextCID(id feed.ID) cid.Cid {
	h := sha256.Sum256(append([]byte("contextd context "), id[:]...))
	mh, _ := multihash.Encode(h[:], multihash.SHA2_256)
	return cid.NewCidV1(cid.Raw, mh)
}

// askMembers runs the members exchange with the peer of l, if the node
// has joined any context.
func (n *Node) askMembers(ctx context.Context, l *flitlink.Link) {
	if len(n.ctxs.Rooms()) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ctxAskTimeout)
	defer cancel()
	c, err := l.Open(ctx, contexts.Service, flitlink.Control)
	if err != nil {
		n.log.Debug("open ctx circuit", "peer", l.Remote(), "err", err)
		return
	}
	defer c.Close()
	if err := n.ctxs.AskMembers(ctx, c); err != nil {
		n.log.Debug("members exchange", "peer", l.Remote(), "err", err)
	}
}

// exchangeMembers runs a members exchange with every linked peer shortly
// after the node joins a context or learns an author of one (so that its
// peers learn it too), and otherwise at an interval that doubles from
// membersEvery to membersEveryMax while nothing new is learned: gossip
// that was lost before a mesh formed cannot leave an author unknown.
func (n *Node) exchangeMembers(ctx context.Context) {
	every := membersEvery
	t := time.NewTimer(every)
	defer t.Stop()
	soon := false // t was reset to membersSoon and has not fired yet
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.ctxs.Learned():
			every = membersEvery
			if !soon {
				soon = true
				t.Reset(membersSoon)
			}
			continue
		case <-t.C:
		}
		soon = false
		n.mu.Lock()
		for _, l := range n.peers {
			n.wg.Go(func() { n.askMembers(ctx, l) })
		}
		n.mu.Unlock()
		every = min(2*every, membersEveryMax)
		t.Reset(every)
	}
}

func (n *Node) serveMembers(ctx context.Context, c *flitlink.Circuit, p feed.ID) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, ctxAskTimeout)
	defer cancel()
	if err := n.ctxs.ServeMembers(ctx, c); err != nil {
		n.log.Debug("serve members", "peer", p, "err", err)
	}
}

// LeaveContext leaves context id; its history stays stored.
func (n *Node) LeaveContext(id feed.ID) error {
	if err := n.store.SetJoined(id, false); err != nil {
		return err
	}
	n.ctxs.Leave(id)
	return nil
}

// Contexts lists the joined contexts.
func (n *Node) Contexts() ([]api.Context, error) {
	ids, err := n.store.Joined()
	if err != nil {
		return nil, err
	}
	out := make([]api.Context, 0, len(ids))
	for _, id := range ids {
		c, err := n.contextInfo(id)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ContextStats reports the gossip counters of all contexts.
func (n *Node) ContextStats() api.ContextStats {
	s := n.ctxs.Stats()
	return api.ContextStats{Received: s.Received, Duplicates: s.Duplicates, Rejected: s.Rejected, Held: s.Held, Filled: s.Filled}
}

// contextInfo describes context id as the node knows it.
func (n *Node) contextInfo(id feed.ID) (api.Context, error) {
	c := api.Context{ID: id, Joined: n.ctxs.Joined(id)}
	var err error
	if c.Messages, err = n.store.CtxCursor(id); err != nil {
		return c, err
	}
	if _, err := os.Stat(n.ctxKeyPath(id)); err == nil {
		c.Owner = true
	}
	meta, _, err := n.contextMeta(id)
	if err != nil {
		return c, err
	}
	c.Name, c.Description, c.Wide = meta.Name, meta.Description, meta.Wide
	if f, joined := n.ctxs.Fanout(id); joined {
		c.Wide = f == contexts.Wide // a person's key has no meta, yet gossips wide
	}
	return c, nil
}

// contextMeta returns the latest ctxmeta of context id's own feed among
// its last metaScan entries, else its first entry's (a context's feed
// starts with one); ok is false if the node holds neither.
func (n *Node) contextMeta(id feed.ID) (meta feed.CtxMeta, ok bool, err error) {
	head, err := n.store.Head(id)
	if err != nil {
		return meta, false, err
	}
	for seq := head.Seq; seq > 0 && head.Seq-seq < metaScan; {
		from := uint64(1)
		if seq > 100 {
			from = seq - 99
		}
		es, err := n.store.Range(id, from, int(seq-from+1))
		if err != nil {
			return meta, false, err
		}
		for i := len(es) - 1; i >= 0; i-- {
			if es[i].Type != feed.TypeCtxMeta {
				continue
			}
			if m, err := feed.DecodeCtxMeta(es[i].Body); err == nil {
				return m, true, nil
			}
		}
		seq = from - 1
	}
	if head.Seq < metaScan {
		return meta, false, nil // scanned it all
	}
	first, err := n.store.Get(id, 1)
	if err != nil {
		return meta, false, err
	}
	if first.Type != feed.TypeCtxMeta {
		return meta, false, nil
	}
	m, err := feed.DecodeCtxMeta(first.Body)
	return m, err == nil, nil
}

// ContextMembers lists the authors the node holds messages of in id.
func (n *Node) ContextMembers(id feed.ID) ([]api.Member, error) {
	ms, err := n.store.CtxMembers(id)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	linked := map[feed.ID]bool{}
	for p, l := range n.peers {
		linked[p] = !isDone(l)
	}
	n.mu.Unlock()
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		rel, err := n.store.Relation(id, m.Author)
		if err != nil {
			return nil, err
		}
		out = append(out, api.Member{ID: m.Author, Messages: m.Messages, Seq: m.Seq, Banned: rel == feed.RelBlock, Linked: linked[m.Author]})
	}
	return out, nil
}

// joined returns api.ErrNotJoined unless the node takes part in id.
func (n *Node) joined(id feed.ID) error {
	if !n.ctxs.Joined(id) {
		return fmt.Errorf("%w: %s (join it first)", api.ErrNotJoined, id)
	}
	return nil
}

// PublishContext appends a message to the node's own feed (the durable
// copy) and gossips it (the fast copy).
func (n *Node) PublishContext(ctx context.Context, id feed.ID, body []byte) (api.Message, error) {
	if err := n.joined(id); err != nil {
		return api.Message{}, err
	}
	enc, err := feed.Ctx{Context: id, Body: body}.Encode()
	if err != nil {
		return api.Message{}, err
	}
	// The message's cursor is after every cursor taken before the append.
	before, err := n.store.CtxCursor(id)
	if err != nil {
		return api.Message{}, err
	}
	e, err := n.appendOwn(feed.TypeCtx, enc)
	if err != nil {
		return api.Message{}, err
	}
	if err := n.ctxs.Publish(ctx, id, e); err != nil {
		// The message is stored: replication carries it.
		n.log.Info("gossip context message", "context", id, "err", err)
	}
	for from := before + 1; ; {
		refs, err := n.store.CtxRefs(id, from, 256, false)
		if err != nil {
			return api.Message{}, err
		}
		for _, r := range refs {
			if r.Author == n.id && r.Seq == e.Seq {
				return toMessage(id, r.Cursor, e), nil
			}
		}
		if len(refs) == 0 {
			return api.Message{}, fmt.Errorf("node: message %d of %s is not in the index of %s", e.Seq, n.id.Short(), id.Short())
		}
		from = refs[len(refs)-1].Cursor + 1
	}
}

// SendContext gossips a datagram to id's members.
func (n *Node) SendContext(ctx context.Context, id feed.ID, body []byte) error {
	if err := n.joined(id); err != nil {
		return err
	}
	err := n.ctxs.Send(ctx, id, body)
	if errors.Is(err, contexts.ErrNotJoined) { // left meanwhile
		return fmt.Errorf("%w: %w", api.ErrNotJoined, err)
	}
	return err
}

func toMessage(id feed.ID, cursor uint64, e *feed.Entry) api.Message {
	m := api.Message{Context: id, Cursor: cursor, Author: e.Author, Seq: e.Seq, ID: e.ID(), Timestamp: e.Timestamp, Body: []byte{}}
	if c, err := feed.DecodeCtx(e.Body); err == nil && len(c.Body) > 0 {
		m.Body = c.Body
	}
	if utf8.Valid(m.Body) {
		m.Text = string(m.Body)
	}
	return m
}

// visibleFunc returns a filter of context id's authors: false for those
// the node blocks or the context bans. It caches per author.
func (n *Node) visibleFunc(id feed.ID) func(author feed.ID) (bool, error) {
	seen := map[feed.ID]bool{}
	return func(author feed.ID) (bool, error) {
		if ok, done := seen[author]; done {
			return ok, nil
		}
		ok := true
		for _, by := range []feed.ID{n.id, id} {
			rel, err := n.store.Relation(by, author)
			if err != nil {
				return false, err
			}
			ok = ok && rel != feed.RelBlock
		}
		seen[author] = ok
		return ok, nil
	}
}

// message reads the message r points at; ok is false for one no longer
// held (retention pruned it, or its author's feed was forgotten, after the
// index was read).
func (n *Node) message(id feed.ID, r store.CtxRef) (m api.Message, ok bool, err error) {
	e, err := n.store.Get(r.Author, r.Seq)
	if errors.Is(err, store.ErrPruned) || errors.Is(err, store.ErrNotFound) {
		return api.Message{}, false, nil
	}
	if err != nil {
		return api.Message{}, false, fmt.Errorf("node: message %d of %s: %w", r.Cursor, id.Short(), err)
	}
	return toMessage(id, r.Cursor, e), true, nil
}

// ContextMessages returns id's messages after cursor after, looking at up
// to limit cursors.
func (n *Node) ContextMessages(id feed.ID, after uint64, limit int) ([]api.Message, uint64, error) {
	refs, err := n.store.CtxRefs(id, after+1, limit, false)
	if err != nil || len(refs) == 0 {
		return nil, after, err
	}
	visible := n.visibleFunc(id)
	out := make([]api.Message, 0, len(refs))
	for _, r := range refs {
		if ok, err := visible(r.Author); err != nil {
			return nil, after, err
		} else if !ok {
			continue
		}
		m, ok, err := n.message(id, r)
		if err != nil {
			return nil, after, err
		}
		if ok {
			out = append(out, m)
		}
	}
	return out, refs[len(refs)-1].Cursor, nil
}

// ContextHistory returns one page of id's messages: p.Limit visible ones
// (messages of blocked or banned authors are skipped, not counted), and
// whether more visible ones lie beyond it.
func (n *Node) ContextHistory(id feed.ID, p api.HistoryParams) (api.HistoryResult, error) {
	desc := p.Order == api.OrderNewest
	from := p.After + 1
	if desc {
		if p.Before == 1 {
			return api.HistoryResult{Messages: []api.Message{}}, nil
		}
		from = 0 // the newest
		if p.Before > 1 {
			from = p.Before - 1
		}
	}
	visible := n.visibleFunc(id)
	res := api.HistoryResult{Messages: make([]api.Message, 0, p.Limit)}
	for {
		refs, err := n.store.CtxRefs(id, from, p.Limit+1, desc)
		if err != nil {
			return api.HistoryResult{}, err
		}
		for _, r := range refs {
			ok, err := visible(r.Author)
			if err != nil {
				return api.HistoryResult{}, err
			}
			if !ok {
				continue
			}
			if len(res.Messages) == p.Limit {
				res.More = true
				return res, nil
			}
			m, ok, err := n.message(id, r)
			if err != nil {
				return api.HistoryResult{}, err
			}
			if ok {
				res.Messages = append(res.Messages, m)
			}
		}
		if len(refs) < p.Limit+1 {
			return res, nil // the end of the index
		}
		last := refs[len(refs)-1].Cursor
		if desc {
			if last == 1 {
				return res, nil
			}
			from = last - 1
		} else {
			from = last + 1
		}
	}
}

// WatchContext signals when messages were added to id.
func (n *Node) WatchContext(id feed.ID) (<-chan struct{}, func()) { return n.ctxSig.watch(id) }

// ContextDatagrams delivers id's datagrams until stop.
func (n *Node) ContextDatagrams(id feed.ID) (<-chan api.Datagram, func()) {
	in, stopIn := n.ctxs.Datagrams(id)
	out := make(chan api.Datagram, cap(in))
	done := make(chan struct{})
	n.wg.Go(func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case <-n.ctx.Done():
				return
			case d := <-in:
				ad := api.Datagram{Context: d.Context, Author: d.Author, Timestamp: d.Timestamp, Body: d.Body}
				if utf8.Valid(d.Body) {
					ad.Text = string(d.Body)
				}
				select {
				case out <- ad:
				default: // a slow reader loses datagrams
				}
			}
		}
	})
	var once sync.Once
	return out, func() {
		once.Do(func() {
			stopIn()
			close(done)
		})
	}
}

// BanContext bans (or unbans) author in id with a contact entry of the
// context's key: a block by the context is a ban.
func (n *Node) BanContext(ctx context.Context, id, author feed.ID, ban bool) (feed.Head, error) {
	key, err := n.ctxKey(id)
	if err != nil {
		return feed.Head{}, err
	}
	rel := feed.RelNone
	if ban {
		rel = feed.RelBlock
	}
	e, err := n.appendAs(key, feed.TypeContact, feed.Contact{Target: author, Rel: rel}.Encode())
	if err != nil {
		return feed.Head{}, err
	}
	n.ctxSig.notify(id)
	return e.Next(), nil
}

// askNewPeer runs the members exchange with a newly linked peer.
func (n *Node) askNewPeer(l *flitlink.Link) {
	n.wg.Go(func() { n.askMembers(n.ctx, l) })
}
