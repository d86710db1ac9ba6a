package main

import (
	"context"
	"testing"
	"time"
)

// TestReplSmall runs the repl workload at a small size: the harness must
// build the daemon, fill, sync and report a well-formed line. The figures
// themselves are not checked (speed is measured by running cxbench).
func TestReplSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := runRepl(ctx, []string{"--entries", "300", "--size", "50"})
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := parseLine(t, line, "secs", "entries_per_s", "verify_1core_per_s")
	checkNonNegative(t, kv, "MB_per_s") // a few KiB: 0.00 on a slow run
	if kv["bench"] != "repl" || kv["entries"] != "300" || kv["size"] != "50" {
		t.Fatalf("line %q", line)
	}
	if _, ok := kv["feeds"]; ok {
		t.Errorf("one feed, yet the line names feeds: %q", line)
	}
}

// TestReplFeeds runs the repl workload with several feeds: B must get all
// of them (runRepl checks every head) and the line must count them.
func TestReplFeeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := runRepl(ctx, []string{"--feeds", "3", "--entries", "20", "--size", "10"})
	if err != nil {
		t.Fatal(err)
	}
	kv, _ := parseLine(t, line, "secs", "entries_per_s", "verify_1core_per_s")
	checkNonNegative(t, kv, "MB_per_s") // a few KiB: 0.00 on a slow run
	// 3 feeds of 20 posts, and A's 2 follows of the others.
	if kv["bench"] != "repl" || kv["feeds"] != "3" || kv["entries"] != "20" || kv["total"] != "62" || kv["size"] != "10" {
		t.Fatalf("line %q", line)
	}
}
