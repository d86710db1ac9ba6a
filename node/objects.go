package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

// Objects: PutObject stores and pins a file and provides it in
// the DHT; GetObject (fetch.go, sources.go) fetches one from the peers that
// provide it over swarm/1 circuits, verifying every chunk before it is
// stored, then provides it too.
// Pins are also leases in the node's feed; pins.go keeps them and the cache.
//
// A fetcher knows only the object's ID; it learns the size and chunk size
// from each seeder's HANDSHAKE and trusts them only when they make that very
// ID with the ID's root (swarm.Probe). Seeders look the object up by the ID
// in the fetcher's HANDSHAKE (swarm.Accept) and refuse unknown objects by
// closing the circuit.

// Object timeouts.
const (
	// dhtTimeout bounds one provide or provider lookup.
	dhtTimeout = 20 * time.Second
	// probeTimeout bounds reaching one provider: dial, link, circuit and
	// its HANDSHAKE.
	probeTimeout = 10 * time.Second
	// maxSources bounds the linked peers and, apart, the DHT providers
	// a get probes.
	maxSources = 8
	// maxSwarmSessions bounds the swarm/1 sessions one peer may have
	// with this node at once (one per object it fetches from here).
	maxSwarmSessions = 16
)

// ErrBadPath reports a file path the node cannot use.
var ErrBadPath = fmt.Errorf("%w: bad path", api.ErrInvalidParams)

// joinDHT joins the DHT through the bootstrap peers, then announces the
// objects the node keeps. A failure is logged: the node works alone.
func (n *Node) joinDHT(ctx context.Context) {
	if len(n.cfg.Bootstrap) == 0 {
		return
	}
	if err := n.dht.Bootstrap(ctx); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("dht bootstrap failed; objects are found only through linked peers", "err", err)
		}
		return
	}
	n.log.Info("dht joined", "bootstrap", len(n.cfg.Bootstrap))
	ids, err := n.store.ObjectIDs()
	if err != nil {
		n.log.Warn("list objects to reprovide", "err", err)
		return
	}
	var keep []cid.Cid
	for _, id := range ids {
		if st, err := n.store.Object(id); err == nil && (st.Pinned || st.Complete()) {
			keep = append(keep, id)
		}
	}
	if len(keep) > 0 {
		if err := n.dht.Reprovide(ctx, keep); err != nil && ctx.Err() == nil {
			n.log.Info("reprovide objects", "err", err)
		}
	}
}

// provide announces id in the DHT; failing is logged, not returned (a node
// with no DHT peer yet still holds the object).
func (n *Node) provide(ctx context.Context, id cid.Cid) {
	ctx, cancel := context.WithTimeout(ctx, dhtTimeout)
	defer cancel()
	if err := n.dht.Provide(ctx, id); err != nil {
		n.log.Info("provide object", "cid", id, "err", err)
	}
}

// serveSwarm serves one swarm/1 circuit from the store.
func (n *Node) serveSwarm(ctx context.Context, c *flitlink.Circuit, p feed.ID) {
	hctx, cancel := context.WithTimeout(ctx, probeTimeout)
	var complete bool
	info, conn, err := swarm.Accept(hctx, c, func(id cid.Cid) (swarm.Info, error) {
		st, err := n.store.Object(id)
		if err != nil {
			return swarm.Info{}, fmt.Errorf("%w: %s: %w", swarm.ErrUnknownObject, id, err)
		}
		complete = st.Complete()
		return st.Info, nil
	})
	cancel()
	if err != nil {
		n.log.Debug("swarm circuit refused", "peer", p, "err", err)
		return
	}
	n.swarmPeer(info.ID(), peer.ID(p.PeerIDBytes()))
	cfg := swarm.ServeConfig{
		Info:   info,
		Peers:  func() []swarm.PexPeer { return n.pexPeers(info.ID(), p) },
		Logger: n.log,
	}
	if !complete {
		// Held in part: a fetch is storing the rest (or was, and a
		// later get resumes it); tell the peer of chunks as they come.
		var stop func()
		cfg.Grown, stop = n.watchGrowth(info.ID())
		defer stop()
	}
	if err := swarm.Serve(ctx, conn, n.store, cfg); err != nil && ctx.Err() == nil {
		n.log.Info("swarm session ended", "peer", p, "cid", info.ID(), "err", err)
	}
}

// checkPath checks that path is absolute: the daemon's working directory
// is not the caller's.
func checkPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w: %q is not an absolute path", ErrBadPath, path)
	}
	return nil
}

// PutObject stores the file at path (absolute) as an object, pins it
// (leasing it in the node's feed) and provides it. The file is read twice,
// a chunk at a time: once to build the tree, once to store the chunks, each
// verified against the tree (so a file changed in between fails the put
// rather than storing bad chunks).
func (n *Node) PutObject(ctx context.Context, path string) (api.ObjectPutResult, error) {
	if err := checkPath(path); err != nil {
		return api.ObjectPutResult{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("%w: %w", ErrBadPath, err)
	} else if !fi.Mode().IsRegular() {
		return api.ObjectPutResult{}, fmt.Errorf("%w: %s is not a regular file", ErrBadPath, path)
	}
	t, err := swarm.Build(f, swarm.Config{})
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: read %s: %w", path, err)
	}
	id, info := t.ID(), t.Info()
	defer n.useObject(id)() // not evicted before it is pinned
	if err := n.store.PutObject(id, info); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: put object %s: %w", id, err)
	}
	if err := swarm.PutTreeHashes(n.store, id, t); err != nil {
		return api.ObjectPutResult{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: reread %s: %w", path, err)
	}
	// Chunks go in batches of store.MaxPutChunks and store.MaxPutChunkBytes
	// (one chunk may exceed the bytes alone), one transaction each.
	per := max(1, min(store.MaxPutChunks, store.MaxPutChunkBytes/info.ChunkSize))
	buf := make([]byte, per*info.ChunkSize)
	batch := make([]swarm.Chunk, 0, per)
	for i := range t.Chunks() {
		if err := ctx.Err(); err != nil {
			return api.ObjectPutResult{}, err
		}
		c := buf[len(batch)*info.ChunkSize:][:info.ChunkSize]
		k, err := io.ReadFull(f, c)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !(errors.Is(err, io.EOF) && info.Size == 0) {
			return api.ObjectPutResult{}, fmt.Errorf("node: reread %s: %w", path, err)
		}
		if err := info.VerifyChunk(i, c[:k], t.Uncles(i)); err != nil {
			return api.ObjectPutResult{}, fmt.Errorf("node: %s changed while it was stored: %w", path, err)
		}
		batch = append(batch, swarm.Chunk{Index: i, Data: c[:k]})
		if len(batch) == per || i == t.Chunks()-1 {
			if err := n.store.PutChunks(id, batch); err != nil {
				return api.ObjectPutResult{}, fmt.Errorf("node: store chunks %d to %d of %s: %w", batch[0].Index, i, id, err)
			}
			batch = batch[:0]
		}
	}
	if err := n.store.Pin(id); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: pin %s: %w", id, err)
	}
	n.syncLease(id)
	n.provide(ctx, id)
	n.evictSoon()
	return api.ObjectPutResult{CID: id.String(), Size: info.Size, Chunks: t.Chunks()}, nil
}

// object returns the store's record of id as api.ErrNotFound when absent.
func (n *Node) object(id cid.Cid) (store.ObjectStat, error) {
	st, err := n.store.Object(id)
	if errors.Is(err, store.ErrNotFound) {
		return st, fmt.Errorf("%w: object %s", api.ErrNotFound, id)
	}
	return st, err
}

// toAPIObject describes st, judging its leases at now.
func toAPIObject(id cid.Cid, st store.ObjectStat, now time.Time) api.Object {
	leases, until := latestLease(st, now)
	return api.Object{
		CID: id.String(), Size: st.Info.Size, ChunkSize: st.Info.ChunkSize,
		Chunks: st.Info.Chunks(), Held: st.Held, Pinned: st.Pinned,
		Leases: leases, LeasedUntil: until,
	}
}

// StatObject reports what the node holds of id.
func (n *Node) StatObject(id cid.Cid) (api.Object, error) {
	st, err := n.object(id)
	if err != nil {
		return api.Object{}, err
	}
	return toAPIObject(id, st, n.cfg.Now()), nil
}

// PinObject keeps id from eviction, leases it in the node's feed (renewed
// by the heartbeat while the pin lasts) and provides it.
func (n *Node) PinObject(ctx context.Context, id cid.Cid) error {
	if _, err := n.object(id); err != nil {
		return err
	}
	if err := n.store.Pin(id); err != nil {
		return fmt.Errorf("node: pin %s: %w", id, err)
	}
	n.syncLease(id)
	n.provide(ctx, id)
	return nil
}

// UnpinObject lets id be evicted again: it drops the pin and ends the
// node's lease on it. Other nodes' leases still keep it.
func (n *Node) UnpinObject(id cid.Cid) error {
	if _, err := n.object(id); err != nil {
		return err
	}
	if err := n.store.Unpin(id); err != nil {
		return fmt.Errorf("node: unpin %s: %w", id, err)
	}
	n.syncLease(id)
	n.evictSoon()
	return nil
}

// ListObjects reports every object the node holds, ordered by CID.
func (n *Node) ListObjects() ([]api.Object, error) {
	ids, err := n.store.ObjectIDs()
	if err != nil {
		return nil, err
	}
	out := make([]api.Object, 0, len(ids))
	now := n.cfg.Now()
	for _, id := range ids {
		st, err := n.store.Object(id)
		if errors.Is(err, store.ErrNotFound) {
			continue // evicted meanwhile
		} else if err != nil {
			return nil, err
		}
		out = append(out, toAPIObject(id, st, now))
	}
	slices.SortFunc(out, func(a, b api.Object) int { return strings.Compare(a.CID, b.CID) })
	return out, nil
}

// Providers returns the peers the DHT says provide id.
func (n *Node) Providers(ctx context.Context, id cid.Cid) ([]api.Provider, error) {
	ctx, cancel := context.WithTimeout(ctx, dhtTimeout)
	defer cancel()
	provs, err := n.dht.FindProviders(ctx, id, 0)
	if err != nil && len(provs) == 0 && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
	}
	out := make([]api.Provider, 0, len(provs))
	for _, ai := range provs {
		fid, err := feed.IDFromPeerIDBytes([]byte(ai.ID))
		if err != nil {
			continue
		}
		suffix, err := multiaddr.NewMultiaddr("/p2p/" + ai.ID.String())
		if err != nil {
			continue
		}
		p := api.Provider{ID: fid, Addrs: []string{}}
		for _, a := range ai.Addrs {
			p.Addrs = append(p.Addrs, a.Encapsulate(suffix).String())
		}
		out = append(out, p)
	}
	return out, nil
}
