// Package tokens keeps a node's app tokens in its home directory
// (HOME/tokens.json): bearer tokens for the RPC API limited to scopes (see
// api.AppScopes), each with an ID, a label and its creation time. Only the
// SHA-256 of a secret is stored; the secret is returned once, by Create.
//
// A Store implements rpc.Tokens. It is safe for concurrent use; every
// change rewrites the file atomically (a temporary file, synced, renamed)
// before it takes effect in memory. Only one process may use a home's
// Store at a time (the daemon).
package tokens
