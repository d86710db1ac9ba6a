package sdk

import (
	"context"
	"encoding/json"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// CreateContext makes a new room with a name and description; the node
// keeps its key and joins it (context.create).
func (c *Client) CreateContext(ctx context.Context, name, description string) (api.Context, error) {
	return c.CreateContextWith(ctx, api.ContextCreateParams{Name: name, Description: description})
}

// CreateContextWith is CreateContext with every parameter of
// context.create, such as Wide.
func (c *Client) CreateContextWith(ctx context.Context, p api.ContextCreateParams) (api.Context, error) {
	var r api.Context
	err := c.Call(ctx, api.MethodContextCreate, p, &r)
	return r, err
}

// JoinContext joins context id (context.join); joining twice is not an
// error.
func (c *Client) JoinContext(ctx context.Context, id feed.ID) (api.Context, error) {
	var r api.Context
	err := c.Call(ctx, api.MethodContextJoin, api.ContextParams{ID: id}, &r)
	return r, err
}

// LeaveContext stops taking part in context id; its history stays stored
// (context.leave).
func (c *Client) LeaveContext(ctx context.Context, id feed.ID) error {
	return c.Call(ctx, api.MethodContextLeave, api.ContextParams{ID: id}, nil)
}

// Contexts lists the joined contexts by ID (context.list).
func (c *Client) Contexts(ctx context.Context) ([]api.Context, error) {
	var r api.ContextsResult
	err := c.Call(ctx, api.MethodContextList, nil, &r)
	return r.Contexts, err
}

// ContextMembers lists the authors the node knows in context id, by ID
// (context.members).
func (c *Client) ContextMembers(ctx context.Context, id feed.ID) ([]api.Member, error) {
	var r api.MembersResult
	err := c.Call(ctx, api.MethodContextMembers, api.ContextParams{ID: id}, &r)
	return r.Members, err
}

// PublishContext publishes a message with body (at most
// api.MaxMessageBody bytes) to context id and returns it as stored
// (context.publish).
func (c *Client) PublishContext(ctx context.Context, id feed.ID, body []byte) (api.Message, error) {
	return c.publishContext(ctx, api.ContextPublishParams{ID: id, Body: body})
}

// PublishContextText is PublishContext with a text body.
func (c *Client) PublishContextText(ctx context.Context, id feed.ID, text string) (api.Message, error) {
	return c.publishContext(ctx, api.ContextPublishParams{ID: id, Text: text})
}

func (c *Client) publishContext(ctx context.Context, p api.ContextPublishParams) (api.Message, error) {
	var r api.Message
	err := c.Call(ctx, api.MethodContextPublish, p, &r)
	return r, err
}

// SendContext sends an ephemeral datagram with body to the current
// members of context id: never stored, never replayed (context.send).
func (c *Client) SendContext(ctx context.Context, id feed.ID, body []byte) error {
	return c.Call(ctx, api.MethodContextSend, api.ContextPublishParams{ID: id, Body: body}, nil)
}

// ContextHistory returns one page of a context's messages (context.history):
// see api.HistoryParams.
func (c *Client) ContextHistory(ctx context.Context, p api.HistoryParams) (api.HistoryResult, error) {
	var r api.HistoryResult
	err := c.Call(ctx, api.MethodContextHistory, p, &r)
	return r, err
}

// BanContext bans author from context id, which the node must have
// created; it returns the head of the context's own feed (context.ban).
func (c *Client) BanContext(ctx context.Context, id, author feed.ID) (api.Head, error) {
	var r api.Head
	err := c.Call(ctx, api.MethodContextBan, api.BanParams{ID: id, Author: author}, &r)
	return r, err
}

// UnbanContext lifts a ban of BanContext (context.unban).
func (c *Client) UnbanContext(ctx context.Context, id, author feed.ID) (api.Head, error) {
	var r api.Head
	err := c.Call(ctx, api.MethodContextUnban, api.BanParams{ID: id, Author: author}, &r)
	return r, err
}

// ContextOptions say where a ContextSubscription starts and what it takes.
type ContextOptions struct {
	// Since: deliver the messages with cursor > Since (0: from the
	// first, or see Last).
	Since uint64
	// Last, with Since 0, starts with the last Last messages the node
	// holds instead of the whole history.
	Last uint64
	// Datagrams asks for the context's live datagrams too, on Datagrams().
	Datagrams bool
}

// ContextSubscription delivers the messages of one context in cursor
// order, each exactly once, across reconnections: it keeps the cursor of
// the last message it queued and resubscribes from there whenever it has
// to. Next must be called by one goroutine at a time.
type ContextSubscription struct {
	st  *stream[api.Message]
	id  feed.ID
	dgs chan api.Datagram
}

// SubscribeContext delivers the messages of context id per opt: first
// those the node holds, then new ones as they arrive.
func (c *Client) SubscribeContext(ctx context.Context, id feed.ID, opt ContextOptions) (*ContextSubscription, error) {
	k := &contextKind{id: id, last: opt.Last, datagrams: opt.Datagrams, dgs: make(chan api.Datagram, c.cfg.SubBuffer)}
	st, err := startStream(ctx, c, kind[api.Message](k), opt.Since)
	if err != nil {
		return nil, err
	}
	return &ContextSubscription{st: st, id: id, dgs: k.dgs}, nil
}

// Context returns the subscribed context.
func (s *ContextSubscription) Context() feed.ID { return s.id }

// Cursor returns the cursor of the last message queued for Next: what to
// resume from with ContextOptions.Since.
func (s *ContextSubscription) Cursor() uint64 { return s.st.currentCursor() }

// Next returns the next message. After the subscription ended it returns
// the reason: ErrClosed after Close (or the Client's), an *Error if the
// server ended it (after the messages queued before that).
func (s *ContextSubscription) Next(ctx context.Context) (api.Message, error) { return s.st.next(ctx) }

// Datagrams returns the live datagrams (with ContextOptions.Datagrams).
// They are best effort: those that come while the buffer (Config.SubBuffer)
// is full, or while the connection is down, are lost. The channel is never
// closed: stop reading when Done is.
func (s *ContextSubscription) Datagrams() <-chan api.Datagram { return s.dgs }

// Done is closed when the subscription ended.
func (s *ContextSubscription) Done() <-chan struct{} { return s.st.ctx.Done() }

// Close ends the subscription, on the server too.
func (s *ContextSubscription) Close() error { return s.st.close() }

// contextKind is the kind of stream of context.subscribe: messages by
// cursor (which may skip), and datagrams on the side.
type contextKind struct {
	id        feed.ID
	last      uint64 // for the first subscribe only; later ones resume from the cursor
	datagrams bool
	dgs       chan api.Datagram
}

func (k *contextKind) String() string { return "context " + k.id.Short() }

// subscribe passes Last only the first time: a resubscription with cursor
// 0 (nothing came yet) then asks for everything, which may be more than
// Last but misses nothing.
func (k *contextKind) subscribe(cursor uint64) (string, any) {
	p := api.ContextSubscribeParams{ID: k.id, Since: cursor, Last: k.last, Datagrams: k.datagrams}
	k.last = 0
	return api.MethodContextSubscribe, p
}

func (k *contextKind) unsubscribeMethod() string { return api.MethodContextUnsubscribe }

func (k *contextKind) consecutive() bool { return false }

func (k *contextKind) item(method string, params json.RawMessage) (api.Message, uint64, bool) {
	var n api.MessageNotification
	if method != api.NotifyContextMessage || json.Unmarshal(params, &n) != nil {
		return api.Message{}, 0, false
	}
	return n.Message, n.Message.Cursor, true
}

func (k *contextKind) other(method string, params json.RawMessage) {
	var n api.DatagramNotification
	if method != api.NotifyContextDatagram || json.Unmarshal(params, &n) != nil {
		return
	}
	select {
	case k.dgs <- n.Datagram:
	default: // best effort
	}
}
