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
