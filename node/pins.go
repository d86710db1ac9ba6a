package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/store"
)

// Heartbeat pins and the object cache. A pin is local (the
// store's keep flag) and public: the node writes a lease entry "keep
// object X until T" to its own feed and renews it on a heartbeat while the
// pin lasts; unpinning writes an ended lease. Every node that holds a copy
// of X and replicates the pinner's feed keeps X while such a lease is
// valid (the store indexes lease entries of every feed it stores). What is
// neither pinned nor leased is cache: evicted least recently used first
// once its chunks exceed Config.CacheBytes.

// DefaultCacheBytes is the default Config.CacheBytes: 1 GiB.
const DefaultCacheBytes = 1 << 30

// Lease and cache timing.
const (
	// leaseTTL is how long a lease the node writes lasts.
	leaseTTL = 24 * time.Hour
	// leaseRenew: a pinned object's own lease is renewed once less than
	// this is left of it, so a peer that misses a few heartbeats' worth
	// of replication still sees a valid lease.
	leaseRenew = leaseTTL / 2
	// heartbeatPeriod is how often own leases are checked.
	heartbeatPeriod = 10 * time.Minute
	// evictPeriod is how often the cache is brought under its limit
	// besides after each put and unpin (leases lapse without an event).
	evictPeriod = time.Minute
	// maxLeaseWrites bounds the lease entries one heartbeat writes; the
	// most urgent go first and the next heartbeat takes the rest. At 256
	// per 10 minutes, about 18,000 pinned objects are renewed within
	// leaseRenew.
	maxLeaseWrites = 256
)

// runObjects runs the lease heartbeat and the eviction passes until ctx is
// done. It is started by Run.
func (n *Node) runObjects(ctx context.Context) {
	heartbeat := time.NewTicker(heartbeatPeriod)
	defer heartbeat.Stop()
	evict := time.NewTicker(evictPeriod)
	defer evict.Stop()
	n.heartbeat()
	n.evictCache()
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			n.heartbeat()
		case <-evict.C:
			n.evictCache()
		case <-n.evictKick:
			n.evictCache()
		}
	}
}

// leaseAction is what the node's own lease on an object needs.
type leaseAction int

const (
	leaseNone   leaseAction = iota
	leaseExtend             // pinned, and the own lease is missing or ends within leaseRenew
	leaseEnd                // not pinned, and the own lease is still valid
)

// ownLease returns what the node's own lease on the object st describes
// needs at now, and the lease's end (zero if there is none).
func (n *Node) ownLease(st store.ObjectStat, now time.Time) (leaseAction, time.Time) {
	until, ok := st.Leases[n.id]
	switch {
	case st.Pinned && (!ok || until.Sub(now) < leaseRenew):
		return leaseExtend, until
	case !st.Pinned && ok && until.After(now):
		return leaseEnd, until
	}
	return leaseNone, until
}

// writeLease appends the node's lease on id until until (the zero time
// ends it) to its own feed.
func (n *Node) writeLease(id cid.Cid, until time.Time) error {
	body, err := feed.Lease{Object: id.Bytes(), Until: until}.Encode()
	if err != nil {
		return fmt.Errorf("node: lease %s: %w", id, err)
	}
	if _, err := n.appendOwn(feed.TypeLease, body); err != nil {
		return fmt.Errorf("node: lease %s: %w", id, err)
	}
	return nil
}

// applyLease renews or ends the node's own lease on id as its pin says.
func (n *Node) applyLease(id cid.Cid, act leaseAction, now time.Time) error {
	switch act {
	case leaseExtend:
		return n.writeLease(id, now.Add(leaseTTL))
	case leaseEnd:
		return n.writeLease(id, time.Time{})
	}
	return nil
}

// syncLease brings the node's own lease on id in line with its pin (one
// at a time with the heartbeat, so neither writes a lease twice). A
// failure is logged, not returned: the pin itself holds, and the next
// heartbeat tries again.
func (n *Node) syncLease(id cid.Cid) {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	st, err := n.store.Object(id)
	if err != nil {
		n.log.Warn("lease not updated; the heartbeat retries", "cid", id, "err", err)
		return
	}
	now := n.cfg.Now()
	act, _ := n.ownLease(st, now)
	if err := n.applyLease(id, act, now); err != nil {
		n.log.Warn("lease not updated; the heartbeat retries", "cid", id, "err", err)
	}
}

// heartbeat renews the node's leases on pinned objects that are due and
// ends those on unpinned ones, at most maxLeaseWrites of them, soonest
// ending first.
func (n *Node) heartbeat() {
	n.leaseMu.Lock()
	defer n.leaseMu.Unlock()
	ids, err := n.store.ObjectIDs()
	if err != nil {
		n.log.Warn("lease heartbeat", "err", err)
		return
	}
	type due struct {
		id    cid.Cid
		act   leaseAction
		until time.Time
	}
	now := n.cfg.Now()
	var work []due
	for _, id := range ids {
		st, err := n.store.Object(id)
		if err != nil {
			continue // evicted meanwhile
		}
		if act, until := n.ownLease(st, now); act != leaseNone {
			work = append(work, due{id, act, until})
		}
	}
	slices.SortFunc(work, func(a, b due) int { return a.until.Compare(b.until) })
	if len(work) > maxLeaseWrites {
		n.log.Info("lease heartbeat: the rest next time", "due", len(work), "now", maxLeaseWrites)
		work = work[:maxLeaseWrites]
	}
	for _, w := range work {
		if err := n.applyLease(w.id, w.act, now); err != nil {
			n.log.Warn("lease heartbeat stopped; it retries next time", "err", err)
			return
		}
	}
	if len(work) > 0 {
		n.log.Debug("leases written", "n", len(work))
	}
}

// evictSoon asks runObjects for an eviction pass.
func (n *Node) evictSoon() {
	select {
	case n.evictKick <- struct{}{}:
	default:
	}
}

// evictCache evicts cached objects, least recently used first, until what
// is neither pinned, leased nor in use fits Config.CacheBytes.
func (n *Node) evictCache() {
	ids, err := n.store.Evict(n.cfg.Now(), n.cfg.CacheBytes, n.objectInUse)
	for _, id := range ids {
		n.log.Info("object evicted", "cid", id)
	}
	if err != nil {
		n.log.Warn("evict objects", "err", err)
	}
}

// useObject marks id in use until done is called: eviction spares it.
func (n *Node) useObject(id cid.Cid) (done func()) {
	k := id.KeyString()
	n.useMu.Lock()
	n.inUse[k]++
	n.useMu.Unlock()
	return func() {
		n.useMu.Lock()
		defer n.useMu.Unlock()
		if n.inUse[k]--; n.inUse[k] == 0 {
			delete(n.inUse, k)
		}
	}
}

// objectInUse reports whether id is in use. The store calls it under its
// object lock.
func (n *Node) objectInUse(id cid.Cid) bool {
	n.useMu.Lock()
	defer n.useMu.Unlock()
	return n.inUse[id.KeyString()] > 0
}

// latestLease returns how many leases in st are valid at now and the
// latest end among them.
func latestLease(st store.ObjectStat, now time.Time) (valid int, until time.Time) {
	for _, u := range st.Leases {
		if u.After(now) {
			valid++
			if u.After(until) {
				until = u
			}
		}
	}
	return valid, until
}
