package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// workload is one benchmark: it parses its own flags and returns the final
// key=value line.
type workload struct {
	usage string
	run   func(ctx context.Context, args []string) (string, error)
}

var workloads = map[string]workload{
	"quic":    {"quic --bytes N: raw quic-go baseline; one stream over loopback to a second process, N bytes one way", runQUIC},
	"repl":    {"repl --entries N --size B [--feeds F]: two daemon processes; the second follows and syncs F feeds of N entries held by the first", runRepl},
	"swarm":   {"swarm --bytes N --seeders K: K seeder daemons hold a random object of N bytes; one more daemon gets it into its store, timed, then writes it to a file (out_secs)", runSwarm},
	"ctx":     {"ctx --members N --rate R [--msgs M] [--degree D]: N daemon processes in one context on a random graph publish M messages at R/s in all; delivery latency at every other member's subscriber, and the same with bare go-libp2p-pubsub processes (base_)", runCtx},
	"sim-ctx": {"sim-ctx --members N --latency L --degree D --msgs M: a context of N in-process gossipsub hosts on mocknet links of latency L; delivery latency and delivered %, and default gossipsub on the same graph (base_)", runSimCtx},
	"chaos":   {"chaos --nodes N --minutes M [--seed S]: N daemon processes in a random sparse graph publish feed entries and context messages under kill -9 + restart and link cuts; then, quiet, lost acknowledged publishes and stuck feeds", runChaos},
	"flood":   {"flood: a hostile process floods a daemon (notes, unrequested chunks, oversized frames, gossip spam, RPC connections) while an honest peer syncs 10,000 entries from it and a context delivers", runFlood},
	"live":    {"live --viewers N --rate-kbps R [--seconds S]: a publisher daemon and N viewer daemons (3 linked to the publisher, the others to 2 earlier viewers); records piped into a live stream at R kbit/s, watched at the live edge through relays: latency, stalls, lost records, the publisher's share of the upload", runLive},
	"sim-ebt": {"sim-ebt --nodes N --extra-edges E --authors A --msgs M --live L --seeds S [--kill-fraction F]: the EBT core on a simulated network under a virtual clock", runSimEBT},

	"qos":      {"qos [--bytes N] [--warm D]: root; two daemons in a network namespace whose loopback is a 100 Mbit/s tbf with a 50 ms queue; A gets an object from B while pinging it on a control circuit every 5 ms: control latency behind bulk, without the bulk controller (first line) and with it (final line)", runQoS},
	"failover": {"failover [--rate R] [--bytes N]: root; two daemons in network namespaces joined by two paths; the path in use is cut mid-sync and mid-fetch, then the peer is killed and restarted: gaps in delivery to a subscriber, duplicates, data intact", runFailover},
}

func main() {
	if len(os.Args) < 2 || workloads[os.Args[1]].run == nil {
		fmt.Fprintln(os.Stderr, "usage: cxbench WORKLOAD [flags]\nworkloads:")
		names := make([]string, 0, len(workloads))
		for n := range workloads {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintln(os.Stderr, "  "+workloads[n].usage)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	line, err := workloads[os.Args[1]].run(ctx, os.Args[2:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cxbench:", err)
		os.Exit(1)
	}
	fmt.Println(line)
}
