package rpc

import (
	"context"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

func contextCreate(ctx context.Context, s *Server, _ *call, p api.ContextCreateParams) (any, error) {
	switch {
	case p.Name == "":
		return nil, missing("name")
	case len(p.Name) > api.MaxContextName:
		return nil, api.NewError(api.CodeInvalidParams, "field \"name\": %d bytes, the limit is %d", len(p.Name), api.MaxContextName)
	case len(p.Description) > api.MaxContextDescription:
		return nil, api.NewError(api.CodeInvalidParams, "field \"description\": %d bytes, the limit is %d", len(p.Description), api.MaxContextDescription)
	}
	return s.node.CreateContext(ctx, p)
}

func contextJoin(ctx context.Context, s *Server, _ *call, p api.ContextParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	return s.node.JoinContext(ctx, p.ID)
}

func contextLeave(ctx context.Context, s *Server, _ *call, p api.ContextParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	if err := s.node.LeaveContext(p.ID); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func contextList(ctx context.Context, s *Server) (any, error) {
	cs, err := s.node.Contexts()
	if err != nil {
		return nil, err
	}
	return api.ContextsResult{Contexts: orEmpty(cs), Stats: s.node.ContextStats()}, nil
}

func contextMembers(ctx context.Context, s *Server, _ *call, p api.ContextParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	ms, err := s.node.ContextMembers(p.ID)
	if err != nil {
		return nil, err
	}
	return api.MembersResult{Members: orEmpty(ms)}, nil
}

// messageBody checks the params of context.publish and context.send and
// returns the body.
func messageBody(p api.ContextPublishParams) ([]byte, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	return textOrBody(p.Text, p.Body, api.MaxMessageBody)
}

func contextPublish(ctx context.Context, s *Server, _ *call, p api.ContextPublishParams) (any, error) {
	body, err := messageBody(p)
	if err != nil {
		return nil, err
	}
	return s.node.PublishContext(ctx, p.ID, body)
}

func contextSend(ctx context.Context, s *Server, _ *call, p api.ContextPublishParams) (any, error) {
	body, err := messageBody(p)
	if err != nil {
		return nil, err
	}
	if err := s.node.SendContext(ctx, p.ID, body); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func contextHistory(ctx context.Context, s *Server, _ *call, p api.HistoryParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	switch p.Order {
	case "", api.OrderOldest:
		p.Order = api.OrderOldest
		if p.Before != 0 {
			return nil, api.NewError(api.CodeInvalidParams, "field \"before\" goes with order %q; use \"after\"", api.OrderNewest)
		}
	case api.OrderNewest:
		if p.After != 0 {
			return nil, api.NewError(api.CodeInvalidParams, "field \"after\" goes with order %q; use \"before\"", api.OrderOldest)
		}
	default:
		return nil, api.NewError(api.CodeInvalidParams, "field \"order\": %q is not %q or %q", truncate(p.Order), api.OrderOldest, api.OrderNewest)
	}
	switch {
	case p.Limit < 0 || p.Limit > api.MaxHistoryLimit:
		return nil, api.NewError(api.CodeInvalidParams, "field \"limit\": %d is not in 0..%d", p.Limit, api.MaxHistoryLimit)
	case p.Limit == 0:
		p.Limit = api.DefaultHistoryLimit
	}
	h, err := s.node.ContextHistory(p.ID, p)
	if err != nil {
		return nil, err
	}
	h.Messages = orEmpty(h.Messages)
	return h, nil
}

// contextSubscribe starts a context subscription; with Last (and no
// Since) it starts with the last Last messages (at most
// api.MaxHistoryLimit of them).
func contextSubscribe(ctx context.Context, s *Server, cl *call, p api.ContextSubscribeParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	since := p.Since
	if since == 0 && p.Last > 0 {
		last, err := s.node.ContextHistory(p.ID, api.HistoryParams{ID: p.ID, Order: api.OrderNewest, Limit: int(min(p.Last, api.MaxHistoryLimit))})
		if err != nil {
			return nil, err
		}
		if n := len(last.Messages); n > 0 && last.More {
			since = last.Messages[n-1].Cursor - 1
		}
	}
	id, err := cl.conn.start(contextSource{node: s.node, id: p.ID, dgs: p.Datagrams}, since, cl)
	if err != nil {
		return nil, err
	}
	return api.SubscribeResult{Subscription: id}, nil
}

// contextUnsubscribe ends a subscription. Subscription IDs are unique per
// connection, so it is feed.unsubscribe under the context name.
func contextUnsubscribe(ctx context.Context, s *Server, cl *call, p api.UnsubscribeParams) (any, error) {
	return feedUnsubscribe(ctx, s, cl, p)
}

func contextBan(ban bool) func(ctx context.Context, s *Server, _ *call, p api.BanParams) (any, error) {
	return func(ctx context.Context, s *Server, _ *call, p api.BanParams) (any, error) {
		switch {
		case p.ID.IsZero():
			return nil, missing("id")
		case p.Author.IsZero():
			return nil, missing("author")
		}
		h, err := s.node.BanContext(ctx, p.ID, p.Author, ban)
		if err != nil {
			return nil, err
		}
		return api.Head{Seq: h.Seq, ID: h.ID}, nil
	}
}

// contextSource is the source of context.subscribe: a context's messages
// by cursor and, when dgs is set, its live datagrams.
type contextSource struct {
	node Node
	id   feed.ID
	dgs  bool
}

func (c contextSource) String() string { return "context " + c.id.Short() }

func (c contextSource) read(sub string, after uint64, limit int) ([]item, uint64, bool, error) {
	msgs, upTo, err := c.node.ContextMessages(c.id, after, limit)
	if err != nil {
		return nil, after, false, err
	}
	upTo = max(upTo, after)
	items := make([]item, 0, len(msgs))
	cursor := after
	for _, m := range msgs {
		if m.Cursor <= cursor || m.Cursor > upTo {
			return items, cursor, false, api.NewError(api.CodeInternal, "node returned cursor %d after %d, up to %d", m.Cursor, cursor, upTo)
		}
		items = append(items, item{cursor: m.Cursor, params: api.MessageNotification{Subscription: sub, Message: m}})
		cursor = m.Cursor
	}
	return items, upTo, upTo-after >= uint64(limit), nil
}

func (c contextSource) watch() (<-chan struct{}, func()) { return c.node.WatchContext(c.id) }

func (c contextSource) datagrams() (<-chan api.Datagram, func()) {
	if !c.dgs {
		return nil, func() {}
	}
	return c.node.ContextDatagrams(c.id)
}

func (c contextSource) itemMethod() string { return api.NotifyContextMessage }

func (c contextSource) endMethod() string { return api.NotifyContextEnd }
