package main

import (
	"context"
	"testing"
	"time"
)

// TestFailoverSmall runs the failover workload small (it needs root, as
// CI has): the path in use is cut mid-sync and mid-fetch, and B is killed
// and restarted; A's subscriber must get B's whole feed, each entry once,
// and A the object intact, with A linking again to the restarted B by
// itself. The gaps are not checked here (they are the bench's figures).
func TestFailoverSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := runFailover(ctx, []string{"--rate", "50", "--bytes", "16777216", "--warm", "1s", "--after", "1s"})
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := parseLine(t, line, "entries", "gap_ms", "fetch_gap_ms", "max_gap_ms", "restart_gap_ms", "fetch_secs")
	if kv["bench"] != "failover" || kv["sync_ok"] != "true" || kv["fetch_ok"] != "true" || kv["dup"] != "0" {
		t.Fatalf("line %q", line)
	}
}

func TestFailoverFlags(t *testing.T) {
	for _, args := range [][]string{{"--rate", "0"}, {"--bytes", "0"}, {"--after", "-1s"}, {"extra"}} {
		if _, err := runFailover(t.Context(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
