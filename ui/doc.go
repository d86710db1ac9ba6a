// Package ui is the chat page the daemon serves on its RPC listener: plain
// HTML, JavaScript and CSS embedded in the binary (no build step). The page
// talks to the node only through the public JSON-RPC API (a WebSocket at
// /rpc?token=…), so static/app.js doubles as the example for app
// developers: login with a one-time code, calls, resumable subscriptions.
//
// Handler serves the files; it needs no authentication, since the files
// hold no data: the page logs in by exchanging the code `contextd ui` puts
// in its URL fragment at api.LoginPath for an app token. Handler is safe
// for concurrent use. Only cmd/contextd (and tests) import this package.
package ui
