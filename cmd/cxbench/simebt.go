package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/store"
)

// runSimEBT runs ebt.Simulate over seeds 1..S and sums the runs.
func runSimEBT(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("sim-ebt", flag.ContinueOnError)
	nodes := fs.Int("nodes", 10, "nodes")
	extra := fs.Int("extra-edges", -1, "links added to the random spanning tree (-1 = as many as nodes)")
	authors := fs.Int("authors", 10, "nodes that publish; every node follows them")
	msgs := fs.Int("msgs", 20, "history entries per author, published before connecting")
	live := fs.Int("live", 5, "live entries per author, published after the history phase")
	seeds := fs.Int("seeds", 10, "runs, with seeds 1..N")
	kill := fs.Float64("kill-fraction", 0, "share of the nodes killed at once during the history phase")
	minLat := fs.Duration("min-latency", 5*time.Millisecond, "shortest one-way link latency")
	maxLat := fs.Duration("max-latency", 50*time.Millisecond, "longest one-way link latency")
	parallel := fs.Int("parallel", 1, "runs at once")
	verbose := fs.Bool("v", false, "print each run")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *extra < 0 {
		*extra = *nodes
	}
	if *seeds < 1 || *parallel < 1 || *minLat <= 0 || *maxLat < *minLat {
		return "", fmt.Errorf("need --seeds ≥ 1, --parallel ≥ 1 and 0 < --min-latency ≤ --max-latency")
	}
	cfg := ebt.SimConfig{
		Nodes:        *nodes,
		ExtraEdges:   *extra,
		Authors:      *authors,
		History:      *msgs,
		Live:         *live,
		KillFraction: *kill,
		MinLatency:   *minLat,
		MaxLatency:   *maxLat,
		NewStore:     func() ebt.Store { return store.NewMem() },
	}

	results := make([]ebt.SimResult, *seeds)
	errs := make([]error, *seeds)
	next := make(chan int)
	var wg sync.WaitGroup
	for range *parallel {
		wg.Go(func() {
			for i := range next {
				c := cfg
				c.Seed = uint64(i + 1)
				results[i], errs[i] = ebt.Simulate(c)
			}
		})
	}
	for i := range *seeds {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return "", err
	}

	var sum ebt.SimResult
	stuck := 0
	for i, r := range results {
		if errs[i] != nil {
			return "", fmt.Errorf("seed %d: %w", i+1, errs[i])
		}
		if *verbose || r.Stuck() {
			fmt.Fprintf(os.Stderr, "seed=%d settled=%v delivered=%d/%d recv_history=%d/%d recv_live=%d/%d notes=%d max_hops=%d live_delay_max=%v elapsed=%v\n",
				i+1, r.Settled, r.Delivered, r.Pairs, r.ReceivedHistory, r.NeededHistory, r.ReceivedLive, r.NeededLive, r.Notes, r.MaxHops, r.LiveDelayMax, r.Elapsed)
		}
		if r.Stuck() {
			stuck++
		}
		sum.Add(r)
	}
	var delay, hdelay time.Duration
	if sum.NeededLive > 0 {
		delay = sum.LiveDelay / time.Duration(sum.NeededLive)
	}
	if sum.NeededHistory > 0 {
		hdelay = sum.HistoryDelay / time.Duration(sum.NeededHistory)
	}
	return fmt.Sprintf("bench=sim-ebt nodes=%d seeds=%d delivered_pct=%.2f stuck_runs=%d redundancy_history=%.3f redundancy_live=%.3f notes_per_msg=%.3f max_hops=%d history_delay_ms=%d live_delay_ms=%d live_delay_max_ms=%d",
		*nodes, *seeds, pct(sum.Delivered, sum.Pairs), stuck,
		ratio(sum.ReceivedHistory, sum.NeededHistory)-1, ratio(sum.ReceivedLive, sum.NeededLive)-1,
		ratio(sum.Notes, sum.NeededHistory+sum.NeededLive), sum.MaxHops,
		hdelay.Milliseconds(), delay.Milliseconds(), sum.LiveDelayMax.Milliseconds()), nil
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 100
	}
	return 100 * float64(a) / float64(b)
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
