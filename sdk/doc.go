// Package sdk is the Go client of contextd's JSON-RPC API: Dial a daemon,
// call its methods with typed functions (Info, Publish, Get, Follow, ...),
// and Subscribe to feeds. PutObject and GetObject stream objects over the
// daemon's HTTP object endpoints beside the WebSocket, each request on its
// own, so neither the app nor the daemon holds an object in memory.
// Live streams go the same way: PublishStream pipes bytes into a stream,
// WatchStream reads its verified bytes; SubscribeStream delivers them as
// indexed chunks over the WebSocket.
//
// A Client keeps one WebSocket connection. When it drops, the Client
// redials with exponential backoff; calls made meanwhile wait for the new
// connection (bounded by their ctx), and a call whose connection dropped
// before its answer fails with ErrDisconnected, since it may or may not
// have taken effect. Server errors are *Error, which carries the JSON-RPC
// code and matches the api sentinels with errors.Is.
//
// A Subscription delivers a feed's entries through Next in strict seq
// order with no gaps and no duplicates. It keeps its cursor (the last seq
// it queued) and resubscribes from it after a reconnection, or after its
// bounded buffer overflowed because the reader fell behind, so neither a
// dropped connection nor a slow reader loses or repeats an entry, and
// memory stays bounded.
//
// A Client and its methods are safe for concurrent use; each Subscription's
// Next is meant for one goroutine. Close waits for every goroutine the
// Client started.
//
// sdk imports only rpc/api, feed, the standard library and
// github.com/coder/websocket, never libp2p or Badger (the dependency rules'
// test, internal/archtest, guards that), so apps can embed it cheaply.
package sdk
