// Package rpctest provides an in-memory rpc.Node for tests of the RPC
// server, the SDK and the CLI: real signed feeds kept in maps, Watch
// channels, a contact graph, objects, contexts and live streams delivered
// within the process. It imports only feed and rpc/api and is meant
// for tests only.
package rpctest
