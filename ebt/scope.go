package ebt

import (
	"errors"
	"maps"
	"slices"

	"github.com/contextd/contextd/feed"
)

// ---- scope and graph ----

func (c *core) relation(author, target feed.ID) feed.Relation {
	if fs := c.feeds[author]; fs != nil {
		return fs.contacts[target]
	}
	return feed.RelNone
}

// computeScope returns the scope: self, the feeds within hops follows of
// self and the wanted feeds, minus the feeds self blocks; and lazy, the
// wanted feeds in it that no follow brings in.
func (c *core) computeScope() (scope, lazy map[feed.ID]bool) {
	s := map[feed.ID]bool{c.self: true}
	frontier := []feed.ID{c.self}
	for range c.hops {
		var next []feed.ID
		for _, a := range frontier {
			fs := c.feeds[a]
			if fs == nil {
				continue
			}
			for t, r := range fs.contacts {
				if r == feed.RelFollow && !s[t] && c.relation(c.self, t) != feed.RelBlock {
					s[t] = true
					next = append(next, t)
				}
			}
		}
		frontier = next
	}
	lazy = map[feed.ID]bool{}
	for f := range c.want {
		if !s[f] && c.relation(c.self, f) != feed.RelBlock {
			lazy[f] = true
		}
	}
	for f := range lazy {
		s[f] = true
	}
	return s, lazy
}

// shared reports whether feed f may be replicated with peer: it is in our
// scope and its author does not block the peer.
func (c *core) shared(f, peer feed.ID) bool {
	return c.scope[f] && c.relation(f, peer) != feed.RelBlock
}

// wantRx reports whether we take entries of f from peers at all: any feed
// in scope that is neither frozen nor full, our own included (a node that
// lost its store takes its own entries back from peers that hold more of
// them).
func (c *core) wantRx(fs *feedState) bool {
	return !fs.frozen && !fs.full && c.scope[fs.id]
}

// updateScope recomputes the scope and reconciles every session with it:
// feeds that left are declined, feeds that joined are offered, sessions
// with peers self now blocks are closed. A peer whose note for a joining
// feed was answered with -1 may get our note in place of the -1 (notes
// are merged, the latest per feed wins), and then does not send its note
// again: the refused note is taken up as if it came now, so that we know
// how far the peer is (a source if it is ahead, tick notes if behind).
func (c *core) updateScope() {
	next, lazy := c.computeScope()
	var removed, added []feed.ID
	for f := range c.scope {
		if !next[f] {
			removed = append(removed, f)
		}
	}
	for f := range next {
		if !c.scope[f] {
			added = append(added, f)
		}
	}
	slices.SortFunc(removed, feed.ID.Compare)
	slices.SortFunc(added, feed.ID.Compare)
	c.setScope(next, lazy)
	for _, f := range removed {
		fs := c.feed(f)
		if fs.rx != nil {
			c.unsetSource(fs)
		}
		for _, p := range c.order {
			c.decline(p, f)
		}
	}
	for _, f := range added {
		for _, p := range c.order {
			if !p.open {
				continue
			}
			c.share(p, f)
			if n, ok := p.refused[f]; ok {
				delete(p.refused, f)
				c.onNote(p, f, n)
			}
		}
	}
	c.recountProgress()
	for _, p := range c.order {
		if c.relation(c.self, p.id) == feed.RelBlock {
			c.emit(actClose{peer: p.id, err: ErrBlocked})
		}
	}
}

// setScope replaces the scope and its lazy feeds; every feed in scope gets
// a state.
func (c *core) setScope(s, lazy map[feed.ID]bool) {
	c.lazy = lazy
	c.scope = s
	c.scopeList = slices.SortedFunc(maps.Keys(s), feed.ID.Compare)
	for _, f := range c.scopeList {
		c.feed(f)
	}
}

// authorChanged reconciles every session with author's new contacts.
func (c *core) authorChanged(author feed.ID) {
	for _, p := range c.order {
		if !p.open {
			continue
		}
		if c.shared(author, p.id) {
			if n, ok := p.sent[author]; !ok || n == DontReplicate {
				c.share(p, author)
			}
		} else {
			c.decline(p, author)
		}
	}
	c.updateScope()
}

// quotaFit reports whether err is a store's refusal of an append for a
// byte quota, and how many leading entries of the batch fit the quota: it
// has a method QuotaFit() int (store.QuotaError), which ebt recognises
// without importing store.
func quotaFit(err error) (fit int, ok bool) {
	var q interface{ QuotaFit() int }
	if !errors.As(err, &q) {
		return 0, false
	}
	return q.QuotaFit(), true
}

// pruned reports whether err is a store's refusal to read entries it
// pruned: it has a method PrunedTail() uint64 (store.PrunedError).
func pruned(err error) bool {
	var p interface{ PrunedTail() uint64 }
	return errors.As(err, &p)
}
