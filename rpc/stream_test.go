package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// openStream opens a stream through the RPC.
func (e *testEnv) openStream(t *testing.T) feed.ID {
	t.Helper()
	return result[api.StreamOpenResult](t, e.call(t, api.MethodStreamOpen, nil)).ID
}

// chunk reads the next message, which must be a stream.chunk of sub.
func (c *wsClient) chunk(sub string) api.StreamChunk {
	c.t.Helper()
	m := c.read()
	var n api.StreamChunkNotification
	if err := json.Unmarshal(m.Params, &n); err != nil || m.Method != api.NotifyStreamChunk || n.Subscription != sub {
		c.t.Fatalf("got %+v %s, want a stream.chunk of %s", m, m.Params, sub)
	}
	return n.Chunk
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStreamCalls: a stream opened, written and closed through the
// methods reaches a stream.watch subscription chunk by chunk, in order,
// then ends with the End chunk, after which the subscription is gone.
func TestStreamCalls(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.openStream(t)
	result[api.Empty](t, e.call(t, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: []byte("before")}))

	c := e.ws(t)
	from := int64(0)
	sub := result[api.SubscribeResult](t, c.call(api.MethodStreamWatch, api.StreamWatchParams{ID: id, From: &from})).Subscription
	if ch := c.chunk(sub); ch.Index != 0 || string(ch.Data) != "before" || ch.End || ch.Published == 0 {
		t.Fatalf("first chunk %+v", ch)
	}
	big := bytes.Repeat([]byte("z"), rpctest.StreamChunkSize+1)
	result[api.Empty](t, e.call(t, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: big}))
	if a, b := c.chunk(sub), c.chunk(sub); a.Index != 1 || b.Index != 2 || len(a.Data)+len(b.Data) != len(big) {
		t.Fatalf("chunks %d (%d bytes) and %d (%d bytes), want 1 and 2 holding %d", a.Index, len(a.Data), b.Index, len(b.Data), len(big))
	}
	result[api.Empty](t, e.call(t, api.MethodStreamClose, api.StreamIDParams{ID: id}))
	if ch := c.chunk(sub); !ch.End || len(ch.Data) != 0 || ch.Index != 3 {
		t.Fatalf("last chunk %+v, want End at index 3", ch)
	}
	wantCode(t, c.call(api.MethodStreamUnwatch, api.UnsubscribeParams{Subscription: sub}), api.CodeNotFound, sub)
	wantCode(t, e.call(t, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: []byte("late")}), api.CodeNotFound, "closed")

	st := result[api.StreamStats](t, e.call(t, api.MethodStreamStats, nil))
	if want := uint64(len("before") + len(big)); st.ReceivedBytes != want || st.SentBytes != want {
		t.Fatalf("stats %+v, want %d both ways", st, want)
	}
}

// TestStreamWatchLiveEdge: a watch without "from" starts with what is
// written after it; unwatch releases the node's watch before it answers.
func TestStreamWatchLiveEdge(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.openStream(t)
	result[api.Empty](t, e.call(t, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: []byte("old")}))
	c := e.ws(t)
	sub := result[api.SubscribeResult](t, c.call(api.MethodStreamWatch, api.StreamWatchParams{ID: id})).Subscription
	result[api.Empty](t, e.call(t, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: []byte("new")}))
	if ch := c.chunk(sub); ch.Index != 1 || string(ch.Data) != "new" {
		t.Fatalf("chunk %+v, want index 1 \"new\"", ch)
	}
	if n := e.node.StreamWatches(); n != 1 {
		t.Fatalf("%d node watches, want 1", n)
	}
	result[api.Empty](t, c.call(api.MethodStreamUnwatch, api.UnsubscribeParams{Subscription: sub}))
	if n := e.node.StreamWatches(); n != 0 {
		t.Fatalf("%d node watches after unwatch, want 0", n)
	}
}

// TestStreamParamErrors: bad params are refused with the code callers
// branch on.
func TestStreamParamErrors(t *testing.T) {
	e := newEnv(t, Config{MaxRequestSize: 4 << 20})
	id := e.openStream(t)
	unknown := rpctest.KeyFor(7).Public()
	c := e.ws(t)
	bad := int64(-2)
	for _, tc := range []struct {
		name   string
		call   func(method string, params any) api.Response
		method string
		params any
		code   api.Code
		msgHas string
	}{
		{"write without id", c.call, api.MethodStreamWrite, api.StreamWriteParams{Data: []byte("x")}, api.CodeInvalidParams, `"id"`},
		{"write too much", c.call, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: make([]byte, api.MaxStreamWrite+1)}, api.CodeTooLarge, "POST larger data"},
		{"write unknown", c.call, api.MethodStreamWrite, api.StreamWriteParams{ID: unknown, Data: []byte("x")}, api.CodeNotFound, "not published here"},
		{"close unknown", c.call, api.MethodStreamClose, api.StreamIDParams{ID: unknown}, api.CodeNotFound, "not published here"},
		{"close without id", c.call, api.MethodStreamClose, api.StreamIDParams{}, api.CodeInvalidParams, `"id"`},
		{"watch without id", c.call, api.MethodStreamWatch, api.StreamWatchParams{}, api.CodeInvalidParams, `"id"`},
		{"watch from -2", c.call, api.MethodStreamWatch, api.StreamWatchParams{ID: id, From: &bad}, api.CodeInvalidParams, `"from"`},
		{"watch unknown", c.call, api.MethodStreamWatch, api.StreamWatchParams{ID: unknown}, api.CodeUnavailable, "no carrier"},
		{"watch over POST", func(m string, p any) api.Response { return e.call(t, m, p) }, api.MethodStreamWatch, api.StreamWatchParams{ID: id}, api.CodeInvalidRequest, "WebSocket"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(tc.method, tc.params), tc.code, tc.msgHas) })
	}
	if st := e.node.StreamStats(); st.ReceivedBytes != 0 {
		t.Fatalf("refused writes wrote %d bytes", st.ReceivedBytes)
	}
}

// TestStreamEndpoints: the bytes POSTed to /streams/ID reach a GET of it
// as they arrive, before the POST ends; the GET ends when the stream is
// closed.
func TestStreamEndpoints(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.openStream(t)
	path := api.StreamsPath + "/" + id.String()

	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path+"?from=0", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	pr, pw := io.Pipe()
	posted := make(chan []byte, 1)
	go func() {
		resp, b := e.send(t, http.MethodPost, path, testToken, "", pr)
		if resp.StatusCode != http.StatusOK {
			b = fmt.Appendf(nil, "HTTP %d %s", resp.StatusCode, b)
		}
		posted <- b
	}()
	first := []byte("first piece ")
	pw.Write(first)
	got := make([]byte, len(first))
	if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("GET read %q, %v while the POST goes on; want %q", got, err, first)
	}
	second := bytes.Repeat([]byte("second "), 10000)
	pw.Write(second)
	pw.Close()
	if b := <-posted; string(b) != "{}" {
		t.Fatalf("POST answered %s", b)
	}
	result[api.Empty](t, e.call(t, api.MethodStreamClose, api.StreamIDParams{ID: id}))
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(rest, second) {
		t.Fatalf("GET read %d more bytes, %v; want %d and a clean end", len(rest), err, len(second))
	}
}

// TestStreamEndpointErrors: every refusal answers a status and a JSON-RPC
// error, and writes nothing.
func TestStreamEndpointErrors(t *testing.T) {
	e := newTokenEnv(t, Config{})
	reader := e.mint(t, "reader", api.ScopeStreamsRead).Token
	writer := e.mint(t, "writer", api.ScopeStreamsWrite).Token
	id := e.openStream(t)
	path := api.StreamsPath + "/" + id.String()
	unknown := api.StreamsPath + "/" + rpctest.KeyFor(7).Public().String()
	x := func() io.Reader { return strings.NewReader("x") }
	e.checkRefusals(t, []refusal{
		{"no token", http.MethodPost, path, "", x(), http.StatusUnauthorized, api.CodeUnauthorized, "token", ""},
		{"reader posts", http.MethodPost, path, reader, x(), http.StatusForbidden, api.CodeNotAllowed, "POST /streams needs scope streams:write", ""},
		{"writer gets", http.MethodGet, path, writer, nil, http.StatusForbidden, api.CodeNotAllowed, "GET /streams needs scope streams:read", ""},
		{"PUT", http.MethodPut, path, testToken, x(), http.StatusMethodNotAllowed, api.CodeInvalidRequest, "POST bytes", "GET, POST"},
		{"malformed ID", http.MethodGet, api.StreamsPath + "/nope", testToken, nil, http.StatusBadRequest, api.CodeInvalidParams, "stream ID", ""},
		{"bad from", http.MethodGet, path + "?from=-3", testToken, nil, http.StatusBadRequest, api.CodeInvalidParams, `"from"`, ""},
		{"from not a number", http.MethodGet, path + "?from=x", testToken, nil, http.StatusBadRequest, api.CodeInvalidParams, "not a chunk index", ""},
		{"unknown stream watched", http.MethodGet, unknown, reader, nil, http.StatusServiceUnavailable, api.CodeUnavailable, "no carrier", ""},
		{"unknown stream posted", http.MethodPost, unknown, writer, x(), http.StatusNotFound, api.CodeNotFound, "not published here", ""},
		{"nothing posted to an unknown stream", http.MethodPost, unknown, writer, http.NoBody, http.StatusNotFound, api.CodeNotFound, "not published here", ""},
	})
	if st := e.node.StreamStats(); st.ReceivedBytes != 0 {
		t.Fatalf("refused requests wrote %d bytes", st.ReceivedBytes)
	}
}

// TestStreamWatchFails: a watch the node ends without End is an error
// for the client: a GET body cut short, a stream.end notification.
func TestStreamWatchFails(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.openStream(t)
	c := e.ws(t)
	sub := result[api.SubscribeResult](t, c.call(api.MethodStreamWatch, api.StreamWatchParams{ID: id})).Subscription
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+api.StreamsPath+"/"+id.String(), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	result[api.Empty](t, e.call(t, api.MethodStreamWrite, api.StreamWriteParams{ID: id, Data: []byte("only")}))
	c.chunk(sub)
	got := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "only" {
		t.Fatalf("GET read %q, %v", got, err)
	}
	e.node.DropStream(id)

	if b, err := io.ReadAll(resp.Body); len(b) != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("GET then read %q, %v; want io.ErrUnexpectedEOF", b, err)
	}
	m := c.read()
	var end api.EndNotification
	if err := json.Unmarshal(m.Params, &end); err != nil || m.Method != api.NotifyStreamEnd || end.Subscription != sub || end.Error == nil || end.Error.Code != api.CodeUnavailable {
		t.Fatalf("got %+v %s, want stream.end with code %d", m, m.Params, api.CodeUnavailable)
	}
}

// TestStreamWatcherGone: a GET client that goes away releases the node's
// watch.
func TestStreamWatcherGone(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.openStream(t)
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.ts.URL+api.StreamsPath+"/"+id.String(), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if n := e.node.StreamWatches(); n != 1 {
		t.Fatalf("%d node watches, want 1", n)
	}
	cancel()
	waitFor(t, "the node watch to be released", func() bool { return e.node.StreamWatches() == 0 })
}
