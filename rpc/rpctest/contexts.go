package rpctest

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// DatagramBuffer is the capacity of a ContextDatagrams channel; datagrams
// beyond it are dropped.
const DatagramBuffer = 16

// contexts is the fake's context state: each context's messages in cursor
// order, its watchers, datagram readers and bans. Lock order: contexts.mu
// before Node.mu (a publish appends to the feed and stores the message
// under contexts.mu, so cursors follow seqs).
type contexts struct {
	mu       sync.Mutex // guards the fields below
	ctxs     map[feed.ID]*fakeContext
	watchers map[feed.ID]map[chan struct{}]struct{}
	dgs      map[feed.ID]map[chan api.Datagram]struct{}
	watches  int   // live WatchContext registrations
	fail     error // returned by ContextMessages when set
}

type fakeContext struct {
	info api.Context
	key  feed.PrivateKey // zero unless the node created it
	msgs []api.Message   // msgs[i].Cursor == i+1
	bans map[feed.ID]bool
}

// initLocked makes the maps.
func (c *contexts) initLocked() {
	if c.ctxs == nil {
		c.ctxs = make(map[feed.ID]*fakeContext)
		c.watchers = make(map[feed.ID]map[chan struct{}]struct{})
		c.dgs = make(map[feed.ID]map[chan api.Datagram]struct{})
	}
}

// contextLocked returns context id, creating it (not joined) if need be.
func (c *contexts) contextLocked(id feed.ID) *fakeContext {
	c.initLocked()
	fc := c.ctxs[id]
	if fc == nil {
		fc = &fakeContext{info: api.Context{ID: id}, bans: make(map[feed.ID]bool)}
		c.ctxs[id] = fc
	}
	return fc
}

// joinedLocked returns context id if the node joined it.
func (c *contexts) joinedLocked(id feed.ID) (*fakeContext, error) {
	fc := c.ctxs[id]
	if fc == nil || !fc.info.Joined {
		return nil, fmt.Errorf("context %s: %w", id.Short(), api.ErrNotJoined)
	}
	return fc, nil
}

// messages returns the messages held (none for a nil context).
func (fc *fakeContext) messages() []api.Message {
	if fc == nil {
		return nil
	}
	return fc.msgs
}

func (fc *fakeContext) describe() api.Context {
	info := fc.info
	info.Messages = uint64(len(fc.msgs))
	return info
}

// SetContextMessagesError makes ContextMessages fail with err (nil:
// succeed again).
func (n *Node) SetContextMessagesError(err error) {
	n.ctxs.mu.Lock()
	n.ctxs.fail = err
	n.ctxs.mu.Unlock()
}

// ContextWatches returns the number of WatchContext registrations not yet
// stopped.
func (n *Node) ContextWatches() int {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	return n.ctxs.watches
}

// AddContextMessage appends a ctx entry with body for context id to key's
// feed and stores it as the context's next message, as if it came from a
// member; the node need not have joined id.
func (n *Node) AddContextMessage(id feed.ID, key feed.PrivateKey, body []byte) (api.Message, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	return n.addMessageLocked(n.ctxs.contextLocked(id), key, body)
}

func (n *Node) addMessageLocked(fc *fakeContext, key feed.PrivateKey, body []byte) (api.Message, error) {
	enc, err := feed.Ctx{Context: fc.info.ID, Body: body}.Encode()
	if err != nil {
		return api.Message{}, err
	}
	e, err := n.Append(key, feed.TypeCtx, enc)
	if err != nil {
		return api.Message{}, err
	}
	m := api.Message{
		Context:   fc.info.ID,
		Cursor:    uint64(len(fc.msgs)) + 1,
		Author:    e.Author,
		Seq:       e.Seq,
		ID:        e.ID(),
		Timestamp: e.Timestamp,
		Body:      append([]byte{}, body...),
	}
	if utf8.Valid(body) {
		m.Text = string(body)
	}
	fc.msgs = append(fc.msgs, m)
	for ch := range n.ctxs.watchers[fc.info.ID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	return m, nil
}

// CreateContext makes a context with a random key, owned and joined.
func (n *Node) CreateContext(ctx context.Context, p api.ContextCreateParams) (api.Context, error) {
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		return api.Context{}, err
	}
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc := n.ctxs.contextLocked(key.Public())
	fc.key = key
	fc.info.Name, fc.info.Description, fc.info.Wide = p.Name, p.Description, p.Wide
	fc.info.Owner, fc.info.Joined = true, true
	return fc.describe(), nil
}

// JoinContext marks id joined.
func (n *Node) JoinContext(ctx context.Context, id feed.ID) (api.Context, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc := n.ctxs.contextLocked(id)
	fc.info.Joined = true
	return fc.describe(), nil
}

// LeaveContext marks id not joined; its messages stay.
func (n *Node) LeaveContext(id feed.ID) error {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc, err := n.ctxs.joinedLocked(id)
	if err != nil {
		return err
	}
	fc.info.Joined = false
	return nil
}

// Contexts lists the joined contexts by ID.
func (n *Node) Contexts() ([]api.Context, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	var out []api.Context
	for _, fc := range n.ctxs.ctxs {
		if fc.info.Joined {
			out = append(out, fc.describe())
		}
	}
	slices.SortFunc(out, func(a, b api.Context) int { return a.ID.Compare(b.ID) })
	return out, nil
}

// ContextStats counts no gossip: the fake has none.
func (n *Node) ContextStats() api.ContextStats { return api.ContextStats{} }

// ContextMembers lists the authors of id's messages, and banned ones.
func (n *Node) ContextMembers(id feed.ID) ([]api.Member, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc, err := n.ctxs.joinedLocked(id)
	if err != nil {
		return nil, err
	}
	byID := make(map[feed.ID]*api.Member)
	member := func(a feed.ID) *api.Member {
		if byID[a] == nil {
			byID[a] = &api.Member{ID: a, Banned: fc.bans[a]}
		}
		return byID[a]
	}
	for _, m := range fc.msgs {
		mb := member(m.Author)
		mb.Messages++
		mb.Seq = max(mb.Seq, m.Seq)
	}
	for a := range fc.bans {
		member(a)
	}
	out := make([]api.Member, 0, len(byID))
	for _, mb := range byID {
		out = append(out, *mb)
	}
	slices.SortFunc(out, func(a, b api.Member) int { return a.ID.Compare(b.ID) })
	return out, nil
}

// PublishContext appends a ctx entry to the node's own feed and stores it.
func (n *Node) PublishContext(ctx context.Context, id feed.ID, body []byte) (api.Message, error) {
	if len(body) > api.MaxMessageBody {
		return api.Message{}, fmt.Errorf("publish to context: %w", feed.ErrTooLarge)
	}
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc, err := n.ctxs.joinedLocked(id)
	if err != nil {
		return api.Message{}, err
	}
	return n.addMessageLocked(fc, n.self, body)
}

// SendContext hands a datagram of the node's own to every ContextDatagrams
// reader of id, dropping it for readers whose buffer is full.
func (n *Node) SendContext(ctx context.Context, id feed.ID, body []byte) error {
	if len(body) > api.MaxMessageBody {
		return fmt.Errorf("send to context: %w", feed.ErrTooLarge)
	}
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	if _, err := n.ctxs.joinedLocked(id); err != nil {
		return err
	}
	dg := api.Datagram{Context: id, Author: n.self.Public(), Timestamp: 1700000000000, Body: append([]byte{}, body...)}
	if utf8.Valid(body) {
		dg.Text = string(body)
	}
	for ch := range n.ctxs.dgs[id] {
		select {
		case ch <- dg:
		default:
		}
	}
	return nil
}

// ContextMessages returns the messages with cursor in (after, after+limit],
// leaving out banned authors; none of a context the node holds nothing of.
func (n *Node) ContextMessages(id feed.ID, after uint64, limit int) ([]api.Message, uint64, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	if n.ctxs.fail != nil {
		return nil, after, n.ctxs.fail
	}
	fc := n.ctxs.ctxs[id] // nil: nothing held, nothing to return
	if fc == nil {
		return nil, after, nil
	}
	held := uint64(len(fc.msgs))
	if after >= held {
		return nil, after, nil
	}
	upTo := min(held, after+uint64(limit))
	var out []api.Message
	for _, m := range fc.msgs[after:upTo] {
		if !fc.bans[m.Author] {
			out = append(out, m)
		}
	}
	return out, upTo, nil
}

// ContextHistory returns a page of id's messages per p, leaving out banned
// authors; none of a context the node holds nothing of.
func (n *Node) ContextHistory(id feed.ID, p api.HistoryParams) (api.HistoryResult, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc := n.ctxs.ctxs[id]
	var visible []api.Message
	for _, m := range fc.messages() {
		if !fc.bans[m.Author] {
			visible = append(visible, m)
		}
	}
	var page []api.Message
	if p.Order == api.OrderNewest {
		for _, m := range slices.Backward(visible) {
			if p.Before == 0 || m.Cursor < p.Before {
				page = append(page, m)
			}
		}
	} else {
		for _, m := range visible {
			if m.Cursor > p.After {
				page = append(page, m)
			}
		}
	}
	res := api.HistoryResult{Messages: page, More: len(page) > p.Limit}
	if res.More {
		res.Messages = page[:p.Limit]
	}
	return res, nil
}

// WatchContext signals (coalescing) whenever a message is stored in id.
func (n *Node) WatchContext(id feed.ID) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.ctxs.mu.Lock()
	n.ctxs.initLocked()
	if n.ctxs.watchers[id] == nil {
		n.ctxs.watchers[id] = make(map[chan struct{}]struct{})
	}
	n.ctxs.watchers[id][ch] = struct{}{}
	n.ctxs.watches++
	n.ctxs.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.ctxs.mu.Lock()
			delete(n.ctxs.watchers[id], ch)
			n.ctxs.watches--
			n.ctxs.mu.Unlock()
		})
	}
}

// ContextDatagrams delivers the datagrams SendContext sends to id from now
// on, DatagramBuffer at most in the channel.
func (n *Node) ContextDatagrams(id feed.ID) (<-chan api.Datagram, func()) {
	ch := make(chan api.Datagram, DatagramBuffer)
	n.ctxs.mu.Lock()
	n.ctxs.initLocked()
	if n.ctxs.dgs[id] == nil {
		n.ctxs.dgs[id] = make(map[chan api.Datagram]struct{})
	}
	n.ctxs.dgs[id][ch] = struct{}{}
	n.ctxs.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.ctxs.mu.Lock()
			delete(n.ctxs.dgs[id], ch)
			n.ctxs.mu.Unlock()
		})
	}
}

// BanContext writes a ban (or lifts it) as a contact entry of the
// context's key; only a context the node created can ban.
func (n *Node) BanContext(ctx context.Context, id, author feed.ID, ban bool) (feed.Head, error) {
	n.ctxs.mu.Lock()
	defer n.ctxs.mu.Unlock()
	fc, err := n.ctxs.joinedLocked(id)
	if err != nil {
		return feed.Head{}, err
	}
	if fc.key.IsZero() {
		return feed.Head{}, fmt.Errorf("ban in context %s: not its owner: %w", id.Short(), api.ErrNotAllowed)
	}
	rel := feed.RelNone
	if ban {
		rel = feed.RelBlock
	}
	e, err := n.Append(fc.key, feed.TypeContact, feed.Contact{Target: author, Rel: rel}.Encode())
	if err != nil {
		return feed.Head{}, err
	}
	if ban {
		fc.bans[author] = true
	} else {
		delete(fc.bans, author)
	}
	return e.Next(), nil
}
