package rpc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// Tokens is the store of app tokens the server accepts besides its admin
// token (package tokens keeps them in the node's home). Methods must be
// safe for concurrent use.
type Tokens interface {
	// Lookup returns the token whose secret is secret; false for an
	// unknown or revoked one.
	Lookup(secret string) (api.TokenInfo, bool)
	// Create mints a token with scopes (valid app scopes, checked by the
	// server) and label, and returns it with its secret.
	Create(label string, scopes []string) (api.NewToken, error)
	// List returns every token, oldest first.
	List() ([]api.TokenInfo, error)
	// Revoke forgets token id; an unknown id wraps api.ErrNotFound.
	Revoke(id string) error
}

// caller is whom a request was authenticated as: the admin token, or an
// app token with its scopes.
type caller struct {
	admin bool
	token api.TokenInfo // the app token, when !admin
}

// may reports whether the caller holds scope.
func (c caller) may(scope string) bool {
	return c.admin || (scope != api.ScopeAdmin && slices.Contains(c.token.Scopes, scope))
}

type callerKey struct{}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerOf returns the caller ServeHTTP stored in ctx; a context without
// one (a bug) yields a caller with no scope at all.
func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// bearer returns the token r carries: the Authorization header, or for a
// WebSocket upgrade without that header the query parameter token, since
// browsers cannot set headers on WebSocket requests.
func bearer(r *http.Request, ws bool) string {
	h := r.Header.Get("Authorization")
	if scheme, t, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(t)
	}
	if ws && h == "" {
		return r.URL.Query().Get("token")
	}
	return ""
}

// authenticate returns whom r's token belongs to. The admin token is
// compared in constant time; app tokens are looked up by their hash.
func (s *Server) authenticate(r *http.Request, ws bool) (caller, bool) {
	tok := bearer(r, ws)
	if tok == "" {
		return caller{}, false
	}
	got := sha256.Sum256([]byte(tok))
	if s.cfg.Token != "" && subtle.ConstantTimeCompare(got[:], s.token[:]) == 1 {
		return caller{admin: true}, true
	}
	if s.tokens == nil {
		return caller{}, false
	}
	t, ok := s.tokens.Lookup(tok)
	return caller{token: t}, ok
}

// authWS authenticates a WebSocket upgrade and returns the context of its
// connection: the server's, carrying the caller and, for an app token,
// cancelled when the token is revoked. release forgets the connection once
// it ended. Authentication and registration happen under authMu, so a
// connection cannot slip in after its token's revocation.
func (s *Server) authWS(r *http.Request) (ctx context.Context, release func(), ok bool) {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	c, ok := s.authenticate(r, true)
	if !ok {
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(withCaller(s.ctx, c))
	if c.admin {
		return ctx, cancel, true
	}
	id := c.token.ID
	key := &cancel
	if s.live[id] == nil {
		s.live[id] = make(map[*context.CancelFunc]struct{})
	}
	s.live[id][key] = struct{}{}
	return ctx, func() {
		cancel()
		s.authMu.Lock()
		defer s.authMu.Unlock()
		delete(s.live[id], key)
		if len(s.live[id]) == 0 {
			delete(s.live, id)
		}
	}, true
}

// revoke revokes token id and closes its open WebSocket connections.
func (s *Server) revoke(id string) error {
	s.authMu.Lock()
	defer s.authMu.Unlock()
	if err := s.tokens.Revoke(id); err != nil {
		return err
	}
	for cancel := range s.live[id] {
		(*cancel)()
	}
	delete(s.live, id)
	return nil
}

// errNoTokens answers token methods on a server without a token store.
var errNoTokens = fmt.Errorf("%w: this server has no token store", api.ErrUnavailable)

func tokenCreate(ctx context.Context, s *Server, _ *call, p api.TokenCreateParams) (any, error) {
	if s.tokens == nil {
		return nil, errNoTokens
	}
	if len(p.Scopes) == 0 {
		return nil, missing("scopes")
	}
	for _, sc := range p.Scopes {
		if !slices.Contains(api.AppScopes, sc) {
			return nil, api.NewError(api.CodeInvalidParams, "field \"scopes\": %q is not an app scope (%s)",
				truncate(sc), strings.Join(api.AppScopes, ", "))
		}
	}
	if len(p.Label) > api.MaxTokenLabel {
		return nil, api.NewError(api.CodeInvalidParams, "field \"label\": %d bytes, the limit is %d", len(p.Label), api.MaxTokenLabel)
	}
	slices.Sort(p.Scopes)
	return s.tokens.Create(p.Label, slices.Compact(p.Scopes))
}

func tokenList(ctx context.Context, s *Server) (any, error) {
	if s.tokens == nil {
		return api.TokensResult{Tokens: []api.TokenInfo{}}, nil
	}
	ts, err := s.tokens.List()
	if err != nil {
		return nil, err
	}
	return api.TokensResult{Tokens: orEmpty(ts)}, nil
}

func tokenRevoke(ctx context.Context, s *Server, _ *call, p api.TokenParams) (any, error) {
	if p.ID == "" {
		return nil, missing("id")
	}
	if s.tokens == nil {
		return nil, errNoTokens
	}
	if err := s.revoke(p.ID); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

// loginCode is a one-time code that LoginPath exchanges for an app token.
type loginCode struct {
	hash    [sha256.Size]byte // of the code; the code itself is not kept
	expires time.Time
}

func tokenLogin(ctx context.Context, s *Server) (any, error) {
	if s.tokens == nil {
		return nil, errNoTokens
	}
	var raw [16]byte
	rand.Read(raw[:])
	code := hex.EncodeToString(raw[:])
	lc := loginCode{hash: sha256.Sum256([]byte(code)), expires: time.Now().Add(api.LoginCodeTTL)}
	s.authMu.Lock()
	defer s.authMu.Unlock()
	s.logins = s.liveLoginsLocked()
	if len(s.logins) >= api.MaxLoginCodes {
		s.logins = s.logins[1:]
	}
	s.logins = append(s.logins, lc)
	return api.LoginCode{Code: code, Expires: lc.expires.UnixMilli()}, nil
}

// liveLoginsLocked returns s.logins without the expired codes.
func (s *Server) liveLoginsLocked() []loginCode {
	now := time.Now()
	return slices.DeleteFunc(s.logins, func(l loginCode) bool { return !now.Before(l.expires) })
}

// redeemLogin consumes a login code: true if it was valid, unused and not
// expired.
func (s *Server) redeemLogin(code string) bool {
	h := sha256.Sum256([]byte(code))
	s.authMu.Lock()
	defer s.authMu.Unlock()
	s.logins = s.liveLoginsLocked()
	for i, l := range s.logins {
		if subtle.ConstantTimeCompare(h[:], l.hash[:]) == 1 {
			s.logins = slices.Delete(s.logins, i, i+1)
			return true
		}
	}
	return false
}

// maxLoginBody bounds the body of a POST to LoginPath.
const maxLoginBody = 4 << 10

// serveLogin serves LoginPath: a valid login code buys an app token with
// api.AppScopes.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	data, ok := readPOST(w, r, maxLoginBody, "use POST")
	if !ok {
		return
	}
	var req api.LoginRequest
	if err := decodeParams(data, &req); err != nil {
		writeHTTPError(w, http.StatusBadRequest, api.CodeInvalidRequest, "reading login request: "+err.Error())
		return
	}
	if req.Code == "" || s.tokens == nil || !s.redeemLogin(req.Code) {
		writeHTTPError(w, http.StatusUnauthorized, api.CodeUnauthorized, "unknown, used or expired login code (run `contextd ui` for a new one)")
		return
	}
	tok, err := s.tokens.Create("browser login", api.AppScopes)
	if err != nil {
		s.log.Error("rpc: minting a browser token", "err", err)
		status, code := http.StatusInternalServerError, api.CodeInternal
		if errors.Is(err, api.ErrLimit) {
			status, code = http.StatusServiceUnavailable, api.CodeLimit
		}
		writeHTTPError(w, status, code, "minting a token: "+err.Error())
		return
	}
	s.log.Info("rpc: browser logged in", "token", tok.ID)
	out, _ := json.Marshal(tok)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out)
}
