package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

// This file is the fetching half of objects (objects.go has the rest):
// fetch finds sources, probes them and swarms the missing chunks into the
// store, for OpenObject.

// fetch gets the chunks of id the store lacks. Sources are probed as they
// are found (linked peers at once, DHT providers as the lookup yields
// them, peers a PEX names while the fetch runs); the fetch starts with the
// first that serves the object and the others join it as their probes
// succeed, so a slow or dead provider delays nothing.
func (n *Node) fetch(ctx context.Context, id cid.Cid, progress func(done, total int64)) (store.ObjectStat, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src := n.findSources(ctx, id)
	var (
		first   probed
		errs    []error
		asked   int
		refused int // sources that closed the circuit: they lack the object
	)
	for r := range src.results {
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
	conns := src.sessions(first.conn)
	defer func() {
		// Sessions Fetch has not taken are closed; the channel closes
		// once every probe has ended.
		cancel()
		for c := range conns {
			c.Close()
		}
	}()
	info := first.info
	if err := n.store.PutObject(id, info); err != nil {
		return store.ObjectStat{}, fmt.Errorf("node: put object %s: %w", id, err)
	}
	sink := &progressSink{Objects: n.store, grew: n.grew, total: info.Size, progress: progress}
	if st, err := n.store.Object(id); err == nil {
		sink.done = st.Bytes
	}
	sink.report()
	stats, err := swarm.Fetch(ctx, info, conns, sink, swarm.FetchConfig{OnPex: src.pex, Logger: n.log, Metrics: n.metrics.swarm})
	if err != nil {
		return store.ObjectStat{}, fmt.Errorf("%w: fetch %s: %w", api.ErrUnavailable, id, err)
	}
	n.log.Info("object fetched", "cid", id, "size", info.Size, "chunks", stats.Chunks, "peers", len(stats.Peers))
	return n.store.Object(id)
}

// progressSink is the store seen by Fetch: it counts the bytes stored for
// progress and tells the sessions serving the object of its new chunks.
type progressSink struct {
	store.Objects
	grew     func(id cid.Cid, chunks []object.Chunk)
	total    int64
	progress func(done, total int64)

	mu   sync.Mutex // guards done
	done int64
}

func (s *progressSink) PutChunks(id cid.Cid, chunks []object.Chunk) error {
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
func (n *Node) grew(id cid.Cid, chunks []object.Chunk) {
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
