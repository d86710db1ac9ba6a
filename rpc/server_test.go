package rpc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

var _ Node = (*rpctest.Node)(nil)

const testToken = "s3cret"

type testEnv struct {
	node *rpctest.Node
	srv  *Server
	ts   *httptest.Server
}

// newEnv serves a Server over httptest on 127.0.0.1.
func newEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	n := rpctest.NewNode()
	cfg.Node = n
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	cfg.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(cfg)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return &testEnv{node: n, srv: srv, ts: ts}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// post sends body to /rpc with token and returns the status and raw body.
func (e *testEnv) post(t *testing.T, token, body string) (int, []byte) {
	t.Helper()
	return e.postTo(t, api.Path, token, body)
}

// postTo posts a JSON body to path, with token if not empty.
func (e *testEnv) postTo(t *testing.T, path, token, body string) (int, []byte) {
	t.Helper()
	resp, b := e.send(t, http.MethodPost, path, token, "application/json", strings.NewReader(body))
	return resp.StatusCode, b
}

// call posts one request and decodes the response.
func (e *testEnv) call(t *testing.T, method string, params any) api.Response {
	t.Helper()
	p, _ := json.Marshal(params)
	status, b := e.post(t, testToken, fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":%q,"params":%s}`, method, p))
	if status != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", method, status, b)
	}
	return decodeResponse(t, b)
}

func decodeResponse(t *testing.T, b []byte) api.Response {
	t.Helper()
	var r api.Response
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response %q: %v", b, err)
	}
	if r.JSONRPC != "2.0" || (r.Error == nil) == (r.Result == nil) {
		t.Fatalf("not a JSON-RPC response: %s", b)
	}
	return r
}

func wantCode(t *testing.T, r api.Response, code api.Code, msgHas string) {
	t.Helper()
	if r.Error == nil {
		t.Fatalf("result %s, want error %d", r.Result, code)
	}
	if r.Error.Code != code || !strings.Contains(r.Error.Message, msgHas) {
		t.Fatalf("error %d %q, want %d containing %q", r.Error.Code, r.Error.Message, code, msgHas)
	}
}

func result[T any](t *testing.T, r api.Response) T {
	t.Helper()
	if r.Error != nil {
		t.Fatalf("error %v", r.Error)
	}
	var v T
	if err := json.Unmarshal(r.Result, &v); err != nil {
		t.Fatalf("result %s: %v", r.Result, err)
	}
	return v
}

func TestHTTPAuth(t *testing.T) {
	e := newEnv(t, Config{})
	body := `{"jsonrpc":"2.0","id":1,"method":"node.info"}`
	for _, tok := range []string{"", "wrong", testToken + "x"} {
		status, b := e.post(t, tok, body)
		if status != http.StatusUnauthorized {
			t.Fatalf("token %q: HTTP %d, want 401", tok, status)
		}
		wantCode(t, decodeResponse(t, b), api.CodeUnauthorized, "token")
	}
	// A query token is only for WebSocket upgrades.
	status, _ := e.post(t, "", body)
	if status != http.StatusUnauthorized {
		t.Fatalf("HTTP %d", status)
	}
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+api.Path+"?token="+testToken, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("query token on POST: HTTP %d, want 401", resp.StatusCode)
	}
	info := result[api.NodeInfo](t, e.call(t, api.MethodNodeInfo, nil))
	if info.ID != rpctest.KeyFor(0).Public() || info.Version != "test" {
		t.Fatalf("info %+v", info)
	}
}

func TestEmptyTokenRejectsAll(t *testing.T) {
	srv := New(Config{Node: rpctest.NewNode()})
	defer srv.Close()
	req := httptest.NewRequest(http.MethodPost, api.Path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"node.info"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer ")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("HTTP %d, want 401", rec.Code)
	}
}

func TestHTTPErrors(t *testing.T) {
	e := newEnv(t, Config{MaxRequestSize: 1 << 10})
	do := func(method, ctype, body string) (int, api.Response) {
		req, _ := http.NewRequest(method, e.ts.URL+api.Path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, decodeResponse(t, b)
	}
	status, r := do(http.MethodGet, "", "")
	if status != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d", status)
	}
	wantCode(t, r, api.CodeInvalidRequest, "POST")
	status, r = do(http.MethodPost, "text/plain", "{}")
	if status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: HTTP %d", status)
	}
	wantCode(t, r, api.CodeInvalidRequest, "Content-Type")
	status, r = do(http.MethodPost, "application/json; charset=utf-8", strings.Repeat(" ", 2<<10))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("big: HTTP %d", status)
	}
	wantCode(t, r, api.CodeTooLarge, "1024 bytes")
	// A notification gets no response.
	status, b := e.post(t, testToken, `{"jsonrpc":"2.0","method":"node.info"}`)
	if status != http.StatusNoContent || len(b) != 0 {
		t.Fatalf("notification: HTTP %d %q", status, b)
	}
}

func TestMalformedThenValid(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		body string
		code api.Code
		msg  string
	}{
		{`{"jsonrpc":"2.0","id":1,"method":`, api.CodeParseError, "JSON"},
		{"\xff", api.CodeParseError, "JSON"},
		{``, api.CodeParseError, "JSON"},
		{`[{"jsonrpc":"2.0","id":1,"method":"node.info"}]`, api.CodeInvalidRequest, "batch"},
		{`"node.info"`, api.CodeInvalidRequest, "object"},
		{`{"jsonrpc":"1.0","id":1,"method":"node.info"}`, api.CodeInvalidRequest, "2.0"},
		{`{"jsonrpc":"2.0","id":1}`, api.CodeInvalidRequest, "method"},
		{`{"jsonrpc":"2.0","id":{},"method":"node.info"}`, api.CodeInvalidRequest, "id"},
		{`{"jsonrpc":"2.0","id":1,"method":7}`, api.CodeInvalidRequest, "method"},
		{`{"jsonrpc":"2.0","id":1,"method":"no.such"}`, api.CodeMethodNotFound, `"no.such"`},
	} {
		status, b := e.post(t, testToken, tc.body)
		if status != http.StatusOK {
			t.Fatalf("%q: HTTP %d", tc.body, status)
		}
		wantCode(t, decodeResponse(t, b), tc.code, tc.msg)
		result[api.NodeInfo](t, e.call(t, api.MethodNodeInfo, nil))
	}
	// The id comes back as sent.
	_, b := e.post(t, testToken, `{"jsonrpc":"2.0","id":"abc","method":"ebt.progress"}`)
	if r := decodeResponse(t, b); string(r.ID) != `"abc"` {
		t.Fatalf("id %s", r.ID)
	}
}

func TestBadParams(t *testing.T) {
	e := newEnv(t, Config{})
	id := rpctest.KeyFor(1).Public().String()
	for _, tc := range []struct {
		method string
		params string
		msg    string
	}{
		{api.MethodFeedHead, `{"id":"zz"}`, `field "id"`},
		{api.MethodFeedHead, `{"id":5}`, `field "id"`},
		{api.MethodFeedHead, `{}`, `field "id" is required`},
		{api.MethodFeedHead, `null`, `field "id" is required`},
		{api.MethodFeedHead, `{"id":"` + id + `","idd":1}`, `unknown field "idd"`},
		{api.MethodFeedHead, `["` + id + `"]`, `object`},
		{api.MethodFeedGet, `{"id":"` + id + `","limit":5000}`, `field "limit"`},
		{api.MethodFeedGet, `{"id":"` + id + `","since":-1}`, `field "since"`},
		{api.MethodFeedPublish, `{"text":"a","body":"YQ=="}`, `not both`},
		{api.MethodFeedPublish, `{"type":"Bad Type","text":"a"}`, `field "type"`},
		{api.MethodFeedPublish, `{"body":"!!"}`, `field "body"`},
		{api.MethodNodeConnect, `{}`, `field "addr" is required`},
		{api.MethodNodeConnect, `{"addr":"bad"}`, `not a multiaddr`},
		{api.MethodGraphFollow, `{"id":""}`, `field "id"`},
		{api.MethodNodeInfo, `{"x":1}`, `unknown field "x"`},
	} {
		r := e.call(t, tc.method, json.RawMessage(tc.params))
		t.Logf("%s %s → %v", tc.method, tc.params, r.Error)
		wantCode(t, r, api.CodeInvalidParams, tc.msg)
	}
}

func TestPublishGetHead(t *testing.T) {
	e := newEnv(t, Config{})
	self := rpctest.KeyFor(0).Public()
	wantCode(t, e.call(t, api.MethodFeedHead, api.HeadParams{ID: self}), api.CodeUnknownFeed, "unknown feed")

	h1 := result[api.Head](t, e.call(t, api.MethodFeedPublish, api.PublishParams{Text: "hello"}))
	h2 := result[api.Head](t, e.call(t, api.MethodFeedPublish, api.PublishParams{Type: "bin", Body: []byte{0xff, 0}}))
	if h1.Seq != 1 || h2.Seq != 2 || h1.ID.IsZero() {
		t.Fatalf("heads %+v %+v", h1, h2)
	}
	if h := result[api.Head](t, e.call(t, api.MethodFeedHead, api.HeadParams{ID: self})); h != h2 {
		t.Fatalf("head %+v, want %+v", h, h2)
	}
	got := result[api.GetResult](t, e.call(t, api.MethodFeedGet, api.GetParams{ID: self}))
	if len(got.Entries) != 2 {
		t.Fatalf("%d entries", len(got.Entries))
	}
	a, b := got.Entries[0], got.Entries[1]
	if a.Type != "post" || a.Text != "hello" || string(a.Body) != "hello" || a.ID != h1.ID || !a.Prev.IsZero() || a.Author != self {
		t.Fatalf("entry 1 %+v", a)
	}
	if b.Type != "bin" || b.Text != "" || !bytes.Equal(b.Body, []byte{0xff, 0}) || b.Prev != h1.ID {
		t.Fatalf("entry 2 %+v", b)
	}
	if err := b.Feed().Validate(self, feed.Head{Seq: 1, ID: h1.ID}); err != nil || b.Feed().ID() != b.ID {
		t.Fatalf("rebuilt entry: %v", err)
	}
	got = result[api.GetResult](t, e.call(t, api.MethodFeedGet, api.GetParams{ID: self, Since: 1, Limit: 1}))
	if len(got.Entries) != 1 || got.Entries[0].Seq != 2 {
		t.Fatalf("since 1: %+v", got.Entries)
	}
	got = result[api.GetResult](t, e.call(t, api.MethodFeedGet, api.GetParams{ID: self, Since: 2}))
	if got.Entries == nil || len(got.Entries) != 0 {
		t.Fatalf("since 2: %+v", got.Entries)
	}
	// The raw JSON of an entry: IDs as text, body as base64.
	r := e.call(t, api.MethodFeedGet, api.GetParams{ID: self, Limit: 1})
	for _, want := range []string{`"author":"` + self.String(), `"id":"b`, `"body":"aGVsbG8="`, `"text":"hello"`, `"timestamp":`} {
		if !bytes.Contains(r.Result, []byte(want)) {
			t.Fatalf("result %s lacks %s", r.Result, want)
		}
	}
	if bytes.Contains(r.Result, []byte(`"prev"`)) {
		t.Fatalf("seq 1 has prev: %s", r.Result)
	}
}

func TestPublishTooLarge(t *testing.T) {
	e := newEnv(t, Config{})
	big := make([]byte, feed.MaxBodySize+1)
	wantCode(t, e.call(t, api.MethodFeedPublish, api.PublishParams{Body: big}), api.CodeTooLarge, "16385 bytes")
	wantCode(t, e.call(t, api.MethodFeedPublish, api.PublishParams{Text: strings.Repeat("\x01", feed.MaxBodySize+1)}), api.CodeTooLarge, "limit is 16384")
	result[api.Head](t, e.call(t, api.MethodFeedPublish, api.PublishParams{Text: strings.Repeat("\x01", feed.MaxBodySize)}))
}

func TestGetResultBounded(t *testing.T) {
	e := newEnv(t, Config{})
	body := bytes.Repeat([]byte{1}, feed.MaxBodySize)
	for range 40 {
		if _, err := e.node.Publish(context.Background(), "post", body); err != nil {
			t.Fatal(err)
		}
	}
	r := e.call(t, api.MethodFeedGet, api.GetParams{ID: rpctest.KeyFor(0).Public(), Limit: 1000})
	got := result[api.GetResult](t, r)
	if len(got.Entries) == 0 || len(got.Entries) == 40 || len(r.Result) > api.MaxResultSize {
		t.Fatalf("%d entries in %d bytes", len(got.Entries), len(r.Result))
	}
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code api.Code
	}{
		{fmt.Errorf("sign: %w", feed.ErrTooLarge), api.CodeTooLarge},
		{fmt.Errorf("x: %w", api.ErrUnknownFeed), api.CodeUnknownFeed},
		{feed.ErrBadType, api.CodeInvalidParams},
		{fmt.Errorf("append: %w", api.ErrForked), api.CodeForked},
		{context.DeadlineExceeded, api.CodeUnavailable},
		{api.NewError(api.CodeNotFound, "x"), api.CodeNotFound},
		{errors.New("disk on fire"), api.CodeInternal},
	} {
		e := toError(tc.err)
		if e.Code != tc.code || e.Message == "" {
			t.Errorf("%v → %+v, want code %d", tc.err, e, tc.code)
		}
		if s := tc.code.Sentinel(); s != nil && !errors.Is(e, s) {
			t.Errorf("%v does not match %v", e, s)
		}
	}
}

func TestGraphAndStatus(t *testing.T) {
	e := newEnv(t, Config{})
	a, b := rpctest.KeyFor(1).Public(), rpctest.KeyFor(2).Public()
	h := result[api.Head](t, e.call(t, api.MethodGraphFollow, api.ContactParams{ID: a}))
	if h.Seq != 1 {
		t.Fatalf("follow head %+v", h)
	}
	result[api.Head](t, e.call(t, api.MethodGraphBlock, api.ContactParams{ID: b}))
	g := result[api.Graph](t, e.call(t, api.MethodGraphList, nil))
	if len(g.Follows) != 1 || g.Follows[0] != a || len(g.Blocks) != 1 || g.Blocks[0] != b {
		t.Fatalf("graph %+v", g)
	}
	result[api.Head](t, e.call(t, api.MethodGraphUnfollow, api.ContactParams{ID: a}))
	h = result[api.Head](t, e.call(t, api.MethodGraphUnblock, api.ContactParams{ID: b}))
	if h.Seq != 4 {
		t.Fatalf("unblock head %+v", h)
	}
	r := e.call(t, api.MethodGraphList, nil)
	if string(r.Result) != `{"follows":[],"blocks":[]}` {
		t.Fatalf("graph %s", r.Result)
	}
	if p := result[api.Progress](t, e.call(t, api.MethodEBTProgress, nil)); p != (api.Progress{Start: 1, Current: 2, Target: 3}) {
		t.Fatalf("progress %+v", p)
	}
	fs := result[api.FeedsResult](t, e.call(t, api.MethodFeedList, nil)).Feeds
	if len(fs) != 1 || fs[0].ID != rpctest.KeyFor(0).Public() || fs[0].Local != 4 || fs[0].Best != 4 {
		t.Fatalf("feed.list %+v", fs)
	}
	if r := e.call(t, api.MethodEBTPeers, nil); string(r.Result) != `{"peers":[]}` {
		t.Fatalf("ebt.peers %s", r.Result)
	}
	if r := e.call(t, api.MethodNodePeers, nil); string(r.Result) != `{"peers":[]}` {
		t.Fatalf("node.peers %s", r.Result)
	}
	wantCode(t, e.call(t, api.MethodNodeConnect, api.ConnectParams{Addr: "/ip4/127.0.0.1/udp/1/quic-v1"}), api.CodeUnavailable, "dial")
}

func TestPanicRecovered(t *testing.T) {
	e := newEnv(t, Config{})
	e.node.SetPanic(true)
	wantCode(t, e.call(t, api.MethodNodeInfo, nil), api.CodeInternal, "node.info")
	e.node.SetPanic(false)
	result[api.NodeInfo](t, e.call(t, api.MethodNodeInfo, nil))
}

func TestSubscribeNeedsWebSocket(t *testing.T) {
	e := newEnv(t, Config{})
	wantCode(t, e.call(t, api.MethodFeedSubscribe, api.SubscribeParams{ID: rpctest.KeyFor(1).Public()}), api.CodeInvalidRequest, "WebSocket")
	wantCode(t, e.call(t, api.MethodFeedUnsubscribe, api.UnsubscribeParams{Subscription: "s1"}), api.CodeInvalidRequest, "WebSocket")
}

func TestClosedServer(t *testing.T) {
	e := newEnv(t, Config{})
	e.srv.Close()
	status, b := e.post(t, testToken, `{"jsonrpc":"2.0","id":1,"method":"node.info"}`)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("HTTP %d", status)
	}
	wantCode(t, decodeResponse(t, b), api.CodeUnavailable, "shutting down")
}

func TestEntryText(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		text string
	}{
		{nil, ""},
		{[]byte("héllo"), "héllo"},
		{[]byte{0xc3}, ""},
	} {
		e := api.FromFeed(&feed.Entry{Seq: 1, Type: "post", Body: tc.body})
		b, _ := json.Marshal(e)
		if e.Text != tc.text || !bytes.Contains(b, []byte(`"body":"`+base64.StdEncoding.EncodeToString(tc.body)+`"`)) {
			t.Errorf("%q: %s", tc.body, b)
		}
		if len(b) > e.EncodedSizeBound() {
			t.Errorf("%q: %d bytes over bound %d", tc.body, len(b), e.EncodedSizeBound())
		}
	}
}
