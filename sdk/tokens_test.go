package sdk

import (
	"errors"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
	"github.com/contextd/contextd/tokens"
)

func TestTokens(t *testing.T) {
	store, err := tokens.Open(filepath.Join(t.TempDir(), tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.New(rpc.Config{Node: rpctest.NewNode(), Token: testToken, Tokens: store, Logger: logger(t)})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	e := &env{addr: strings.TrimPrefix(ts.URL, "http://")}
	ctx := ctxT(t)
	admin := e.dial(t, Config{})

	tok, err := admin.CreateToken(ctx, "bot", []string{api.ScopeContextsRead})
	if err != nil {
		t.Fatal(err)
	}
	list, err := admin.Tokens(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || !slices.Equal(list[0].Scopes, []string{api.ScopeContextsRead}) {
		t.Fatalf("Tokens: %+v, %v", list, err)
	}
	if lc, err := admin.LoginCode(ctx); err != nil || lc.Code == "" {
		t.Fatalf("LoginCode: %+v, %v", lc, err)
	}

	app := e.dial(t, Config{Token: tok.Token})
	if _, err := app.Follow(ctx, rpctest.KeyFor(1).Public()); !errors.Is(err, api.ErrNotAllowed) {
		t.Fatalf("Follow with an app token: %v", err)
	}
	if _, err := app.CreateToken(ctx, "", api.AppScopes); !errors.Is(err, api.ErrNotAllowed) {
		t.Fatalf("CreateToken with an app token: %v", err)
	}

	sub, err := app.SubscribeContext(ctx, rpctest.KeyFor(2).Public(), ContextOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	// The daemon closes the app's connection; redialling gets 401, which
	// ends the Client instead of redialling forever.
	if _, err := sub.Next(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("subscription after the token was revoked: %v", err)
	}
	if _, err := app.Contexts(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("call after the token was revoked: %v", err)
	}
	if err := admin.RevokeToken(ctx, tok.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("second RevokeToken: %v", err)
	}
	if _, err := DialConfig(ctx, Config{Addr: e.addr, Token: tok.Token}); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("dial with a revoked token: %v", err)
	}
}
