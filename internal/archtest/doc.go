// Package archtest holds no code, only a test: the dependency rules of
// docs/ARCHITECTURE.md, checked against what the packages import (feed
// pure, flitlink below the protocols, ebt and swarm siblings, only node
// wires, sdk and rpc/api free of libp2p and Badger, the CLI through the
// SDK, and the rest of the table in deps_test.go). A change that breaks a
// rule fails `go test ./...`: change the design first, then the rule.
//
// Nothing imports it.
package archtest
