package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// wsClient is a raw JSON-RPC WebSocket client for tests.
type wsClient struct {
	t    *testing.T
	c    *websocket.Conn
	next int
}

// message is any message from the server.
type message struct {
	api.Response
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

func (e *testEnv) dialWS(t *testing.T, query string, hdr http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.ts.URL, "http") + api.Path + query
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		return nil, resp, err
	}
	c.SetReadLimit(api.MaxMessageSize)
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}, resp, nil
}

func (e *testEnv) ws(t *testing.T) *wsClient {
	t.Helper()
	c, _, err := e.dialWS(t, "", http.Header{"Authorization": {"Bearer " + testToken}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *wsClient) send(raw string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(raw)); err != nil {
		c.t.Fatal(err)
	}
}

// request sends a request and returns its id.
func (c *wsClient) request(method string, params any) json.RawMessage {
	c.t.Helper()
	c.next++
	p, _ := json.Marshal(params)
	c.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, c.next, method, p))
	return json.RawMessage(fmt.Sprint(c.next))
}

func (c *wsClient) read() message {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.c.Read(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("%s: %v", b, err)
	}
	return m
}

// call sends a request and reads its response, which must be the next
// message.
func (c *wsClient) call(method string, params any) api.Response {
	c.t.Helper()
	id := c.request(method, params)
	m := c.read()
	if m.Method != "" || string(m.ID) != string(id) {
		c.t.Fatalf("%s: got %+v, want response %s", method, m, id)
	}
	return m.Response
}

// entry reads the next message, which must be a feed.entry of sub.
func (c *wsClient) entry(sub string) api.Entry {
	c.t.Helper()
	m := c.read()
	if m.Method != api.NotifyFeedEntry {
		c.t.Fatalf("got %+v, want a feed.entry", m)
	}
	var n api.EntryNotification
	if err := json.Unmarshal(m.Params, &n); err != nil {
		c.t.Fatal(err)
	}
	if n.Subscription != sub {
		c.t.Fatalf("entry of %q, want %q", n.Subscription, sub)
	}
	return n.Entry
}

func TestWSAuth(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		query string
		hdr   http.Header
	}{
		{"", nil},
		{"?token=wrong", nil},
		{"", http.Header{"Authorization": {"Bearer wrong"}}},
		{"?token=" + testToken, http.Header{"Authorization": {"Bearer wrong"}}}, // a header wins
	} {
		_, resp, err := e.dialWS(t, tc.query, tc.hdr)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%q %v: err %v resp %v, want 401", tc.query, tc.hdr, err, resp)
		}
	}
	c, _, err := e.dialWS(t, "?token="+testToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	result[api.NodeInfo](t, c.call(api.MethodNodeInfo, nil))
	result[api.NodeInfo](t, e.ws(t).call(api.MethodNodeInfo, nil))
}

func TestWSMalformedThenValid(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.ws(t)
	c.send(`{"jsonrpc":`)
	m := c.read()
	wantCode(t, m.Response, api.CodeParseError, "JSON")
	if string(m.ID) != "null" {
		t.Fatalf("id %s", m.ID)
	}
	c.send(`{"jsonrpc":"2.0","method":"node.info"}`) // a notification: no answer
	wantCode(t, c.call("nope", nil), api.CodeMethodNotFound, "nope")
	result[api.NodeInfo](t, c.call(api.MethodNodeInfo, nil))
	e.node.SetPanic(true)
	wantCode(t, c.call(api.MethodNodeInfo, nil), api.CodeInternal, "internal")
	e.node.SetPanic(false)
	result[api.NodeInfo](t, c.call(api.MethodNodeInfo, nil))
}

func TestWSReadLimit(t *testing.T) {
	e := newEnv(t, Config{MaxRequestSize: 1 << 10})
	c := e.ws(t)
	c.send(`{"jsonrpc":"2.0","id":1,"method":"node.info","params":{"x":"` + strings.Repeat("a", 2<<10) + `"}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("read after a big message: %v", err)
	}
}

func TestSubscribe(t *testing.T) {
	e := newEnv(t, Config{SubBatch: 3})
	key := rpctest.KeyFor(1)
	author := key.Public()
	appendN := func(n int) {
		for range n {
			if _, err := e.node.Append(key, "post", []byte("x")); err != nil {
				t.Error(err)
			}
		}
	}
	appendN(5)
	c := e.ws(t)
	sub := result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: author, Since: 2})).Subscription

	// Live appends race with the stored ones being sent.
	var wg sync.WaitGroup
	wg.Go(func() { appendN(45) })
	var prev feed.Hash
	for seq := uint64(3); seq <= 50; seq++ {
		en := c.entry(sub)
		if en.Seq != seq || en.Author != author || (seq > 3 && en.Prev != prev) {
			t.Fatalf("got seq %d prev %s, want %d after %s", en.Seq, en.Prev, seq, prev)
		}
		prev = en.ID
	}
	wg.Wait()

	// A second subscription from the head sees only new entries.
	sub2 := result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: author, Since: 50})).Subscription
	if sub2 == sub {
		t.Fatal("same subscription id twice")
	}
	appendN(1)
	got := map[string]uint64{}
	for range 2 {
		m := c.read()
		var n api.EntryNotification
		json.Unmarshal(m.Params, &n)
		got[n.Subscription] = n.Entry.Seq
	}
	if got[sub] != 51 || got[sub2] != 51 {
		t.Fatalf("got %v", got)
	}

	// After the unsubscribe response, no notification of sub follows.
	if r := c.call(api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: sub}); r.Error != nil {
		t.Fatal(r.Error)
	}
	wantCode(t, c.call(api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: sub}), api.CodeNotFound, "no subscription")
	if r := c.call(api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: sub2}); r.Error != nil {
		t.Fatal(r.Error)
	}
	appendN(3)
	result[api.NodeInfo](t, c.call(api.MethodNodeInfo, nil))
	if n := e.node.Watches(); n != 0 {
		t.Fatalf("%d watches left after unsubscribe", n)
	}
}

func TestSubscribeUnknownFeedThenAppears(t *testing.T) {
	e := newEnv(t, Config{})
	key := rpctest.KeyFor(3)
	c := e.ws(t)
	sub := result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: key.Public()})).Subscription
	// Calls still work while the subscription waits.
	result[api.NodeInfo](t, c.call(api.MethodNodeInfo, nil))
	e.node.Append(key, "post", []byte("first"))
	if en := c.entry(sub); en.Seq != 1 || en.Text != "first" {
		t.Fatalf("entry %+v", en)
	}
}

func TestSubscriptionLimit(t *testing.T) {
	e := newEnv(t, Config{MaxSubs: 2})
	c := e.ws(t)
	p := api.SubscribeParams{ID: rpctest.KeyFor(1).Public()}
	result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, p))
	s2 := result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, p))
	wantCode(t, c.call(api.MethodFeedSubscribe, p), api.CodeLimit, "limit 2")
	c.call(api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: s2.Subscription})
	result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, p))
	// Another connection has its own budget.
	result[api.SubscribeResult](t, e.ws(t).call(api.MethodFeedSubscribe, p))
}

func TestWSConnectionLimit(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 1})
	e.ws(t).call(api.MethodNodeInfo, nil)
	_, resp, err := e.dialWS(t, "?token="+testToken, nil)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection: %v %v", err, resp)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.ws(t)
	result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: rpctest.KeyFor(1).Public()}))
	done := make(chan struct{})
	go func() {
		e.srv.Close()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := c.c.Read(ctx); err == nil {
		t.Fatal("read after Close succeeded")
	}
	<-done
	if n := e.node.Watches(); n != 0 {
		t.Fatalf("%d watches left after Close", n)
	}
}

func TestSubscriptionEndsOnNodeError(t *testing.T) {
	e := newEnv(t, Config{})
	key := rpctest.KeyFor(1)
	e.node.Append(key, "post", []byte("a"))
	c := e.ws(t)
	sub := result[api.SubscribeResult](t, c.call(api.MethodFeedSubscribe, api.SubscribeParams{ID: key.Public()})).Subscription
	c.entry(sub)
	e.node.SetEntriesError(fmt.Errorf("disk: %w", api.ErrForked))
	e.node.Append(key, "post", []byte("b"))
	m := c.read()
	var n api.EndNotification
	if err := json.Unmarshal(m.Params, &n); err != nil || m.Method != api.NotifyFeedEnd || n.Subscription != sub || n.Error == nil || n.Error.Code != api.CodeForked {
		t.Fatalf("got %+v %s, want feed.end with code %d", m, m.Params, api.CodeForked)
	}
	wantCode(t, c.call(api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: sub}), api.CodeNotFound, sub)
}

// TestLongCalls: object.put and object.get over a WebSocket run without
// CallTimeout (an object of any size takes what it takes; the connection
// bounds it); over POST they are bounded, and so is any other method
// (object.pin here) everywhere.
func TestLongCalls(t *testing.T) {
	e := newEnv(t, Config{})
	var mu sync.Mutex
	deadlines := map[string]bool{} // method, transport → had a deadline
	transport := "ws"
	e.node.OnObjectCall(func(method string, ctx context.Context) {
		_, ok := ctx.Deadline()
		mu.Lock()
		deadlines[method+" "+transport] = ok
		mu.Unlock()
	})
	const unknown = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	calls := []struct {
		method string
		params any
	}{
		{api.MethodObjectGet, api.ObjectGetParams{CID: unknown}},
		{api.MethodObjectPut, api.ObjectPutParams{Path: "/nonexistent/file"}},
		{api.MethodObjectPin, api.ObjectParams{CID: unknown}},
	}
	ws := e.ws(t)
	for _, c := range calls {
		if r := ws.call(c.method, c.params); r.Error == nil {
			t.Fatalf("%s over WebSocket: %+v, want an error", c.method, r)
		}
	}
	mu.Lock()
	transport = "post"
	mu.Unlock()
	for _, c := range calls {
		p, _ := json.Marshal(c.params)
		if status, body := e.post(t, testToken, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q,"params":%s}`, c.method, p)); status != http.StatusOK || !strings.Contains(string(body), `"error"`) {
			t.Fatalf("%s over POST: %d %s", c.method, status, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{
		"GetObject ws": false, "PutObjectFile ws": false, "PinObject ws": true,
		"GetObject post": true, "PutObjectFile post": true, "PinObject post": true,
	}
	if !maps.Equal(deadlines, want) {
		t.Fatalf("deadlines seen by the node = %v, want %v", deadlines, want)
	}
}
