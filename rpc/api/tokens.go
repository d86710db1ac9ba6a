package api

import "time"

// Tokens. The admin token (HOME/rpc.token) may call every method. App
// tokens, minted with token.create, carry scopes: a call needs the scope
// its method names (see the method table in package rpc and
// docs/protocols/rpc.md), else it fails with CodeNotAllowed and changes
// nothing. App tokens are stored hashed; the secret is shown once.

// Scopes. Each method needs exactly one; ScopeAdmin is held by the admin
// token only and grants every method.
const (
	// ScopeFeedsRead: read feeds and subscribe to them; node.info.
	ScopeFeedsRead = "feeds:read"
	// ScopeFeedsWrite: publish to the node's own feed (feed.publish).
	ScopeFeedsWrite = "feeds:write"
	// ScopeContextsRead: list joined contexts, their members and history;
	// subscribe to them.
	ScopeContextsRead = "contexts:read"
	// ScopeContextsWrite: create, join and leave contexts, publish and send
	// to them.
	ScopeContextsWrite = "contexts:write"
	// ScopeStreamsRead: watch live streams (stream.watch, stream.unwatch,
	// GET on the stream endpoint); stream.stats.
	ScopeStreamsRead = "streams:read"
	// ScopeStreamsWrite: open, write and close live streams this node
	// publishes (stream.open, stream.write, stream.close, POST on the
	// stream endpoint).
	ScopeStreamsWrite = "streams:write"
	// ScopeAdmin: everything else: the social graph, objects (the
	// object.* methods and the object endpoints), peers, replication
	// status, context bans, tokens.
	ScopeAdmin = "admin"
)

// AppScopes are the scopes an app token may hold (everything but
// ScopeAdmin), in the order documented. A browser login gets all of them.
var AppScopes = []string{ScopeFeedsRead, ScopeFeedsWrite, ScopeContextsRead, ScopeContextsWrite, ScopeStreamsRead, ScopeStreamsWrite}

// Token methods (admin only).
const (
	MethodTokenCreate = "token.create" // TokenCreateParams → NewToken
	MethodTokenList   = "token.list"   // no params → TokensResult
	MethodTokenRevoke = "token.revoke" // TokenParams → Empty
	MethodTokenLogin  = "token.login"  // no params → LoginCode
)

// LoginPath is the HTTP path where a browser exchanges a login code for an
// app token: POST LoginRequest (application/json, no Authorization) →
// LoginResult, or 401 for an unknown, used or expired code.
const LoginPath = "/auth/login"

// Token limits.
const (
	// MaxTokenLabel bounds a token's label (bytes).
	MaxTokenLabel = 128
	// MaxTokens bounds the app tokens a node stores.
	MaxTokens = 1000
	// LoginCodeTTL is how long a login code stays valid.
	LoginCodeTTL = 5 * time.Minute
	// MaxLoginCodes bounds the login codes outstanding at once; minting
	// one more forgets the oldest.
	MaxLoginCodes = 16
)

// TokenInfo describes an app token; it never holds the secret.
type TokenInfo struct {
	ID      string   `json:"id"`
	Label   string   `json:"label,omitempty"`
	Scopes  []string `json:"scopes"`
	Created int64    `json:"created"` // Unix milliseconds
}

// TokenCreateParams are the params of token.create: at least one scope,
// each one of AppScopes; a label of at most MaxTokenLabel bytes.
type TokenCreateParams struct {
	Scopes []string `json:"scopes"`
	Label  string   `json:"label,omitempty"`
}

// NewToken is the result of token.create: the token's description and its
// secret, which the node does not keep and never shows again.
type NewToken struct {
	TokenInfo
	Token string `json:"token"`
}

// TokensResult is the result of token.list, oldest first.
type TokensResult struct {
	Tokens []TokenInfo `json:"tokens"`
}

// TokenParams name a token by ID (token.revoke).
type TokenParams struct {
	ID string `json:"id"`
}

// LoginCode is the result of token.login: a one-time code that LoginPath
// exchanges for an app token with AppScopes, valid until Expires (Unix
// milliseconds, LoginCodeTTL after minting).
type LoginCode struct {
	Code    string `json:"code"`
	Expires int64  `json:"expires"`
}

// LoginRequest is the body of a POST to LoginPath.
type LoginRequest struct {
	Code string `json:"code"`
}

// LoginResult answers a POST to LoginPath: a new app token with AppScopes,
// labelled "browser login".
type LoginResult = NewToken
