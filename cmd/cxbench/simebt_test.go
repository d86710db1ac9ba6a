package main

import (
	"strings"
	"testing"
)

func TestSimEBT(t *testing.T) {
	line, err := runSimEBT(t.Context(), []string{"--nodes", "8", "--authors", "3", "--msgs", "4", "--live", "2", "--seeds", "2", "--parallel", "2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench=sim-ebt nodes=8 seeds=2 ", "delivered_pct=100.00 stuck_runs=0 ", "redundancy_history=", "notes_per_msg=", "max_hops="} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
	if _, err := runSimEBT(t.Context(), []string{"--seeds", "0"}); err == nil {
		t.Error("--seeds 0 accepted")
	}
}
