package ebt

import (
	"testing"

	"github.com/contextd/contextd/store"
)

// Small simulations; the big ones are cmd/cxbench sim-ebt's.

func simConfig(seed uint64, nodes, authors int) SimConfig {
	return SimConfig{
		Seed:       seed,
		Nodes:      nodes,
		ExtraEdges: nodes,
		Authors:    authors,
		History:    6,
		Live:       2,
		NewStore:   func() Store { return store.NewMem() },
	}
}

func TestSimulate(t *testing.T) {
	var sum SimResult
	for seed := range uint64(8) {
		r, err := Simulate(simConfig(seed, 16, 5))
		if err != nil {
			t.Fatal(err)
		}
		if r.Stuck() {
			t.Errorf("seed %d stuck: %+v", seed, r)
		}
		// 15 receivers × 5 authors × 6 (history) and × 2 (live); authors
		// do not receive their own feed.
		if r.NeededHistory != 15*5*6 || r.NeededLive != 15*5*2 {
			t.Errorf("seed %d: needed %d + %d entries", seed, r.NeededHistory, r.NeededLive)
		}
		sum.Add(r)
	}
	red := func(recv, need int64) float64 { return float64(recv)/float64(need) - 1 }
	t.Logf("redundancy %.3f / %.3f, notes per entry %.3f, max hops %d",
		red(sum.ReceivedHistory, sum.NeededHistory), red(sum.ReceivedLive, sum.NeededLive),
		float64(sum.Notes)/float64(sum.NeededHistory+sum.NeededLive), sum.MaxHops)
	if r := red(sum.ReceivedHistory, sum.NeededHistory); r > 0.05 {
		t.Errorf("history redundancy %.3f", r)
	}
	if r := red(sum.ReceivedLive, sum.NeededLive); r > 0.05 {
		t.Errorf("live redundancy %.3f", r)
	}
	// Notes cost per feed more than per entry: with feeds this short,
	// more than one per entry.
	if n := float64(sum.Notes) / float64(sum.NeededHistory+sum.NeededLive); n > 2 {
		t.Errorf("%.3f note entries per entry", n)
	}
	if sum.MaxHops < 2 {
		t.Errorf("max hops %d: entries did not travel", sum.MaxHops)
	}
}

func TestSimulateKill(t *testing.T) {
	for seed := range uint64(4) {
		cfg := simConfig(seed, 40, 4)
		cfg.KillFraction = 0.5
		r, err := Simulate(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if r.Stuck() || r.Pairs == 0 {
			t.Errorf("seed %d: %+v", seed, r)
		}
	}
}

func TestSimulateDeterministic(t *testing.T) {
	a, err := Simulate(simConfig(7, 12, 3))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Simulate(simConfig(7, 12, 3))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("same seed, different runs:\n%+v\n%+v", a, b)
	}
	if c, _ := Simulate(simConfig(8, 12, 3)); c == a {
		t.Errorf("different seeds, same run: %+v", c)
	}
}

func TestSimulateConfig(t *testing.T) {
	mem := simConfig(0, 0, 0).NewStore
	for _, cfg := range []SimConfig{
		{Nodes: 1, Authors: 1, NewStore: mem},
		{Nodes: 3, Authors: 4, NewStore: mem},
		{Nodes: 3, Authors: 1, KillFraction: 1, NewStore: mem},
		{Nodes: 3, Authors: 1, History: -1, NewStore: mem},
		{Nodes: 3, Authors: 1},
	} {
		if _, err := Simulate(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
