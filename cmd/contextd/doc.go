// Command contextd is the contextd daemon and its operator CLI.
//
// `contextd run` runs the daemon in the foreground; `contextd doctor`
// checks a home without it (the store read-only, through store.Verify);
// every other subcommand talks to a running daemon through the Go SDK
// (package sdk) over the JSON-RPC API, finding it through the home
// directory's rpc.addr and rpc.token files. The command holds no business
// logic: it parses flags, calls node (run, init, doctor), store (doctor)
// or sdk (everything else), and prints.
package main
