package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
)

// Storage bound defaults (config.json "storage").
const (
	// DefaultFeedQuota bounds the bytes of entries the node stores of any
	// one feed other than its own and its contexts' keys.
	DefaultFeedQuota = 64 << 20
	// DefaultCtxQuota bounds the bytes of other authors' messages the
	// node stores of any one context.
	DefaultCtxQuota = 256 << 20
)

// StorageConfig bounds what the node stores: config.json "storage" and
// Config.Storage. The zero value is the defaults.
type StorageConfig struct {
	// FeedQuotaBytes bounds the bytes of entries the node stores of any
	// one feed other than its own and its contexts' keys: absent means
	// DefaultFeedQuota, 0 no bound. Entries past it are not stored, and
	// the peer that sent them is told not to send the feed any more.
	FeedQuotaBytes *int64 `json:"feed_quota_bytes,omitempty"`
	// ContextQuotaBytes bounds the bytes of other authors' messages the
	// node stores of any one context: absent means DefaultCtxQuota, 0 no
	// bound.
	ContextQuotaBytes *int64 `json:"context_quota_bytes,omitempty"`
	// Retention is the history kept of every joined context that
	// Contexts does not name; the zero value keeps everything.
	Retention Retention `json:"retention,omitzero"`
	// Contexts sets the retention of single contexts, by context ID.
	Contexts map[string]Retention `json:"contexts,omitempty"`
}

// Retention is how much history of a context the node keeps of authors
// other than itself (its own messages are never pruned). A message goes
// when it is older than Days or beyond the newest Bytes of other authors'
// messages, whichever comes first; 0 does not bound. Feeds are pruned
// from their start only (what remains must verify), so an author's
// message that must stay keeps the ones after it too (retention.go).
type Retention struct {
	Days  int   `json:"days,omitempty"`
	Bytes int64 `json:"bytes,omitempty"`
}

// quota resolves a configured quota: nil is def; 0 stays 0, which the
// store takes as no bound.
func quota(p *int64, def int64) int64 {
	switch {
	case p == nil:
		return def
	case *p == 0:
		return 0
	}
	return *p
}

// check validates the configuration: quotas and retentions not negative,
// context IDs that parse.
func (c StorageConfig) check() error {
	if q := c.FeedQuotaBytes; q != nil && *q < 0 {
		return fmt.Errorf("node: storage: feed_quota_bytes %d is negative", *q)
	}
	if q := c.ContextQuotaBytes; q != nil && *q < 0 {
		return fmt.Errorf("node: storage: context_quota_bytes %d is negative", *q)
	}
	if _, err := c.retentions(); err != nil {
		return err
	}
	return c.Retention.check("retention")
}

func (r Retention) check(where string) error {
	if r.Days < 0 || r.Bytes < 0 {
		return fmt.Errorf("node: storage: %s: days %d, bytes %d: neither may be negative", where, r.Days, r.Bytes)
	}
	return nil
}

// retentions returns the per-context retentions by parsed ID.
func (c StorageConfig) retentions() (map[feed.ID]Retention, error) {
	out := make(map[feed.ID]Retention, len(c.Contexts))
	for s, r := range c.Contexts {
		id, err := feed.ParseID(s)
		if err != nil {
			return nil, fmt.Errorf("node: storage: contexts: %q is not a context ID: %w", s, err)
		}
		if err := r.check("contexts " + s); err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, nil
}

// retentionOf returns context id's retention.
func (c StorageConfig) retentionOf(id feed.ID, per map[feed.ID]Retention) Retention {
	if r, ok := per[id]; ok {
		return r
	}
	return c.Retention
}

// setupStorage checks Config.Storage and sets the store's quotas. The
// node's own feed is never refused, nor the feeds of the contexts whose
// key it holds.
func (n *Node) setupStorage() error {
	c := n.cfg.Storage
	if err := c.check(); err != nil {
		return err
	}
	n.store.SetQuotas(store.Quotas{
		FeedBytes: quota(c.FeedQuotaBytes, DefaultFeedQuota),
		CtxBytes:  quota(c.ContextQuotaBytes, DefaultCtxQuota),
		Self:      n.id,
		Exempt:    n.holdsCtxKey,
	})
	return nil
}

// holdsCtxKey reports whether the node holds the key of context id (it
// created it).
func (n *Node) holdsCtxKey(id feed.ID) bool {
	_, err := os.Stat(n.ctxKeyPath(id))
	return err == nil
}

// Unfollow stops following id. With forget it also deletes everything the
// store holds of id's feed (entries, head, the indexes built from them,
// peers' clocks of it), unless the node still replicates the feed for
// another reason: then the result says why (Kept) and nothing is deleted.
// forget keeps a block, and writes no entry for a feed not followed. The
// node's own feed and the feeds of contexts whose key it holds are
// refused.
func (n *Node) Unfollow(ctx context.Context, id feed.ID, forget bool) (api.UnfollowResult, error) {
	var res api.UnfollowResult
	if id == n.id {
		return res, ErrSelf
	}
	if forget && n.holdsCtxKey(id) {
		return res, fmt.Errorf("%w: %s is the feed of a context this node created; it is not forgotten", api.ErrInvalidParams, id)
	}
	rel, err := n.store.Relation(n.id, id)
	if err != nil {
		return res, err
	}
	if !forget || rel == feed.RelFollow {
		e, err := n.Contact(ctx, id, feed.RelNone)
		if err != nil {
			return res, err
		}
		res.Head = api.Head{Seq: e.Seq, ID: e.ID()}
	}
	if !forget {
		return res, nil
	}
	in, wanted, err := n.repl.InScope(ctx, id)
	if err != nil {
		return res, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
	}
	if in {
		res.Kept = "a feed this node follows follows it (within the configured hops), so it is still replicated"
		if wanted {
			res.Kept = "it is an author (or the key) of a context this node has joined, so it is still replicated"
		}
		return res, nil
	}
	bytes, err := n.store.FeedBytes(id)
	if err != nil {
		return res, err
	}
	if err := n.store.DeleteFeed(id); err != nil {
		return res, fmt.Errorf("node: forget %s: %w", id.Short(), err)
	}
	n.repl.Reload(id)
	n.feedSig.notify(id)
	n.log.Info("feed forgotten", "feed", id, "bytes", bytes)
	res.Forgotten, res.FreedBytes = true, bytes
	return res, nil
}

// RemoveObject deletes what the node holds of object id: chunks, tree
// hashes and record (the leases on it stay: they are what their authors'
// feeds say). A pinned object is refused unless force, which unpins it
// first (ending the node's own lease); an object being put or fetched is
// refused.
func (n *Node) RemoveObject(id cid.Cid, force bool) (api.ObjectRmResult, error) {
	st, err := n.object(id)
	if err != nil {
		return api.ObjectRmResult{}, err
	}
	if st.Pinned {
		if !force {
			return api.ObjectRmResult{}, fmt.Errorf("%w: object %s is pinned: unpin it first (`contextd unpin %s`) or remove it with --force",
				api.ErrInvalidParams, id, id)
		}
		if err := n.UnpinObject(id); err != nil {
			return api.ObjectRmResult{}, err
		}
	}
	if n.objectInUse(id) {
		return api.ObjectRmResult{}, fmt.Errorf("%w: object %s is being put or fetched; remove it when that ends", api.ErrUnavailable, id)
	}
	if err := n.store.Delete(id); errors.Is(err, store.ErrNotFound) {
		return api.ObjectRmResult{}, fmt.Errorf("%w: object %s", api.ErrNotFound, id)
	} else if err != nil {
		return api.ObjectRmResult{}, fmt.Errorf("node: remove %s: %w", id, err)
	}
	n.log.Info("object removed", "cid", id, "bytes", st.Bytes)
	return api.ObjectRmResult{FreedBytes: st.Bytes}, nil
}

// Storage reports the disk the store uses, the quotas, and what each
// joined context takes.
func (n *Node) Storage() (api.Storage, error) {
	u, err := n.store.Usage()
	if err != nil {
		return api.Storage{}, err
	}
	c := n.cfg.Storage
	per, err := c.retentions()
	if err != nil {
		return api.Storage{}, err
	}
	out := api.Storage{
		Main: u.Main, Blobs: u.Blobs,
		FeedQuota:    quota(c.FeedQuotaBytes, DefaultFeedQuota),
		ContextQuota: quota(c.ContextQuotaBytes, DefaultCtxQuota),
		Contexts:     []api.ContextStorage{},
	}
	joined, err := n.store.Joined()
	if err != nil {
		return api.Storage{}, err
	}
	for _, id := range joined {
		cs, err := n.ctxUsage(id)
		if err != nil {
			return api.Storage{}, err
		}
		r := c.retentionOf(id, per)
		cs.RetentionDays, cs.RetentionBytes = r.Days, r.Bytes
		out.Contexts = append(out.Contexts, cs)
	}
	slices.SortFunc(out.Contexts, func(a, b api.ContextStorage) int { return a.ID.Compare(b.ID) })
	return out, nil
}

// ctxUsage returns the bytes of context id's messages, all and others'.
func (n *Node) ctxUsage(id feed.ID) (api.ContextStorage, error) {
	total, err := n.store.CtxBytes(id)
	if err != nil {
		return api.ContextStorage{}, err
	}
	ms, err := n.store.CtxMembers(id)
	if err != nil {
		return api.ContextStorage{}, err
	}
	cs := api.ContextStorage{ID: id, Bytes: total, OthersBytes: total}
	for _, m := range ms {
		if m.Author == n.id {
			cs.OthersBytes -= int64(m.Bytes)
		}
	}
	return cs, nil
}
