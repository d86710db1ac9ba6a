// Command cxbench runs contextd's benchmark workloads. Each workload starts
// what it measures on 127.0.0.1 (real daemon processes where the workload
// says so) or simulates it (sim-ebt: ebt.Simulate under a virtual clock),
// prints progress to stderr and ends with one line of `key=value` pairs on
// stdout, the figure recorded in docs/BENCHMARKS.md.
//
//	go run ./cmd/cxbench repl --entries 100000 --size 200
//	go run ./cmd/cxbench sim-ebt --nodes 100 --extra-edges 100 --authors 10 --msgs 20 --live 5 --seeds 200
package main
