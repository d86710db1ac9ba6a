package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestQUICSmall runs the quic workload on 4 MiB, plain and with --sink:
// the child server must start, read the stream (and with --sink hash and
// write it) and count it right, and the line must be well-formed.
func TestQUICSmall(t *testing.T) {
	for _, sink := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args := []string{"--bytes", "4194304"}
		if sink {
			args = append(args, "--sink")
		}
		line, err := runQUIC(ctx, args)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		kv, keys := parseLine(t, line, "secs", "MB_per_s")
		if strings.Join(keys, " ") != "bench bytes sink secs MB_per_s cpu_secs" || kv["bench"] != "quic" || kv["bytes"] != "4194304" || kv["sink"] != fmt.Sprint(sink) {
			t.Fatalf("line %q", line)
		}
		checkCPU(t, kv)
	}
}

func TestQUICFlags(t *testing.T) {
	for _, args := range [][]string{{"--bytes", "0"}, {"--bytes", "-1"}, {"--bytes", "x"}, {"extra"}} {
		if _, err := runQUIC(t.Context(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
