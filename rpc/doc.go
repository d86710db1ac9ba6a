// Package rpc is contextd's JSON-RPC 2.0 server: one method table (see
// methods.go) served at /rpc over HTTP POST (one request per POST) and over
// WebSocket on the same path, where feed.subscribe streams entries as
// feed.entry notifications and context.subscribe streams a context's
// messages (context.message) and, if asked, its datagrams
// (context.datagram); both kinds share one pump (ws.go). The wire protocol is docs/protocols/rpc.md; the
// types are in rpc/api.
//
// Beside /rpc, objects travel as bytes (objects.go): POST /objects stores
// the body as an object, GET /objects/CID streams one, each authenticated
// like /rpc and needing the scope of the method it stands for (object.put,
// object.get); at most Config.MaxObjectStreams run at once, and neither
// end holds an object in memory. Live streams travel likewise (stream.go):
// POST /streams/ID writes the body to a stream as it arrives, GET
// /streams/ID streams its verified bytes until its end; stream.watch
// delivers the same chunks as stream.chunk notifications, forwarded from
// the node's watch by a pump of their own.
//
// Handlers are thin: decode the params, call the Node, encode the result,
// map the error to a code with errors.Is (see api.CodeOf). rpc declares the
// Node interface it needs and never imports package node; node builds a
// Server with New and runs it with Serve, or mounts it as an http.Handler.
//
// Every request is authenticated with a bearer token: the admin token
// (Config.Token), which may call every method, or an app token from
// Config.Tokens, which may call only the methods whose scope it holds (each
// entry of the method table names its scope; others get api.CodeNotAllowed
// before the handler runs). Revoking an app token closes its WebSockets.
// The server also serves api.LoginPath, where a one-time code from
// token.login buys a browser an app token, and passes every other path to
// Config.Pages (the chat page) without authentication. Everything a client
// sends is bounded: request size, WebSocket message size, concurrent calls
// and subscriptions per connection, WebSocket connections per server. A
// subscription reads the node's store by cursor and writes one message at a
// time, so a slow client holds at most one message per subscription in
// server memory; a client that stops reading is dropped after WriteTimeout.
// A panicking handler answers -32603 and the server keeps serving.
//
// Ordering: on one WebSocket, the response to feed.subscribe,
// context.subscribe or stream.watch is written before its first
// notification; a feed subscription's entries come in strict seq order, a
// context subscription's messages in cursor order, without gaps or
// duplicates, a stream watch's chunks in index order (gaps only where the
// node lost chunks); after the response to an unsubscribe (or unwatch) no
// notification of that subscription follows. Datagrams are best effort. Responses
// to concurrent calls on one connection may come in any order.
//
// A Server is safe for concurrent use. Close cancels every call and
// connection and waits for all goroutines the Server started.
package rpc
