// Package daemon builds the contextd binary and runs daemons as separate
// processes on 127.0.0.1, for the end-to-end tests and cxbench. It drives
// the real binary exactly as an operator would: `contextd init`, `contextd
// run`, and the JSON-RPC API through the SDK. Only cmd/ code and tests may
// import it.
package daemon
