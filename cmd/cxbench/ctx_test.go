package main

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestCtxSmall runs the ctx workload with three daemons and three bare
// pubsub peers: both halves must deliver every message to every other
// member and the line must hold every figure. The figures themselves are
// not checked (they are measured by running cxbench).
func TestCtxSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := runCtx(ctx, []string{"--members", "3", "--msgs", "10", "--rate", "20", "--settle", "1500ms"})
	if err != nil {
		t.Fatal(err)
	}
	kv, keys := parseLine(t, line, "p50_ms", "p99_ms", "base_p50_ms", "base_p99_ms")
	want := "bench members msgs rate p50_ms p99_ms delivered_pct dup_per_msg ebt_dup_per_msg base_p50_ms base_p99_ms base_delivered_pct base_dup_per_msg"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("keys %q, want %q", got, want)
	}
	if kv["bench"] != "ctx" || kv["members"] != "3" || kv["msgs"] != "10" || kv["delivered_pct"] != "100.00" || kv["base_delivered_pct"] != "100.00" {
		t.Fatalf("line %q", line)
	}
	for _, k := range []string{"dup_per_msg", "ebt_dup_per_msg", "base_dup_per_msg"} {
		if v := number(t, kv, k); v < 0 {
			t.Errorf("%s=%v", k, v)
		}
	}
}

func TestCtxFlags(t *testing.T) {
	for _, args := range [][]string{{"--members", "1"}, {"--msgs", "0"}, {"--rate", "0"}, {"--size", "100000"}, {"extra"}} {
		if _, err := runCtx(t.Context(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestRandomGraph checks that the graphs are connected, without loops or
// repeated links, and of the mean degree asked for.
func TestRandomGraph(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		n      int
		degree float64
		links  int
	}{{2, 1, 1}, {10, 3, 15}, {100, 8, 400}, {5, 10, 10}} {
		edges := randomGraph(tc.n, tc.degree, rng)
		if len(edges) != tc.links {
			t.Errorf("n=%d degree=%v: %d links, want %d", tc.n, tc.degree, len(edges), tc.links)
		}
		seen := map[[2]int]bool{}
		for _, e := range edges {
			if e[0] >= e[1] || seen[e] {
				t.Errorf("n=%d: link %v is a loop, unordered or repeated", tc.n, e)
			}
			seen[e] = true
		}
		for i, d := range bfs(adjacency(tc.n, edges), 0) {
			if d < 0 {
				t.Errorf("n=%d degree=%v: node %d unreachable", tc.n, tc.degree, i)
			}
		}
	}
}

// TestCollector checks the bookkeeping of deliveries: warm-up messages
// stay out of the result, a member's own message and repeats do not
// count, and wait sees completion.
func TestCollector(t *testing.T) {
	c := newCollector(1, 2, 3) // message 0 warm-up, 1 and 2 measured
	c.published(0, 0)
	c.delivered(0, 1, time.Millisecond)
	c.delivered(0, 2, time.Millisecond)
	if !c.wait(t.Context(), 0) {
		t.Fatal("warm-up not complete")
	}
	c.published(1, 1)
	c.published(2, 2)
	c.delivered(1, 1, time.Second) // its own
	c.delivered(1, 0, 3*time.Millisecond)
	c.delivered(1, 0, 9*time.Millisecond) // repeated
	c.delivered(1, 2, 5*time.Millisecond)
	c.delivered(2, 0, 4*time.Millisecond)
	c.delivered(7, 0, time.Millisecond) // unknown
	if c.wait(t.Context(), 0) {
		t.Fatal("complete with a delivery missing")
	}
	r := c.result()
	if r.want != 4 || len(r.lats) != 3 || r.deliveredPct() != 75 {
		t.Fatalf("want %d, %d delivered (%v%%)", r.want, len(r.lats), r.deliveredPct())
	}
	if r.quantile(0.5) != 4*time.Millisecond || r.quantile(0.99) != 5*time.Millisecond {
		t.Errorf("p50 %v p99 %v, want 4ms and 5ms", r.quantile(0.5), r.quantile(0.99))
	}
}
