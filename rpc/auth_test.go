package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
	"github.com/contextd/contextd/tokens"
)

// newTokenEnv is newEnv with a token store in a temp dir.
func newTokenEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	ts, err := tokens.Open(filepath.Join(t.TempDir(), tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tokens = ts
	return newEnv(t, cfg)
}

// callAs posts one request with token and decodes the response.
func (e *testEnv) callAs(t *testing.T, token, method string, params any) api.Response {
	t.Helper()
	p, _ := json.Marshal(params)
	status, b := e.post(t, token, fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":%q,"params":%s}`, method, p))
	if status != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", method, status, b)
	}
	return decodeResponse(t, b)
}

// mint creates an app token through the admin token.
func (e *testEnv) mint(t *testing.T, label string, scopes ...string) api.NewToken {
	t.Helper()
	return result[api.NewToken](t, e.call(t, api.MethodTokenCreate, api.TokenCreateParams{Label: label, Scopes: scopes}))
}

// state is what an admin sees of the node and its tokens, to check that a
// refused call changed nothing.
func (e *testEnv) state(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, m := range []string{api.MethodFeedList, api.MethodGraphList, api.MethodObjectList, api.MethodContextList, api.MethodTokenList, api.MethodStreamStats} {
		out, _ := json.Marshal(e.call(t, m, nil))
		b.Write(out)
	}
	return b.String()
}

func TestEveryMethodHasAScope(t *testing.T) {
	known := append(slices.Clone(api.AppScopes), api.ScopeAdmin)
	for name, m := range methods {
		if !slices.Contains(known, m.scope) {
			t.Errorf("method %s has scope %q", name, m.scope)
		}
	}
	// What an app token must never do.
	for _, name := range []string{
		api.MethodGraphFollow, api.MethodGraphUnfollow, api.MethodGraphBlock, api.MethodGraphUnblock,
		api.MethodObjectPut, api.MethodObjectGet, api.MethodObjectRm, api.MethodNodeConnect, api.MethodNodeStorage,
		api.MethodContextBan, api.MethodContextUnban,
		api.MethodTokenCreate, api.MethodTokenList, api.MethodTokenRevoke, api.MethodTokenLogin,
	} {
		if methods[name].scope != api.ScopeAdmin {
			t.Errorf("method %s has scope %q, want admin", name, methods[name].scope)
		}
	}
}

// TestScopes calls every method with app tokens of every single scope (and
// one with all app scopes): a call outside the token's scope gets
// CodeNotAllowed and changes nothing; one inside it is not refused.
func TestScopes(t *testing.T) {
	e := newTokenEnv(t, Config{})
	ctxID := result[api.Context](t, e.call(t, api.MethodContextCreate, api.ContextCreateParams{Name: "room"})).ID
	other := rpctest.KeyFor(1).Public()
	file := filepath.Join(t.TempDir(), "f")
	objID, err := e.node.AddObject([]byte("object"))
	if err != nil {
		t.Fatal(err)
	}
	obj := api.ObjectPutResult{CID: objID.String()}
	victim := e.mint(t, "victim", api.ScopeFeedsRead)
	stream, err := e.node.OpenStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	// Valid params for every method that changes something, so that a
	// missing scope check would show in the state.
	params := map[string]any{
		api.MethodNodeConnect:     api.ConnectParams{Addr: "/ip4/127.0.0.1/udp/9/quic-v1/p2p/" + other.String()},
		api.MethodFeedPublish:     api.PublishParams{Text: "hi"},
		api.MethodFeedHead:        api.HeadParams{ID: other},
		api.MethodFeedGet:         api.GetParams{ID: other},
		api.MethodFeedSubscribe:   api.SubscribeParams{ID: other},
		api.MethodGraphFollow:     api.ContactParams{ID: other},
		api.MethodGraphUnfollow:   api.UnfollowParams{ID: other, Forget: true},
		api.MethodGraphBlock:      api.ContactParams{ID: other},
		api.MethodGraphUnblock:    api.ContactParams{ID: other},
		api.MethodObjectPut:       api.ObjectPutParams{Path: file},
		api.MethodObjectGet:       api.ObjectGetParams{CID: obj.CID},
		api.MethodObjectStat:      api.ObjectParams{CID: obj.CID},
		api.MethodObjectPin:       api.ObjectParams{CID: obj.CID},
		api.MethodObjectUnpin:     api.ObjectParams{CID: obj.CID},
		api.MethodObjectProviders: api.ObjectParams{CID: obj.CID},
		api.MethodObjectRm:        api.ObjectRmParams{CID: obj.CID, Force: true},
		api.MethodContextCreate:   api.ContextCreateParams{Name: "another"},
		api.MethodContextJoin:     api.ContextParams{ID: other},
		api.MethodContextLeave:    api.ContextParams{ID: ctxID},
		api.MethodContextMembers:  api.ContextParams{ID: ctxID},
		api.MethodContextPublish:  api.ContextPublishParams{ID: ctxID, Text: "hi"},
		api.MethodContextSend:     api.ContextPublishParams{ID: ctxID, Text: "hi"},
		api.MethodContextHistory:  api.HistoryParams{ID: ctxID},
		api.MethodContextBan:      api.BanParams{ID: ctxID, Author: other},
		api.MethodContextUnban:    api.BanParams{ID: ctxID, Author: other},
		api.MethodTokenCreate:     api.TokenCreateParams{Scopes: []string{api.ScopeFeedsRead}},
		api.MethodTokenRevoke:     api.TokenParams{ID: victim.ID},
		api.MethodStreamWrite:     api.StreamWriteParams{ID: stream, Data: []byte("live")},
		api.MethodStreamClose:     api.StreamIDParams{ID: stream},
		api.MethodStreamWatch:     api.StreamWatchParams{ID: stream},
	}
	holders := map[string][]string{"all app scopes": api.AppScopes}
	for _, sc := range api.AppScopes {
		holders[sc] = []string{sc}
	}
	toks := map[string]string{}
	for name, scopes := range holders {
		toks[name] = e.mint(t, name, scopes...).Token
	}

	names := slices.Sorted(maps.Keys(methods))
	before := e.state(t)
	for _, holder := range slices.Sorted(maps.Keys(holders)) {
		for _, name := range names {
			if slices.Contains(holders[holder], methods[name].scope) {
				continue
			}
			r := e.callAs(t, toks[holder], name, params[name])
			wantCode(t, r, api.CodeNotAllowed, fmt.Sprintf("not allowed: method %s needs scope %s", name, methods[name].scope))
		}
	}
	if after := e.state(t); after != before {
		t.Fatalf("refused calls changed the state:\nbefore %s\nafter  %s", before, after)
	}
	for _, holder := range slices.Sorted(maps.Keys(holders)) {
		for _, name := range names {
			if !slices.Contains(holders[holder], methods[name].scope) {
				continue
			}
			if r := e.callAs(t, toks[holder], name, params[name]); refusedByScope(r) {
				t.Errorf("%s with a %s token: %v", name, holder, r.Error)
			}
		}
	}
	// The admin token may call everything.
	for _, name := range names {
		if r := e.call(t, name, params[name]); refusedByScope(r) {
			t.Errorf("%s with the admin token: %v", name, r.Error)
		}
	}
}

// refusedByScope reports whether r is a refusal for want of a scope (the
// node refuses other things with the same code: object.put's path here).
func refusedByScope(r api.Response) bool {
	return r.Error != nil && r.Error.Code == api.CodeNotAllowed && strings.Contains(r.Error.Message, "needs scope")
}

func TestTokenLifecycle(t *testing.T) {
	e := newTokenEnv(t, Config{})
	app := e.mint(t, "chat", api.ScopeContextsWrite, api.ScopeFeedsRead, api.ScopeContextsWrite)
	if !slices.Equal(app.Scopes, []string{api.ScopeContextsWrite, api.ScopeFeedsRead}) || app.Label != "chat" || len(app.Token) < 32 {
		t.Fatalf("token.create: %+v", app)
	}
	list := result[api.TokensResult](t, e.call(t, api.MethodTokenList, nil))
	if len(list.Tokens) != 1 || list.Tokens[0].ID != app.ID || list.Tokens[0].Created != app.Created {
		t.Fatalf("token.list: %+v", list)
	}
	if raw, _ := json.Marshal(e.call(t, api.MethodTokenList, nil)); strings.Contains(string(raw), app.Token) {
		t.Fatalf("token.list shows the secret: %s", raw)
	}
	for _, p := range []api.TokenCreateParams{
		{},
		{Scopes: []string{api.ScopeAdmin}},
		{Scopes: []string{"feeds:everything"}},
		{Scopes: []string{api.ScopeFeedsRead}, Label: strings.Repeat("x", api.MaxTokenLabel+1)},
	} {
		wantCode(t, e.call(t, api.MethodTokenCreate, p), api.CodeInvalidParams, "")
	}
	wantCode(t, e.call(t, api.MethodTokenRevoke, api.TokenParams{ID: "nope"}), api.CodeNotFound, "nope")

	// The app token works over POST and over a WebSocket (query token).
	if r := e.callAs(t, app.Token, api.MethodNodeInfo, nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	ws, _, err := e.dialWS(t, "?token="+app.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.request(api.MethodGraphFollow, api.ContactParams{ID: rpctest.KeyFor(1).Public()})
	wantCode(t, ws.read().Response, api.CodeNotAllowed, "needs scope admin")

	// Revoked: new requests get 401, and the open WebSocket is closed.
	result[api.Empty](t, e.call(t, api.MethodTokenRevoke, api.TokenParams{ID: app.ID}))
	status, b := e.post(t, app.Token, `{"jsonrpc":"2.0","id":1,"method":"node.info"}`)
	if status != http.StatusUnauthorized {
		t.Fatalf("revoked token: HTTP %d %s", status, b)
	}
	wantCode(t, decodeResponse(t, b), api.CodeUnauthorized, "token")
	if _, resp, err := e.dialWS(t, "?token="+app.Token, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("WebSocket with a revoked token: %v, %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := ws.c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("the revoked token's WebSocket is still open: %v", err)
	}
	if got := result[api.TokensResult](t, e.call(t, api.MethodTokenList, nil)); len(got.Tokens) != 0 {
		t.Fatalf("token.list after revoke: %+v", got)
	}
}

// login posts a login code to api.LoginPath.
func (e *testEnv) login(t *testing.T, code string) (int, []byte) {
	t.Helper()
	body, _ := json.Marshal(api.LoginRequest{Code: code})
	return e.postTo(t, api.LoginPath, "", string(body))
}

func TestLogin(t *testing.T) {
	e := newTokenEnv(t, Config{})
	lc := result[api.LoginCode](t, e.call(t, api.MethodTokenLogin, nil))
	if lc.Code == "" || lc.Expires <= time.Now().UnixMilli() {
		t.Fatalf("token.login: %+v", lc)
	}
	status, b := e.login(t, lc.Code)
	if status != http.StatusOK {
		t.Fatalf("login: HTTP %d %s", status, b)
	}
	var tok api.LoginResult
	if err := json.Unmarshal(b, &tok); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tok.Scopes, api.AppScopes) || tok.Token == "" {
		t.Fatalf("login gave %+v", tok)
	}
	if r := e.callAs(t, tok.Token, api.MethodContextList, nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	wantCode(t, e.callAs(t, tok.Token, api.MethodTokenLogin, nil), api.CodeNotAllowed, "needs scope admin")

	// Once only; unknown codes and malformed requests are refused.
	for _, code := range []string{lc.Code, "", "0123"} {
		if status, b := e.login(t, code); status != http.StatusUnauthorized {
			t.Fatalf("login with %q: HTTP %d %s", code, status, b)
		}
	}
	if status, b := e.login(t, strings.Repeat("a", maxLoginBody)); status != http.StatusRequestEntityTooLarge {
		t.Fatalf("login with an oversized body: HTTP %d %s", status, b)
	}
	resp, err := e.ts.Client().Post(e.ts.URL+api.LoginPath, "text/plain", strings.NewReader(`{"code":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain login: HTTP %d", resp.StatusCode)
	}
	resp, err = e.ts.Client().Get(e.ts.URL + api.LoginPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET login: HTTP %d", resp.StatusCode)
	}
}

// TestLoginCodeExpiry: a code is good for api.LoginCodeTTL, and minting
// more than api.MaxLoginCodes forgets the oldest.
func TestLoginCodeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts, err := tokens.Open(filepath.Join(t.TempDir(), tokens.FileName))
		if err != nil {
			t.Fatal(err)
		}
		s := New(Config{Node: rpctest.NewNode(), Token: testToken, Tokens: ts})
		defer s.Close()
		mint := func() string {
			lc, err := tokenLogin(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			return lc.(api.LoginCode).Code
		}
		early := mint()
		time.Sleep(api.LoginCodeTTL - time.Second)
		late := mint()
		time.Sleep(time.Second)
		if s.redeemLogin(early) {
			t.Fatal("an expired code was accepted")
		}
		if !s.redeemLogin(late) {
			t.Fatal("a fresh code was refused")
		}
		codes := make([]string, api.MaxLoginCodes+1)
		for i := range codes {
			codes[i] = mint()
		}
		if s.redeemLogin(codes[0]) {
			t.Fatal("the oldest code survived minting past the limit")
		}
		for _, c := range codes[1:] {
			if !s.redeemLogin(c) {
				t.Fatal("a code within the limit was refused")
			}
		}
	})
}

func TestPages(t *testing.T) {
	e := newEnv(t, Config{})
	if resp, err := e.ts.Client().Get(e.ts.URL + "/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET / without pages: %v %v", resp, err)
	}
	e = newEnv(t, Config{Pages: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "page "+r.URL.Path)
	})})
	resp, err := e.ts.Client().Get(e.ts.URL + "/app.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "page /app.js" {
		t.Fatalf("GET /app.js: %q", b)
	}
	// The RPC path is still the RPC's, token and all.
	if status, _ := e.post(t, "", `{"jsonrpc":"2.0","id":1,"method":"node.info"}`); status != http.StatusUnauthorized {
		t.Fatalf("POST /rpc without a token: HTTP %d", status)
	}
}
