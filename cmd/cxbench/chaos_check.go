package main

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/contextd/contextd/feed"
)

// chaosPlan is who links, follows and joins what in a chaos run; nodes
// are 0..n-1.
type chaosPlan struct {
	n       int
	edges   [][2]int // the links, a connected graph
	adj     [][]int
	follows [][]bool // follows[a][c]: node a follows node c's feed (never a == c)
	members [][]bool // members[x][a]: node a is a member of context x
}

// Shares of the pairs a node follows and of the nodes that join each
// context, before the paths are closed (below).
const (
	chaosFollowShare = 0.3
	chaosMemberShare = 0.4
)

// newChaosPlan draws a plan: a connected random graph of mean degree
// degree, each node following a random share of the others, and contexts
// contexts of random members. With hops 1 a node holds only the feeds it
// follows, and a context's messages travel between its members, so the
// plan is closed so that what it asks for can arrive: every node on a
// shortest path from c to a follower of c follows c too, and a context's
// members are connected among themselves (the nodes on shortest paths
// between them join).
func newChaosPlan(n int, degree float64, contexts int, rng *rand.Rand) chaosPlan {
	p := chaosPlan{n: n, edges: randomGraph(n, degree, rng)}
	p.adj = adjacency(n, p.edges)
	p.follows = make([][]bool, n)
	for a := range p.follows {
		p.follows[a] = make([]bool, n)
		for c := range n {
			p.follows[a][c] = c != a && rng.Float64() < chaosFollowShare
		}
	}
	for c := range n {
		parent := bfsTree(p.adj, c)
		for a := range n {
			if !p.follows[a][c] {
				continue
			}
			for v := parent[a]; v != c; v = parent[v] {
				p.follows[v][c] = true
			}
		}
	}
	for range contexts {
		in := make([]bool, n)
		first, count := -1, 0
		for a := range n {
			if in[a] = rng.Float64() < chaosMemberShare; in[a] {
				count++
				if first < 0 {
					first = a
				}
			}
		}
		if count < 2 { // a context of one is no test: take two neighbours
			if first < 0 {
				first = rng.IntN(n)
			}
			in[first], in[p.adj[first][0]] = true, true
		}
		parent := bfsTree(p.adj, first)
		for a := range n {
			if in[a] {
				for v := a; v != first; v = parent[v] {
					in[v] = true
				}
			}
		}
		p.members = append(p.members, in)
	}
	return p
}

// bfsTree returns each node's parent on a shortest path to root (root's
// own is root) in the connected graph adj.
func bfsTree(adj [][]int, root int) []int {
	parent := make([]int, len(adj))
	for i := range parent {
		parent[i] = -1
	}
	parent[root] = root
	queue := []int{root}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range adj[v] {
			if parent[w] < 0 {
				parent[w] = v
				queue = append(queue, w)
			}
		}
	}
	return parent
}

// wants reports whether node a must end up holding node c's feed: its
// own, one it follows, or a fellow member's in a context.
func (p chaosPlan) wants(a, c int) bool {
	if a == c || p.follows[a][c] {
		return true
	}
	for _, in := range p.members {
		if in[a] && in[c] {
			return true
		}
	}
	return false
}

// ackedItem is a publish whose RPC call returned: an entry of author's
// feed, a context message when ctx ≥ 0 (index into the plan's contexts).
type ackedItem struct {
	author int
	seq    uint64
	id     feed.Hash
	ctx    int
}

// msgKey names a context message.
type msgKey struct {
	author int
	seq    uint64
	id     feed.Hash
}

// holdings is what the nodes hold after the run, as read through their
// RPC APIs.
type holdings struct {
	heads [][]uint64 // heads[a][c]: seq node a holds of c's feed (feed.list)
	best  [][]uint64 // best[a][c]: the most of c's feed a connected peer claims to a
	// ids[a][c][seq]: the IDs of c's entries node a holds (read for the
	// feeds a follows and its own).
	ids  [][]map[uint64]feed.Hash
	msgs [][]map[msgKey]bool // msgs[x][a]: context x's history at member a
}

// required returns, per node and author, the highest acknowledged seq the
// node must hold: an author's own feed and the feeds it follows hold all
// its items, a context's members its messages.
func (p chaosPlan) required(acked []ackedItem) [][]uint64 {
	req := make([][]uint64, p.n)
	for a := range req {
		req[a] = make([]uint64, p.n)
	}
	for _, it := range acked {
		for a := range p.n {
			if p.holds(a, it) {
				req[a][it.author] = max(req[a][it.author], it.seq)
			}
		}
	}
	return req
}

// holds reports whether node a must hold item it.
func (p chaosPlan) holds(a int, it ackedItem) bool {
	return a == it.author || p.follows[a][it.author] || it.ctx >= 0 && p.members[it.ctx][a]
}

// lost returns the acknowledged items missing at a node that must hold
// them, each with a line saying where and what that node holds: an entry
// must be in the feed of its author and of every follower with the same
// ID (feeds chain, so a different ID there is a fork, lost as well), a
// context message in every member's history.
func (p chaosPlan) lost(acked []ackedItem, h holdings) (lost int, why []string) {
	for _, it := range acked {
		var where []string
		for a := range p.n {
			if a == it.author || p.follows[a][it.author] {
				if got, ok := h.ids[a][it.author][it.seq]; !ok || got != it.id {
					where = append(where, fmt.Sprintf("node %d (holds seq %d of the feed; id there %s)", a, h.heads[a][it.author], got.String()))
				}
			}
			if it.ctx >= 0 && p.members[it.ctx][a] && !h.msgs[it.ctx][a][msgKey{it.author, it.seq, it.id}] {
				where = append(where, fmt.Sprintf("node %d (not in context %d's history)", a, it.ctx))
			}
		}
		if len(where) > 0 {
			lost++
			why = append(why, fmt.Sprintf("node %d's seq %d (ctx %d, id %s) missing at %v", it.author, it.seq, it.ctx, it.id.String(), where))
		}
	}
	return lost, why
}

// stuck returns the (node, feed) pairs, node a wanting c's feed, where a
// linked peer holds more of it than a does or a peer claims more to a.
func (p chaosPlan) stuck(h holdings) (pairs [][2]int) {
	for a := range p.n {
		for c := range p.n {
			if a == c || !p.wants(a, c) {
				continue
			}
			behind := h.best[a][c] > h.heads[a][c]
			for _, b := range p.adj[a] {
				behind = behind || h.heads[b][c] > h.heads[a][c]
			}
			if behind {
				pairs = append(pairs, [2]int{a, c})
			}
		}
	}
	return pairs
}

// behind returns how many (node, author) pairs hold less than req.
func behind(req [][]uint64, heads [][]uint64) int {
	n := 0
	for a := range req {
		for c, seq := range req[a] {
			if heads[a][c] < seq {
				n++
			}
		}
	}
	return n
}

// contextMembers lists context x's members.
func (p chaosPlan) contextMembers(x int) []int {
	var out []int
	for a, in := range p.members[x] {
		if in {
			out = append(out, a)
		}
	}
	return out
}

// memberOf lists the contexts node a is a member of.
func (p chaosPlan) memberOf(a int) []int {
	var out []int
	for x, in := range p.members {
		if in[a] {
			out = append(out, x)
		}
	}
	return slices.Clip(out)
}
