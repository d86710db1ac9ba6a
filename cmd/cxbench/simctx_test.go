package main

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// TestSimCtxSmall runs sim-ctx with 20 members on 20 ms links: every
// message must reach every other member in both variants, and the line
// must hold every figure.
func TestSimCtxSmall(t *testing.T) {
	line, err := runSimCtx(t.Context(), []string{"--members", "20", "--latency", "20ms", "--degree", "4", "--msgs", "10", "--rate", "20"})
	if err != nil {
		t.Fatal(err)
	}
	kv, keys := parseLine(t, line, "p50_ms", "p95_ms", "graph_p95_ms", "base_p50_ms", "base_p95_ms")
	want := "bench members fanout latency_ms dilate degree msgs p50_ms p95_ms delivered_pct dup_per_msg graph_p95_ms sched_p99_ms cpu_busy base_p50_ms base_p95_ms base_delivered_pct base_dup_per_msg base_sched_p99_ms"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("keys %q, want %q", got, want)
	}
	if kv["bench"] != "sim-ctx" || kv["members"] != "20" || kv["fanout"] != "lean" || kv["latency_ms"] != "20" || kv["msgs"] != "10" ||
		kv["delivered_pct"] != "100.00" || kv["base_delivered_pct"] != "100.00" {
		t.Fatalf("line %q", line)
	}
	// No path is shorter than one link.
	if p50 := number(t, kv, "p50_ms"); p50 < 20 {
		t.Errorf("p50 %v ms is below one link's latency", p50)
	}
}

func TestSimCtxFlags(t *testing.T) {
	for _, args := range [][]string{{"--members", "1"}, {"--msgs", "0"}, {"--size", "3"}, {"--rate", "0"}, {"extra"}} {
		if _, err := runSimCtx(t.Context(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestDelayStream checks that a delayed stream hands each write through
// one latency after it was made, in order, and that writes in flight do
// not wait for each other.
func TestDelayStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rs := &recStream{got: make(chan received, 3)}
		d := newDelayStream(rs, 100*time.Millisecond)
		defer d.Close()
		start := time.Now()
		d.Write([]byte("a"))
		time.Sleep(10 * time.Millisecond)
		d.Write([]byte("b"))
		d.Write([]byte("c"))
		for _, want := range []struct {
			after time.Duration
			b     string
		}{{100 * time.Millisecond, "a"}, {110 * time.Millisecond, "b"}, {110 * time.Millisecond, "c"}} {
			r := <-rs.got
			if after := r.at.Sub(start); after != want.after || r.b != want.b {
				t.Errorf("got %q after %v, want %q after %v", r.b, after, want.b, want.after)
			}
		}
	})
}

type received struct {
	at time.Time
	b  string
}

// recStream is a stream that records when each write reached it.
type recStream struct {
	network.Stream
	got chan received
}

func (s *recStream) Write(p []byte) (int, error) {
	s.got <- received{time.Now(), string(p)}
	return len(p), nil
}

func (s *recStream) Close() error { return nil }

// number returns the line's value for key as a number.
func number(t *testing.T, kv map[string]string, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(kv[key], 64)
	if err != nil {
		t.Fatalf("%s=%q", key, kv[key])
	}
	return v
}
