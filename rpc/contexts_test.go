package rpc

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// newContext creates a context on e's node (owned, joined).
func newContext(t *testing.T, e *testEnv) feed.ID {
	t.Helper()
	return result[api.Context](t, e.call(t, api.MethodContextCreate, api.ContextCreateParams{Name: "room"})).ID
}

// message reads the next message, which must be a context.message of sub.
func (c *wsClient) message(sub string) api.Message {
	c.t.Helper()
	m := c.read()
	if m.Method != api.NotifyContextMessage {
		c.t.Fatalf("got %+v %s, want a context.message", m, m.Params)
	}
	var n api.MessageNotification
	if err := json.Unmarshal(m.Params, &n); err != nil {
		c.t.Fatal(err)
	}
	if n.Subscription != sub {
		c.t.Fatalf("message of %q, want %q", n.Subscription, sub)
	}
	return n.Message
}

func (c *wsClient) subscribeContext(p api.ContextSubscribeParams) string {
	c.t.Helper()
	return result[api.SubscribeResult](c.t, c.call(api.MethodContextSubscribe, p)).Subscription
}

func TestContextParamErrors(t *testing.T) {
	e := newEnv(t, Config{})
	id := newContext(t, e)
	other := rpctest.KeyFor(7).Public() // not joined
	big := strings.Repeat("x", api.MaxMessageBody+1)
	for _, tc := range []struct {
		method string
		params string
		code   api.Code
		msgHas string
	}{
		{api.MethodContextCreate, `{}`, api.CodeInvalidParams, `"name"`},
		{api.MethodContextCreate, `{"name":"` + strings.Repeat("n", api.MaxContextName+1) + `"}`, api.CodeInvalidParams, strconv.Itoa(api.MaxContextName)},
		{api.MethodContextCreate, `{"name":"a","description":"` + strings.Repeat("d", api.MaxContextDescription+1) + `"}`, api.CodeInvalidParams, `"description"`},
		{api.MethodContextJoin, `{}`, api.CodeInvalidParams, `"id"`},
		{api.MethodContextJoin, `{"id":"12D3KooWnope"}`, api.CodeInvalidParams, `"id"`},
		{api.MethodContextLeave, `{"id":"` + other.String() + `"}`, api.CodeNotJoined, ""},
		{api.MethodContextMembers, `{}`, api.CodeInvalidParams, `"id"`},
		{api.MethodContextPublish, `{"text":"hi"}`, api.CodeInvalidParams, `"id"`},
		{api.MethodContextPublish, `{"id":"` + id.String() + `","text":"a","body":"Yg=="}`, api.CodeInvalidParams, "not both"},
		{api.MethodContextPublish, `{"id":"` + id.String() + `","text":"` + big + `"}`, api.CodeTooLarge, strconv.Itoa(api.MaxMessageBody)},
		{api.MethodContextPublish, `{"id":"` + other.String() + `","text":"hi"}`, api.CodeNotJoined, ""},
		{api.MethodContextSend, `{"id":"` + id.String() + `","text":"` + big + `"}`, api.CodeTooLarge, strconv.Itoa(api.MaxMessageBody)},
		{api.MethodContextSend, `{"id":"` + other.String() + `","text":"hi"}`, api.CodeNotJoined, ""},
		{api.MethodContextHistory, `{"id":"` + id.String() + `","limit":-1}`, api.CodeInvalidParams, `"limit"`},
		{api.MethodContextHistory, `{"id":"` + id.String() + `","limit":` + strconv.Itoa(api.MaxHistoryLimit+1) + `}`, api.CodeInvalidParams, strconv.Itoa(api.MaxHistoryLimit)},
		{api.MethodContextHistory, `{"id":"` + id.String() + `","order":"sideways"}`, api.CodeInvalidParams, `"order"`},
		{api.MethodContextHistory, `{"id":"` + id.String() + `","after":3,"order":"newest"}`, api.CodeInvalidParams, `"after"`},
		{api.MethodContextHistory, `{"id":"` + id.String() + `","before":3}`, api.CodeInvalidParams, `"before"`},
		{api.MethodContextBan, `{"id":"` + id.String() + `"}`, api.CodeInvalidParams, `"author"`},
		{api.MethodContextUnban, `{"author":"` + other.String() + `"}`, api.CodeInvalidParams, `"id"`},
	} {
		status, b := e.post(t, testToken, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q,"params":%s}`, tc.method, tc.params))
		if status != 200 {
			t.Fatalf("%s %.80s: HTTP %d", tc.method, tc.params, status)
		}
		wantCode(t, decodeResponse(t, b), tc.code, tc.msgHas)
	}
	// Nothing was stored by the calls that failed.
	if h := result[api.HistoryResult](t, e.call(t, api.MethodContextHistory, api.HistoryParams{ID: id})); len(h.Messages) != 0 {
		t.Fatalf("history %+v after failed publishes, want none", h)
	}
	// A context the node did not create cannot be banned in.
	e.call(t, api.MethodContextJoin, api.ContextParams{ID: other})
	wantCode(t, e.call(t, api.MethodContextBan, api.BanParams{ID: other, Author: id}), api.CodeNotAllowed, "")
	// Subscriptions need a WebSocket and an ID.
	wantCode(t, e.call(t, api.MethodContextSubscribe, api.ContextSubscribeParams{ID: id}), api.CodeInvalidRequest, "WebSocket")
	c := e.ws(t)
	wantCode(t, c.call(api.MethodContextSubscribe, api.ContextSubscribeParams{}), api.CodeInvalidParams, `"id"`)
	// Reading a context the node holds nothing of is no error: its
	// messages flow once they arrive.
	unknown := rpctest.KeyFor(8).Public()
	if h := result[api.HistoryResult](t, e.call(t, api.MethodContextHistory, api.HistoryParams{ID: unknown})); len(h.Messages) != 0 || h.More {
		t.Fatalf("history of an unknown context %+v", h)
	}
	sub := c.subscribeContext(api.ContextSubscribeParams{ID: unknown, Last: 3})
	e.node.AddContextMessage(unknown, rpctest.KeyFor(1), []byte("first"))
	if m := c.message(sub); m.Cursor != 1 || m.Text != "first" {
		t.Fatalf("first message of a context that was unknown: %+v", m)
	}
}

func TestContextCalls(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := result[api.Context](t, e.call(t, api.MethodContextCreate, api.ContextCreateParams{Name: "room", Description: "talk"}))
	if !ctx.Owner || !ctx.Joined || ctx.Name != "room" || ctx.Description != "talk" || ctx.ID.IsZero() {
		t.Fatalf("created %+v", ctx)
	}
	id := ctx.ID
	self := rpctest.KeyFor(0).Public()
	for i := range 5 {
		m := result[api.Message](t, e.call(t, api.MethodContextPublish, api.ContextPublishParams{ID: id, Text: fmt.Sprint("m", i)}))
		if m.Cursor != uint64(i+1) || m.Author != self || m.Text != fmt.Sprint("m", i) || m.Context != id {
			t.Fatalf("published %+v", m)
		}
	}
	m := result[api.Message](t, e.call(t, api.MethodContextPublish, api.ContextPublishParams{ID: id, Body: []byte{0xff}}))
	if m.Text != "" || string(m.Body) != "\xff" {
		t.Fatalf("binary message %+v", m)
	}

	oldest := result[api.HistoryResult](t, e.call(t, api.MethodContextHistory, api.HistoryParams{ID: id, After: 1, Limit: 2}))
	if len(oldest.Messages) != 2 || oldest.Messages[0].Cursor != 2 || oldest.Messages[1].Cursor != 3 || !oldest.More {
		t.Fatalf("oldest page %+v", oldest)
	}
	newest := result[api.HistoryResult](t, e.call(t, api.MethodContextHistory, api.HistoryParams{ID: id, Order: api.OrderNewest, Before: 3}))
	if len(newest.Messages) != 2 || newest.Messages[0].Cursor != 2 || newest.Messages[1].Cursor != 1 || newest.More {
		t.Fatalf("newest page %+v", newest)
	}
	list := result[api.ContextsResult](t, e.call(t, api.MethodContextList, nil))
	if len(list.Contexts) != 1 || list.Contexts[0].ID != id || list.Contexts[0].Messages != 6 {
		t.Fatalf("list %+v", list)
	}
	members := result[api.MembersResult](t, e.call(t, api.MethodContextMembers, api.ContextParams{ID: id}))
	if len(members.Members) != 1 || members.Members[0].ID != self || members.Members[0].Messages != 6 || members.Members[0].Seq != 6 {
		t.Fatalf("members %+v", members)
	}

	banned := rpctest.KeyFor(3).Public()
	h := result[api.Head](t, e.call(t, api.MethodContextBan, api.BanParams{ID: id, Author: banned}))
	if h.Seq != 1 || h.ID.IsZero() {
		t.Fatalf("ban head %+v", h)
	}
	h = result[api.Head](t, e.call(t, api.MethodContextUnban, api.BanParams{ID: id, Author: banned}))
	if h.Seq != 2 {
		t.Fatalf("unban head %+v", h)
	}

	result[api.Empty](t, e.call(t, api.MethodContextLeave, api.ContextParams{ID: id}))
	if list := result[api.ContextsResult](t, e.call(t, api.MethodContextList, nil)); len(list.Contexts) != 0 {
		t.Fatalf("list after leave %+v", list)
	}
	wantCode(t, e.call(t, api.MethodContextPublish, api.ContextPublishParams{ID: id, Text: "x"}), api.CodeNotJoined, "")
}

// TestContextSubscribeExactlyOnce: stored and live messages of several
// authors, racing, come once each in cursor order, each author in seq
// order; a second subscription resumes from a cursor; a banned author's
// messages are left out.
func TestContextSubscribeExactlyOnce(t *testing.T) {
	e := newEnv(t, Config{SubBatch: 4})
	id := newContext(t, e)
	keys := []feed.PrivateKey{rpctest.KeyFor(1), rpctest.KeyFor(2), rpctest.KeyFor(3)}
	add := func(key feed.PrivateKey, n int) {
		for i := range n {
			if _, err := e.node.AddContextMessage(id, key, []byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}
	add(keys[0], 5)
	c := e.ws(t)
	sub := c.subscribeContext(api.ContextSubscribeParams{ID: id})
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() { add(k, 15) })
	}
	const total = 5 + 3*15
	seqs := map[feed.ID]uint64{}
	for cursor := uint64(1); cursor <= total; cursor++ {
		m := c.message(sub)
		if m.Cursor != cursor || m.Seq != seqs[m.Author]+1 || m.Context != id {
			t.Fatalf("got cursor %d author %s seq %d, want cursor %d seq %d", m.Cursor, m.Author.Short(), m.Seq, cursor, seqs[m.Author]+1)
		}
		seqs[m.Author] = m.Seq
	}
	wg.Wait()
	// Nothing more: the next message is the unsubscribe response.
	result[api.Empty](t, c.call(api.MethodContextUnsubscribe, api.UnsubscribeParams{Subscription: sub}))
	if n := e.node.ContextWatches(); n != 0 {
		t.Fatalf("%d context watches after unsubscribe", n)
	}

	// Resume from a cursor, with one author banned: its cursors are skipped.
	result[api.Head](t, e.call(t, api.MethodContextBan, api.BanParams{ID: id, Author: keys[1].Public()}))
	for range 3 {
		for _, k := range keys {
			add(k, 1)
		}
	}
	sub = c.subscribeContext(api.ContextSubscribeParams{ID: id, Since: total})
	for _, cur := range []uint64{total + 1, total + 3, total + 4, total + 6, total + 7, total + 9} {
		if m := c.message(sub); m.Cursor != cur || m.Author == keys[1].Public() {
			t.Fatalf("got cursor %d by %s, want %d", m.Cursor, m.Author.Short(), cur)
		}
	}
	// Live ones still come after the skipped cursors.
	m, _ := e.node.AddContextMessage(id, keys[2], []byte("live"))
	if got := c.message(sub); got.Cursor != m.Cursor || got.Text != "live" {
		t.Fatalf("live message %+v, want cursor %d", got, m.Cursor)
	}
}

func TestContextSubscribeLast(t *testing.T) {
	e := newEnv(t, Config{})
	id := newContext(t, e)
	for range 10 {
		e.node.AddContextMessage(id, rpctest.KeyFor(1), []byte("m"))
	}
	c := e.ws(t)
	for _, tc := range []struct {
		p     api.ContextSubscribeParams
		first uint64
	}{
		{api.ContextSubscribeParams{ID: id, Last: 3}, 8},
		{api.ContextSubscribeParams{ID: id, Last: 30}, 1},
		{api.ContextSubscribeParams{ID: id, Last: 3, Since: 5}, 6}, // Since wins
	} {
		sub := c.subscribeContext(tc.p)
		for cur := tc.first; cur <= 10; cur++ {
			if m := c.message(sub); m.Cursor != cur {
				t.Fatalf("%+v: got cursor %d, want %d", tc.p, m.Cursor, cur)
			}
		}
		result[api.Empty](t, c.call(api.MethodContextUnsubscribe, api.UnsubscribeParams{Subscription: sub}))
	}
	// Last on an empty context starts at the beginning.
	empty := newContext(t, e)
	sub := c.subscribeContext(api.ContextSubscribeParams{ID: empty, Last: 5})
	e.node.AddContextMessage(empty, rpctest.KeyFor(1), []byte("first"))
	if m := c.message(sub); m.Cursor != 1 {
		t.Fatalf("got cursor %d, want 1", m.Cursor)
	}
}

func TestContextDatagrams(t *testing.T) {
	e := newEnv(t, Config{})
	id := newContext(t, e)
	c := e.ws(t)
	with := c.subscribeContext(api.ContextSubscribeParams{ID: id, Datagrams: true})
	// Any datagram after the subscribe response comes; it may come before
	// the response to the send.
	reqID := c.request(api.MethodContextSend, api.ContextPublishParams{ID: id, Text: "typing"})
	var got []string
	for range 2 {
		m := c.read()
		var n api.DatagramNotification
		switch {
		case m.Method == "" && string(m.ID) == string(reqID):
			result[api.Empty](t, m.Response)
			got = append(got, "response")
		case m.Method == api.NotifyContextDatagram && json.Unmarshal(m.Params, &n) == nil && n.Subscription == with &&
			n.Datagram.Text == "typing" && n.Datagram.Context == id && n.Datagram.Author == rpctest.KeyFor(0).Public():
			got = append(got, "datagram")
		default:
			t.Fatalf("got %+v %s, want the send's response and the datagram", m, m.Params)
		}
	}
	if got[0] == got[1] {
		t.Fatalf("got %v", got)
	}
	// Messages and datagrams share the subscription.
	e.node.AddContextMessage(id, rpctest.KeyFor(1), []byte("hello"))
	if got := c.message(with); got.Text != "hello" {
		t.Fatalf("message %+v", got)
	}
	result[api.Empty](t, c.call(api.MethodContextUnsubscribe, api.UnsubscribeParams{Subscription: with}))

	// Without Datagrams set none comes: the next notification is the
	// message published after the datagram, then the unsubscribe response.
	without := c.subscribeContext(api.ContextSubscribeParams{ID: id, Since: 1})
	result[api.Empty](t, c.call(api.MethodContextSend, api.ContextPublishParams{ID: id, Text: "typing"}))
	e.node.AddContextMessage(id, rpctest.KeyFor(1), []byte("again"))
	if got := c.message(without); got.Text != "again" {
		t.Fatalf("message %+v", got)
	}
	result[api.Empty](t, c.call(api.MethodContextUnsubscribe, api.UnsubscribeParams{Subscription: without}))
}

func TestContextSubscriptionEndsOnNodeError(t *testing.T) {
	e := newEnv(t, Config{})
	id := newContext(t, e)
	e.node.AddContextMessage(id, rpctest.KeyFor(1), []byte("a"))
	c := e.ws(t)
	sub := c.subscribeContext(api.ContextSubscribeParams{ID: id})
	c.message(sub)
	e.node.SetContextMessagesError(fmt.Errorf("disk: %w", api.ErrUnavailable))
	e.node.AddContextMessage(id, rpctest.KeyFor(1), []byte("b"))
	m := c.read()
	var n api.EndNotification
	if err := json.Unmarshal(m.Params, &n); err != nil || m.Method != api.NotifyContextEnd || n.Subscription != sub || n.Error == nil || n.Error.Code != api.CodeUnavailable {
		t.Fatalf("got %+v %s, want context.end with code %d", m, m.Params, api.CodeUnavailable)
	}
	wantCode(t, c.call(api.MethodContextUnsubscribe, api.UnsubscribeParams{Subscription: sub}), api.CodeNotFound, sub)
}

// TestSubscriptionLimitShared: feed and context subscriptions count against
// one per-connection limit.
func TestSubscriptionLimitShared(t *testing.T) {
	e := newEnv(t, Config{MaxSubs: 2})
	id := newContext(t, e)
	c := e.ws(t)
	result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: rpctest.KeyFor(1).Public()}))
	sub := c.subscribeContext(api.ContextSubscribeParams{ID: id})
	wantCode(t, c.call(api.MethodContextSubscribe, api.ContextSubscribeParams{ID: id}), api.CodeLimit, "limit 2")
	wantCode(t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: rpctest.KeyFor(1).Public()}), api.CodeLimit, "limit 2")
	result[api.Empty](t, c.call(api.MethodContextUnsubscribe, api.UnsubscribeParams{Subscription: sub}))
	c.subscribeContext(api.ContextSubscribeParams{ID: id})
}
