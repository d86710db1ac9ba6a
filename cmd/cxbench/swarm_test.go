package main

import (
	"context"
	"testing"
	"time"
)

// TestSwarmSmall runs the swarm workload at a small size with two seeders:
// the harness must start the daemons, spread and fetch the object, check
// the copy and report a well-formed line.
func TestSwarmSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := runSwarm(ctx, []string{"--bytes", "2097152", "--seeders", "2"})
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := parseLine(t, line, "secs", "MB_per_s")
	if kv["bench"] != "swarm" || kv["bytes"] != "2097152" || kv["seeders"] != "2" || len(kv) != 7 || kv["out_secs"] == "" {
		t.Fatalf("line %q", line)
	}
	checkCPU(t, kv)
}
