package sdk

import (
	"context"

	"github.com/contextd/contextd/rpc/api"
)

// Token calls: they need the admin token (HOME/rpc.token).

// CreateToken mints an app token with scopes (api.AppScopes) and label
// (token.create). The secret, in the result's Token, is shown only once.
func (c *Client) CreateToken(ctx context.Context, label string, scopes []string) (api.NewToken, error) {
	var r api.NewToken
	err := c.Call(ctx, api.MethodTokenCreate, api.TokenCreateParams{Label: label, Scopes: scopes}, &r)
	return r, err
}

// Tokens lists the app tokens, oldest first (token.list).
func (c *Client) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var r api.TokensResult
	err := c.Call(ctx, api.MethodTokenList, nil, &r)
	return r.Tokens, err
}

// RevokeToken revokes app token id (token.revoke): its requests get HTTP
// 401 from then on and its open WebSockets are closed. An unknown id
// matches api.ErrNotFound.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Call(ctx, api.MethodTokenRevoke, api.TokenParams{ID: id}, nil)
}

// LoginCode mints a one-time code that a browser exchanges at
// api.LoginPath for an app token with api.AppScopes (token.login).
func (c *Client) LoginCode(ctx context.Context) (api.LoginCode, error) {
	var r api.LoginCode
	err := c.Call(ctx, api.MethodTokenLogin, nil, &r)
	return r, err
}
