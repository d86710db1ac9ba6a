package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

// This file is the fetching half of objects (objects.go has the rest):
// GetObject finds sources, probes them, swarms the missing chunks into the
// store and writes the object out.

// GetObject makes the node hold object id, fetching what it lacks from the
// peers that provide it (DHT providers and linked peers), then writes it to
// outPath (absolute; none if empty) through a temporary file in the same
// directory. A fetched object is then provided in the background. progress, if not nil, is called with the bytes
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
	defer n.evictSoon()     // runs last: after the object is released
	defer n.useObject(id)() // eviction spares it while it is fetched and written out
	st, err := n.store.Object(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return api.ObjectGetResult{}, err
	}
	if err != nil || !st.Complete() {
		if st, err = n.fetch(ctx, id, progress); err != nil {
			return api.ObjectGetResult{}, err
		}
		// Announcing may take a DHT round trip per closest peer (some
		// may be gone): the caller does not wait for it.
		n.wg.Go(func() { n.provide(n.ctx, id) })
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

// probed is one source after its probe: a session ready for Fetch with
// the object's Info, or why not.
type probed struct {
	peer peer.ID
	info swarm.Info
	conn swarm.Conn
	err  error
}

// fetch gets the chunks of id the store lacks. Sources are probed as they
// are found (linked peers at once, DHT providers as the lookup yields
// them); the fetch starts with the first that serves the object and the
// others join it as their probes succeed, so a slow or dead provider
// delays nothing.
func (n *Node) fetch(ctx context.Context, id cid.Cid, progress func(done, total int64)) (store.ObjectStat, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	probes := make(chan probed)
	go n.probeSources(ctx, id, probes)
	var (
		first   probed
		errs    []error
		asked   int
		refused int // sources that closed the circuit: they lack the object
	)
	for r := range probes {
		asked++
		if r.err == nil {
			first = r
			break
		}
		n.log.Debug("object source unusable", "cid", id, "peer", r.peer, "err", r.err)
		errs = append(errs, r.err)
		if errors.Is(r.err, io.EOF) {
			refused++
		}
	}
	switch {
	case first.conn == nil && ctx.Err() != nil:
		return store.ObjectStat{}, ctx.Err()
	case asked == 0:
		return store.ObjectStat{}, fmt.Errorf("%w: object %s: no peer provides it", api.ErrNotFound, id)
	case first.conn == nil && refused == asked:
		return store.ObjectStat{}, fmt.Errorf("%w: object %s: no peer provides it (%d asked)", api.ErrNotFound, id, asked)
	case first.conn == nil:
		return store.ObjectStat{}, fmt.Errorf("%w: object %s: none of %d providers serves it: %w", api.ErrUnavailable, id, asked, errors.Join(errs...))
	}
	// The sessions Fetch has not taken are closed once it returns (the
	// buffer holds every source probeSources may find).
	conns := make(chan swarm.Conn, 2*maxSources)
	conns <- first.conn
	go func() {
		defer close(conns)
		for r := range probes {
			if r.err != nil {
				n.log.Debug("object source unusable", "cid", id, "peer", r.peer, "err", r.err)
				continue
			}
			conns <- r.conn // Fetch drops a seeder whose size differs
		}
	}()
	defer func() {
		cancel()
		for c := range conns {
			c.Close()
		}
	}()
	info := first.info
	if err := n.store.PutObject(id, info); err != nil {
		return store.ObjectStat{}, fmt.Errorf("node: put object %s: %w", id, err)
	}
	sink := &progressSink{Objects: n.store, grew: n.grew, id: id, total: info.Size, progress: progress}
	if st, err := n.store.Object(id); err == nil {
		sink.done = st.Bytes
	}
	sink.report()
	stats, err := swarm.Fetch(ctx, info, conns, sink, swarm.FetchConfig{Logger: n.log})
	if err != nil {
		return store.ObjectStat{}, fmt.Errorf("%w: fetch %s: %w", api.ErrUnavailable, id, err)
	}
	n.log.Info("object fetched", "cid", id, "size", info.Size, "chunks", stats.Chunks, "peers", len(stats.Peers))
	return n.store.Object(id)
}

// probeSources probes up to maxSources linked peers (who may hold id
// without having announced it) and up to maxSources DHT providers of id,
// all at once, and sends each result on out as it comes; it closes out
// when all are in. Once ctx ends, results not taken are dropped (their
// sessions closed).
func (n *Node) probeSources(ctx context.Context, id cid.Cid, out chan<- probed) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(out)
	}()
	seen := map[peer.ID]bool{n.host.ID(): true}
	try := func(ai peer.AddrInfo) {
		if seen[ai.ID] {
			return
		}
		seen[ai.ID] = true
		wg.Go(func() {
			r := n.probe(ctx, ai, id)
			select {
			case out <- r:
			case <-ctx.Done():
				if r.conn != nil {
					r.conn.Close()
				}
			}
		})
	}
	for i, p := range n.Peers() {
		if i == maxSources {
			break
		}
		try(peer.AddrInfo{ID: peer.ID(p.ID.PeerIDBytes())})
	}
	dctx, cancel := context.WithTimeout(ctx, dhtTimeout)
	defer cancel()
	for ai := range n.dht.StreamProviders(dctx, id, maxSources) {
		try(ai)
	}
}

// probe reaches one source and starts a session for id there.
func (n *Node) probe(ctx context.Context, ai peer.AddrInfo, id cid.Cid) probed {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	r := probed{peer: ai.ID}
	l, err := n.link(ctx, ai)
	if err != nil {
		r.err = err
		return r
	}
	c, err := l.Open(ctx, swarm.Service, flitlink.Data)
	if err != nil {
		r.err = fmt.Errorf("node: open swarm circuit: %w", err)
		return r
	}
	r.info, r.conn, r.err = swarm.Probe(ctx, c, id)
	return r
}

// progressSink is the store seen by Fetch, counting the bytes stored.
type progressSink struct {
	store.Objects
	grew     func(id cid.Cid, chunks []swarm.Chunk) // tells the sessions serving the object
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
	s.grew(id, chunks)
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
	var b []byte
	for i := range info.Chunks() {
		if b, err = n.store.AppendChunk(b[:0], id, i); err != nil {
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

// watchGrowth returns the Growth through which a swarm/1 session serving
// id learns of the chunks a fetch stores meanwhile, and the function that
// stops it.
func (n *Node) watchGrowth(id cid.Cid) (*swarm.Growth, func()) {
	k := id.KeyString()
	g := swarm.NewGrowth()
	n.growMu.Lock()
	if n.growths[k] == nil {
		n.growths[k] = map[*swarm.Growth]struct{}{}
	}
	n.growths[k][g] = struct{}{}
	n.growMu.Unlock()
	return g, func() {
		n.growMu.Lock()
		defer n.growMu.Unlock()
		delete(n.growths[k], g)
		if len(n.growths[k]) == 0 {
			delete(n.growths, k)
		}
	}
}

// grew tells the sessions serving id of chunks just stored.
func (n *Node) grew(id cid.Cid, chunks []swarm.Chunk) {
	n.growMu.Lock()
	defer n.growMu.Unlock()
	gs := n.growths[id.KeyString()]
	if len(gs) == 0 {
		return
	}
	is := make([]uint64, len(chunks))
	for i, c := range chunks {
		is[i] = c.Index
	}
	for g := range gs {
		g.Add(is...)
	}
}
