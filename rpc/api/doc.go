// Package api is the contract between contextd's JSON-RPC server (package
// rpc) and its clients (package sdk, browsers, other languages): the method
// names, the params and result types of every method, the notification
// types, the limits a client can rely on, and the error codes with the
// sentinel errors they stand for.
//
// Every ID travels as text: feed and node IDs (feed.ID) as libp2p peer ID
// strings, entry IDs (feed.Hash) as CIDv1 strings, byte bodies as standard
// base64. The wire protocol is specified in docs/protocols/rpc.md.
//
// The package holds only types, constants and pure functions; it is safe
// for concurrent use. It imports only the standard library and feed, so any
// client may import it without pulling in libp2p or Badger (a test in sdk
// guards that).
package api
