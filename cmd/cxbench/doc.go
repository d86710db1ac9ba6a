// Command cxbench runs contextd's benchmark workloads. Each workload starts
// what it measures on 127.0.0.1 (real daemon processes where the workload
// says so) or simulates it (sim-ebt: ebt.Simulate under a virtual clock),
// prints progress to stderr and ends with one line of `key=value` pairs on
// stdout, the figure recorded in docs/BENCHMARKS.md. The quic and swarm
// workloads also report cpu_secs, the CPU time their processes used while
// the clock ran (read from /proc, so they run on Linux only): on a shared
// host it varies less than the elapsed time. swarm --unmanaged turns the
// daemons' bulk controller off, for an A/B of what it costs on loopback.
//
//	go run ./cmd/cxbench quic --bytes 268435456
//	go run ./cmd/cxbench swarm --bytes 268435456 --seeders 1
//	go run ./cmd/cxbench repl --entries 100000 --size 200
//	go run ./cmd/cxbench sim-ebt --nodes 100 --extra-edges 100 --authors 10 --msgs 20 --live 5 --seeds 200
//	go run ./cmd/cxbench ctx --members 10 --rate 50 --msgs 1000
//	go run ./cmd/cxbench sim-ctx --members 1000 --latency 100ms --degree 16 --msgs 30 --rate 2 --dilate 10 --wide
//	go run ./cmd/cxbench chaos --nodes 10 --minutes 3 --seed 1
//	go run ./cmd/cxbench flood
//	go run ./cmd/cxbench failover
//	go run ./cmd/cxbench qos
//
// ctx runs contextd daemons in one context and, in the same run, bare
// go-libp2p-pubsub peer processes on the same graph as the baseline;
// sim-ctx simulates a large context in one process over go-libp2p's
// mocknet, with link delays applied per write and time dilated to keep
// CPU starvation out of the latencies (--wide: the mesh of a context
// created wide). chaos runs daemons under kill -9, restarts and link cuts
// and counts what was acknowledged but lost; flood points a hostile
// process at a daemon while honest peers sync and chat through it.
// failover (root) joins two daemons by two veth paths between network
// namespaces of its own (private addresses 10.77.0.0/16 that exist only
// there), cuts the path in use mid-sync and mid-fetch and kills and
// restarts one daemon, and times the gaps in delivery. qos (root) runs
// two daemons in a network namespace whose loopback is a 100 Mbit/s tbf
// with a 50 ms queue and measures control-circuit round trips while one
// gets a large object from the other, without and with flitlink's bulk
// controller; it prints the unmanaged line before the final one.
package main
