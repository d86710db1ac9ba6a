// Command cxbench runs contextd's benchmark workloads. Each workload starts
// what it measures on 127.0.0.1 (real daemon processes where the workload
// says so), prints progress to stderr and ends with one line of
// `key=value` pairs on stdout, the figure recorded in docs/BENCHMARKS.md.
//
//	go run ./cmd/cxbench repl --entries 100000 --size 200
package main
