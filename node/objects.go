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
	"sync"
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

// Objects (DESIGN §7): PutObject stores and pins a file and provides it in
// the DHT; GetObject fetches one from the peers that provide it over swarm/1
// circuits, verifying every chunk before it is stored, then provides it too.
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
	// maxSources is how many providers a get asks at once.
	maxSources = 8
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
	info, conn, err := swarm.Accept(hctx, c, func(id cid.Cid) (swarm.Info, error) {
		st, err := n.store.Object(id)
		if err != nil {
			return swarm.Info{}, fmt.Errorf("%w: %s: %w", swarm.ErrUnknownObject, id, err)
		}
		return st.Info, nil
	})
	cancel()
	if err != nil {
		n.log.Debug("swarm circuit refused", "peer", p, "err", err)
		return
	}
	if err := swarm.Serve(ctx, conn, n.store, swarm.ServeConfig{Info: info, Logger: n.log}); err != nil && ctx.Err() == nil {
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

// PutObject stores the file at path (absolute) as an object, pins it and
// provides it. The file is read twice, a chunk at a time: once to build the
// tree, once to store the chunks, each verified against the tree (so a file
// changed in between fails the put rather than storing bad chunks).
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
	n.provide(ctx, id)
	return api.ObjectPutResult{CID: id.String(), Size: info.Size, Chunks: t.Chunks()}, nil
}

// GetObject makes the node hold object id, fetching what it lacks from the
// peers that provide it (DHT providers and linked peers), then writes it to
// outPath (absolute; none if empty) through a temporary file in the same
// directory, and provides it. progress, if not nil, is called with the bytes
// held and the size as chunks arrive, from one goroutine at a time.
func (n *Node) GetObject(ctx context.Context, id cid.Cid, outPath string, progress func(done, total int64)) (api.ObjectGetResult, error) {
	if outPath != "" {
		if err := checkPath(outPath); err != nil {
			return api.ObjectGetResult{}, err
		}
		if fi, err := os.Stat(filepath.Dir(outPath)); err != nil || !fi.IsDir() {
			return api.ObjectGetResult{}, fmt.Errorf("%w: no directory %s", ErrBadPath, filepath.Dir(outPath))
		}
	}
	if _, err := swarm.InfoFromID(id); err != nil {
		return api.ObjectGetResult{}, fmt.Errorf("%w: %w", api.ErrInvalidParams, err)
	}
	st, err := n.store.Object(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return api.ObjectGetResult{}, err
	}
	if err != nil || !st.Complete() {
		if st, err = n.fetch(ctx, id, progress); err != nil {
			return api.ObjectGetResult{}, err
		}
		n.provide(ctx, id)
	} else if progress != nil {
		progress(st.Info.Size, st.Info.Size)
	}
	res := api.ObjectGetResult{Size: st.Info.Size}
	if outPath != "" {
		if err := n.writeObject(id, st.Info, outPath); err != nil {
			return api.ObjectGetResult{}, err
		}
		res.Path = outPath
	}
	return res, nil
}

// fetch gets the chunks of id the store lacks from the providers.
func (n *Node) fetch(ctx context.Context, id cid.Cid, progress func(done, total int64)) (store.ObjectStat, error) {
	sources := n.sources(ctx, id)
	if len(sources) == 0 {
		return store.ObjectStat{}, fmt.Errorf("%w: object %s: no peer provides it", api.ErrNotFound, id)
	}
	type probed struct {
		info swarm.Info
		conn swarm.Conn
		err  error
	}
	res := make([]probed, len(sources))
	var wg sync.WaitGroup
	for i, ai := range sources {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			l, err := n.link(pctx, ai)
			if err != nil {
				res[i].err = err
				return
			}
			c, err := l.Open(pctx, swarm.Service, flitlink.Data)
			if err != nil {
				res[i].err = fmt.Errorf("node: open swarm circuit: %w", err)
				return
			}
			res[i].info, res[i].conn, res[i].err = swarm.Probe(pctx, c, id)
		})
	}
	wg.Wait()
	var (
		info    swarm.Info
		conns   []swarm.Conn
		errs    []error
		refused int // sources that closed the circuit: they lack the object
	)
	for i, r := range res {
		if r.err != nil {
			n.log.Debug("object source unusable", "cid", id, "peer", sources[i].ID, "err", r.err)
			errs = append(errs, r.err)
			if errors.Is(r.err, io.EOF) {
				refused++
			}
			continue
		}
		if len(conns) == 0 {
			info = r.info
		}
		conns = append(conns, r.conn) // Fetch drops a seeder whose size differs
	}
	if len(conns) == 0 && refused == len(sources) {
		return store.ObjectStat{}, fmt.Errorf("%w: object %s: no peer provides it (%d asked)", api.ErrNotFound, id, len(sources))
	}
	if len(conns) == 0 {
		return store.ObjectStat{}, fmt.Errorf("%w: object %s: none of %d providers serves it: %w", api.ErrUnavailable, id, len(sources), errors.Join(errs...))
	}
	if err := n.store.PutObject(id, info); err != nil {
		for _, c := range conns {
			c.Close()
		}
		return store.ObjectStat{}, fmt.Errorf("node: put object %s: %w", id, err)
	}
	sink := &progressSink{Objects: n.store, id: id, total: info.Size, progress: progress}
	if st, err := n.store.Object(id); err == nil {
		sink.done = st.Bytes
	}
	sink.report()
	stats, err := swarm.Fetch(ctx, info, conns, sink, swarm.FetchConfig{Logger: n.log})
	if err != nil {
		return store.ObjectStat{}, fmt.Errorf("%w: fetch %s: %w", api.ErrUnavailable, id, err)
	}
	n.log.Info("object fetched", "cid", id, "size", info.Size, "chunks", stats.Chunks, "peers", len(conns))
	return n.store.Object(id)
}

// sources returns up to maxSources peers to ask for id: DHT providers,
// then linked peers (who may hold it without having announced it).
func (n *Node) sources(ctx context.Context, id cid.Cid) []peer.AddrInfo {
	dctx, cancel := context.WithTimeout(ctx, dhtTimeout)
	provs, err := n.dht.FindProviders(dctx, id, maxSources)
	cancel()
	if err != nil {
		n.log.Debug("find providers", "cid", id, "err", err)
	}
	seen := map[peer.ID]bool{}
	var out []peer.AddrInfo
	for _, ai := range provs {
		if !seen[ai.ID] {
			seen[ai.ID] = true
			out = append(out, ai)
		}
	}
	for _, p := range n.Peers() {
		pid := peer.ID(p.ID.PeerIDBytes())
		if len(out) < maxSources && !seen[pid] {
			seen[pid] = true
			out = append(out, peer.AddrInfo{ID: pid})
		}
	}
	return out
}

// progressSink is the store seen by Fetch, counting the bytes stored.
type progressSink struct {
	store.Objects
	id       cid.Cid
	total    int64
	progress func(done, total int64)

	mu   sync.Mutex // guards done
	done int64
}

func (s *progressSink) PutChunks(id cid.Cid, chunks []swarm.Chunk) error {
	if err := s.Objects.PutChunks(id, chunks); err != nil {
		return err
	}
	n := 0
	for _, c := range chunks {
		n += len(c.Data)
	}
	s.mu.Lock()
	s.done += int64(n)
	s.mu.Unlock()
	s.report()
	return nil
}

func (s *progressSink) report() {
	if s.progress == nil {
		return
	}
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	s.progress(min(done, s.total), s.total)
}

// writeObject writes a complete object to path via a temporary file.
func (n *Node) writeObject(id cid.Cid, info swarm.Info, path string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	for i := range info.Chunks() {
		b, err := n.store.GetChunk(id, i)
		if err != nil {
			return fmt.Errorf("node: read chunk %d of %s: %w", i, id, err)
		}
		if _, err := tmp.Write(b); err != nil {
			return fmt.Errorf("node: write %s: %w", path, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	return nil
}

// object returns the store's record of id as api.ErrNotFound when absent.
func (n *Node) object(id cid.Cid) (store.ObjectStat, error) {
	st, err := n.store.Object(id)
	if errors.Is(err, store.ErrNotFound) {
		return st, fmt.Errorf("%w: object %s", api.ErrNotFound, id)
	}
	return st, err
}

func toAPIObject(id cid.Cid, st store.ObjectStat) api.Object {
	return api.Object{
		CID: id.String(), Size: st.Info.Size, ChunkSize: st.Info.ChunkSize,
		Chunks: st.Info.Chunks(), Held: st.Held, Pinned: st.Pinned,
	}
}

// StatObject reports what the node holds of id.
func (n *Node) StatObject(id cid.Cid) (api.Object, error) {
	st, err := n.object(id)
	if err != nil {
		return api.Object{}, err
	}
	return toAPIObject(id, st), nil
}

// PinObject keeps id from eviction and provides it.
func (n *Node) PinObject(ctx context.Context, id cid.Cid) error {
	if _, err := n.object(id); err != nil {
		return err
	}
	if err := n.store.Pin(id); err != nil {
		return fmt.Errorf("node: pin %s: %w", id, err)
	}
	n.provide(ctx, id)
	return nil
}

// UnpinObject lets id be evicted again.
func (n *Node) UnpinObject(id cid.Cid) error {
	if _, err := n.object(id); err != nil {
		return err
	}
	if err := n.store.Unpin(id); err != nil {
		return fmt.Errorf("node: unpin %s: %w", id, err)
	}
	return nil
}

// ListObjects reports every object the node holds, ordered by CID.
func (n *Node) ListObjects() ([]api.Object, error) {
	ids, err := n.store.ObjectIDs()
	if err != nil {
		return nil, err
	}
	out := make([]api.Object, 0, len(ids))
	for _, id := range ids {
		st, err := n.store.Object(id)
		if errors.Is(err, store.ErrNotFound) {
			continue // evicted meanwhile
		} else if err != nil {
			return nil, err
		}
		out = append(out, toAPIObject(id, st))
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
