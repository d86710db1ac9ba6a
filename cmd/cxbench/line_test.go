package main

import (
	"strconv"
	"strings"
	"testing"
)

// parseLine splits a workload's final line into its key=value pairs and
// their keys in order, and checks that each key in positive holds a
// number above zero.
func parseLine(t *testing.T, line string, positive ...string) (kv map[string]string, keys []string) {
	t.Helper()
	kv = map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("field %q of %q is not key=value", f, line)
		}
		kv[k] = v
		keys = append(keys, k)
	}
	for _, k := range positive {
		if v, err := strconv.ParseFloat(kv[k], 64); err != nil || v <= 0 {
			t.Errorf("%s=%q in %q", k, kv[k], line)
		}
	}
	return kv, keys
}

// checkCPU checks the line's cpu_secs: a number, at least zero (a short
// run may use less than the 10 ms the kernel counts in).
func checkCPU(t *testing.T, kv map[string]string) { checkNonNegative(t, kv, "cpu_secs") }

// checkNonNegative checks that the line's keys are numbers, at least zero:
// figures a small run may round to zero.
func checkNonNegative(t *testing.T, kv map[string]string, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, err := strconv.ParseFloat(kv[k], 64); err != nil || v < 0 {
			t.Errorf("%s=%q", k, kv[k])
		}
	}
}
