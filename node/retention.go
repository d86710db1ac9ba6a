package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/store"
)

// retentionPeriod is how often Run applies the contexts' retention.
const retentionPeriod = 10 * time.Minute

// retentionPage is how many entries or index rows the retention pass
// reads at a time.
const retentionPage = 256

// runRetention applies the retention settings every retentionPeriod until
// ctx is done.
func (n *Node) runRetention(ctx context.Context) {
	t := time.NewTicker(retentionPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, _, err := n.Retain(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("retention pass failed", "err", err)
			}
		}
	}
}

// Retain applies the retention setting of every joined context once
// (Run does it every 10 minutes): it prunes the oldest entries of the
// feeds of other authors that the node replicates only as context
// members, and returns how many feeds it pruned and the bytes it freed.
//
// A feed is pruned from its start up to, not including, its first entry
// that must stay: a message of a joined context that the context's
// retention still keeps, a message of a context without a retention
// setting or not joined, or the feed's latest entry. Entries that are
// not messages (contacts, leases) go with the messages around them: the
// indexes built from them stay. The node's own feed, followed feeds,
// context keys and the feeds of contexts whose key the node holds are
// never pruned. What remains verifies from its first entry on, which
// becomes the feed's trust root (store.Bounds).
func (n *Node) Retain(ctx context.Context) (feeds int, freed int64, err error) {
	rules, joined, err := n.retentionRules()
	if err != nil || len(rules) == 0 {
		return 0, 0, err
	}
	now := n.cfg.Now()
	var authors []feed.ID
	seen := map[feed.ID]bool{}
	for c, r := range rules {
		if r.Bytes > 0 {
			if r.upTo, err = n.overBytes(c, r.Bytes); err != nil {
				return 0, 0, err
			}
		}
		if r.Days > 0 {
			r.before = now.Add(-time.Duration(r.Days) * 24 * time.Hour).UnixMilli()
		}
		ms, err := n.store.CtxMembers(c)
		if err != nil {
			return 0, 0, err
		}
		for _, m := range ms {
			if !seen[m.Author] && !joined[m.Author] {
				seen[m.Author] = true
				authors = append(authors, m.Author)
			}
		}
	}
	slices.SortFunc(authors, feed.ID.Compare)
	for _, a := range authors {
		if ok, err := n.prunable(ctx, a); err != nil {
			return feeds, freed, err
		} else if !ok {
			continue
		}
		k, err := n.retainFeed(a, rules)
		if err != nil {
			return feeds, freed, err
		}
		if k > 0 {
			feeds++
			freed += k
			n.repl.Reload(a)
		}
	}
	if feeds > 0 {
		n.store.Compact()
		n.log.Info("retention pruned feeds", "feeds", feeds, "bytes", freed)
	}
	return feeds, freed, nil
}

// rule is one context's retention for a pass.
type rule struct {
	Retention
	before int64              // with Days: messages with an earlier timestamp (Unix ms) go
	upTo   map[feed.ID]uint64 // with Bytes: per author, its messages up to this seq go
}

// rules are the joined contexts that have a retention setting.
type rules map[feed.ID]*rule

// retentionRules returns the joined contexts with a retention setting,
// and every joined context (their keys' feeds are never pruned).
func (n *Node) retentionRules() (rules, map[feed.ID]bool, error) {
	per, err := n.cfg.Storage.retentions()
	if err != nil {
		return nil, nil, err
	}
	ids, err := n.store.Joined()
	if err != nil {
		return nil, nil, err
	}
	out, joined := rules{}, map[feed.ID]bool{}
	for _, c := range ids {
		joined[c] = true
		if r := n.cfg.Storage.retentionOf(c, per); r != (Retention{}) {
			out[c] = &rule{Retention: r}
		}
	}
	return out, joined, nil
}

// expired reports whether the retention of its context lets message e go.
func (r *rule) expired(e *feed.Entry) bool {
	return (r.Days > 0 && e.Timestamp < r.before) || (r.Bytes > 0 && e.Seq <= r.upTo[e.Author])
}

// overBytes returns, per author, how far context c's messages go beyond
// the newest limit bytes of other authors' messages: walking the index
// from the oldest message on, the messages of other authors whose bytes
// the context holds above limit. Each author's messages are indexed in
// seq order, so each author's part is its messages up to a seq.
func (n *Node) overBytes(c feed.ID, limit int64) (map[feed.ID]uint64, error) {
	cs, err := n.ctxUsage(c)
	if err != nil {
		return nil, err
	}
	excess := cs.OthersBytes - limit
	out := map[feed.ID]uint64{}
	for from := uint64(1); excess > 0; {
		refs, err := n.store.CtxRefs(c, from, retentionPage, false)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if r.Author == n.id || excess <= 0 {
				continue
			}
			e, err := n.store.Get(r.Author, r.Seq)
			if errors.Is(err, store.ErrPruned) || errors.Is(err, store.ErrNotFound) {
				continue // gone since CtxRefs read the index
			} else if err != nil {
				return nil, err
			}
			excess -= int64(e.EncodedSize())
			out[r.Author] = r.Seq
		}
		if len(refs) < retentionPage {
			break
		}
		from = refs[len(refs)-1].Cursor + 1
	}
	return out, nil
}

// prunable reports whether retention may prune a's feed: another
// author's, whose key the node does not hold, replicated only as a
// context member (not followed).
func (n *Node) prunable(ctx context.Context, a feed.ID) (bool, error) {
	if a == n.id || n.holdsCtxKey(a) {
		return false, nil
	}
	in, wanted, err := n.repl.InScope(ctx, a)
	if err != nil {
		return false, fmt.Errorf("node: retention: %w", err)
	}
	return in && wanted, nil
}

// retainFeed prunes a's feed up to its first entry that must stay and
// returns the bytes freed.
func (n *Node) retainFeed(a feed.ID, rs rules) (int64, error) {
	tail, err := n.store.Tail(a)
	if err != nil || tail == 0 {
		return 0, err
	}
	head, err := n.store.Head(a)
	if err != nil {
		return 0, err
	}
	boundary := tail
scan:
	for boundary < head.Seq {
		es, err := n.store.Range(a, boundary, retentionPage)
		if err != nil {
			return 0, fmt.Errorf("node: retention of %s: %w", a.Short(), err)
		}
		for _, e := range es {
			if e.Seq == head.Seq || !rs.lets(e) {
				break scan
			}
			boundary = e.Seq + 1
		}
		if len(es) == 0 {
			break
		}
	}
	if boundary == tail {
		return 0, nil
	}
	freed, err := n.store.Prune(a, boundary)
	if err != nil {
		return freed, fmt.Errorf("node: retention of %s: %w", a.Short(), err)
	}
	return freed, nil
}

// lets reports whether the retention rules let entry e go: an entry that
// is not a context message, or a message its context's retention lets go.
func (rs rules) lets(e *feed.Entry) bool {
	if e.Type != feed.TypeCtx {
		return true
	}
	c, err := feed.DecodeCtx(e.Body)
	if err != nil {
		return true // not a message of any context: nothing indexes it
	}
	r, ok := rs[c.Context]
	return ok && r.expired(e)
}
