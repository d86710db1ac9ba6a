package main

import (
	"context"
	"strconv"
	"strings"
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
	kv := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("field %q of %q is not key=value", f, line)
		}
		kv[k] = v
	}
	if kv["bench"] != "repl" || kv["entries"] != "300" || kv["size"] != "50" {
		t.Fatalf("line %q", line)
	}
	for _, k := range []string{"secs", "entries_per_s", "MB_per_s", "verify_1core_per_s"} {
		if v, err := strconv.ParseFloat(kv[k], 64); err != nil || v <= 0 {
			t.Errorf("%s=%q in %q", k, kv[k], line)
		}
	}
}
