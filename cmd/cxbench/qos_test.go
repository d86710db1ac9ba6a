package main

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestQoSSmall runs the qos workload with a small object: the namespace,
// the shaped loopback, both modes' daemons, the get and the pings must
// work and each mode report a well-formed line. No figure is judged: a
// small transfer on a busy machine says nothing of the controller.
func TestQoSSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lines, err := qosLines(ctx, []string{"--bytes", "4194304", "--base", "20", "--warm", "0s"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bench", "mode", "link_mbit", "bulk_mbit", "bulk_pct", "ctl_p50_ms", "ctl_p99_ms", "base_rtt_ms", "base_p99_ms", "pings"}
	for i, mode := range []string{"unmanaged", "ledbat"} {
		kv, keys := parseLine(t, lines[i], "bulk_mbit", "bulk_pct", "ctl_p50_ms", "ctl_p99_ms", "base_rtt_ms", "base_p99_ms")
		if !slices.Equal(keys, want) || kv["bench"] != "qos" || kv["mode"] != mode || kv["link_mbit"] != "100" {
			t.Fatalf("line %q", lines[i])
		}
		if n, err := strconv.Atoi(kv["pings"]); err != nil || n < 1 {
			t.Errorf("%s: pings=%q", mode, kv["pings"])
		}
	}
}
