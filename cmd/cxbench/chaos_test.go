package main

import (
	"math/rand/v2"
	"testing"

	"github.com/contextd/contextd/feed"
)

// TestChaosPlan checks, over many seeds, that a plan can be satisfied:
// the graph is connected, every follower of c is reached from c through
// nodes that follow c, and every context's members are connected among
// themselves.
func TestChaosPlan(t *testing.T) {
	for seed := range uint64(200) {
		n := 3 + int(seed%12)
		p := newChaosPlan(n, 2.4, 2, rand.New(rand.NewPCG(seed, 1)))
		all := func(int) bool { return true }
		if got := reach(p.adj, 0, all); got != n {
			t.Fatalf("seed %d: graph of %d nodes reaches %d from node 0", seed, n, got)
		}
		for c := range n {
			if p.follows[c][c] {
				t.Fatalf("seed %d: node %d follows itself", seed, c)
			}
			holds := func(v int) bool { return v == c || p.follows[v][c] }
			want := 0
			for a := range n {
				if holds(a) {
					want++
				}
			}
			if got := reach(p.adj, c, holds); got != want {
				t.Fatalf("seed %d: %d nodes hold node %d's feed, %d of them reachable through holders", seed, want, c, got)
			}
		}
		if len(p.members) != 2 {
			t.Fatalf("seed %d: %d contexts, want 2", seed, len(p.members))
		}
		for x := range p.members {
			ms := p.contextMembers(x)
			in := func(v int) bool { return p.members[x][v] }
			if len(ms) < 2 {
				t.Fatalf("seed %d: context %d has %d members", seed, x, len(ms))
			}
			if got := reach(p.adj, ms[0], in); got != len(ms) {
				t.Fatalf("seed %d: context %d: %d members, %d connected", seed, x, len(ms), got)
			}
		}
	}
}

// reach counts the nodes reachable from root through nodes that pass ok.
func reach(adj [][]int, root int, ok func(int) bool) int {
	seen := map[int]bool{root: true}
	stack := []int{root}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, w := range adj[v] {
			if !seen[w] && ok(w) {
				seen[w] = true
				stack = append(stack, w)
			}
		}
	}
	return len(seen)
}

// threePlan is a path 0–1–2 where 2 follows 0 (so 1 must too) and one
// context of nodes 1 and 2.
func threePlan() chaosPlan {
	p := chaosPlan{n: 3, edges: [][2]int{{0, 1}, {1, 2}}}
	p.adj = adjacency(3, p.edges)
	p.follows = [][]bool{{false, false, false}, {true, false, false}, {true, false, false}}
	p.members = [][]bool{{false, true, true}}
	return p
}

// TestChaosAccounting checks lost and stuck on recorded holdings.
func TestChaosAccounting(t *testing.T) {
	h1, h2, h3, hx := feed.Hash{1}, feed.Hash{2}, feed.Hash{3}, feed.Hash{9}
	acked := []ackedItem{
		{author: 0, seq: 1, id: h1, ctx: -1},
		{author: 0, seq: 2, id: h2, ctx: -1},
		{author: 2, seq: 1, id: h3, ctx: 0}, // a message of node 2 in context 0
	}
	full := func() holdings {
		return holdings{
			heads: [][]uint64{{2, 0, 0}, {2, 0, 1}, {2, 0, 1}},
			best:  [][]uint64{{2, 0, 0}, {2, 0, 1}, {2, 0, 1}},
			ids: [][]map[uint64]feed.Hash{
				{{1: h1, 2: h2}, {}, {}},
				{{1: h1, 2: h2}, {}, {}},
				{{1: h1, 2: h2}, {}, {1: h3}},
			},
			msgs: [][]map[msgKey]bool{{nil, {{2, 1, h3}: true}, {{2, 1, h3}: true}}},
		}
	}
	tests := []struct {
		name        string
		change      func(h *holdings)
		lost, stuck int
	}{
		{"everything held", func(*holdings) {}, 0, 0},
		{"follower behind", func(h *holdings) { h.heads[2][0] = 1; delete(h.ids[2][0], 2) }, 1, 1},
		{"relay behind", func(h *holdings) { h.heads[1][0] = 1; delete(h.ids[1][0], 2) }, 1, 1},
		{"fork at a follower", func(h *holdings) { h.ids[2][0][2] = hx }, 1, 0},
		{"author lost its own entry", func(h *holdings) { h.heads[0][0] = 1; delete(h.ids[0][0], 2) }, 1, 0},
		{"message missing at a member", func(h *holdings) { delete(h.msgs[0][1], msgKey{2, 1, h3}) }, 1, 0},
		{"a peer claims more", func(h *holdings) { h.best[2][0] = 5 }, 0, 1},
		{"unwanted feed behind is not stuck", func(h *holdings) { h.heads[0][2] = 0; h.heads[1][2] = 7 }, 0, 0},
	}
	p := threePlan()
	if req := p.required(acked); req[1][0] != 2 || req[1][2] != 1 || req[0][2] != 0 || req[2][2] != 1 {
		t.Errorf("required = %v", req)
	}
	for _, tt := range tests {
		h := full()
		tt.change(&h)
		lost, why := p.lost(acked, h)
		if lost != tt.lost || len(why) != tt.lost {
			t.Errorf("%s: lost %d (%q), want %d", tt.name, lost, why, tt.lost)
		}
		if got := len(p.stuck(h)); got != tt.stuck {
			t.Errorf("%s: %d stuck, want %d", tt.name, got, tt.stuck)
		}
	}
}
