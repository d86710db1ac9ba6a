package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/object"
)

// This file is the downloader side of swarm/1: Fetch gets one object from
// several peers at once. Its loop (here) owns the fetch's state; each
// peer's reader and writer are fetch_peer.go, what to ask of whom and
// when to give up on a request fetch_pick.go, and how verified chunks
// reach the sink fetch_store.go.

// ChunkSink is where Fetch writes verified chunks and hashes (store.Objects
// satisfies it). Have tells which chunks are already held; the object must
// be known to the sink (store.Objects.PutObject) before Fetch. Fetch puts
// chunks in batches of at most FetchConfig.BatchChunks chunks and
// FetchConfig.BatchBytes bytes (one chunk may exceed that alone), and at
// most 256 hashes at a time (store.MaxPutHashes); the sink may keep neither slice nor
// data after the call returns.
type ChunkSink interface {
	Have(id cid.Cid) ([]byte, error)
	PutChunks(id cid.Cid, chunks []object.Chunk) error
	PutHashes(id cid.Cid, hashes map[object.Bin][]byte) error
}

// Fetch defaults for the zero FetchConfig.
const (
	DefaultFetchTimeout = 2 * time.Second
	// DefaultInFlight bounds the requests in flight at one peer; the
	// window starts at startInFlight and adapts to the peer (see
	// FetchConfig.InFlight).
	DefaultInFlight = 256
	DefaultEndGame  = 4
	// DefaultBatchChunks and DefaultBatchBytes bound a batch of verified
	// chunks put at once (store.MaxPutChunks, store.MaxPutChunkBytes).
	DefaultBatchChunks = 256
	DefaultBatchBytes  = 4 << 20
	// DefaultFlushDelay is how long a verified chunk may wait in a batch
	// that is not full.
	DefaultFlushDelay = 20 * time.Millisecond
	// DefaultIdle is how long a fetch waits with chunks missing and no
	// peer saying anything before it gives up (ErrStalled).
	DefaultIdle = 30 * time.Second
)

// ErrNoPeers is returned by Fetch when every peer has gone (dropped, failed
// or closed) and no more will come before the object is complete.
var ErrNoPeers = errors.New("swarm: no peer left to fetch from")

// ErrStalled is returned by Fetch when no peer came or sent anything for
// FetchConfig.Idle while chunks were missing: the peers at hand lack them
// and nothing suggests they will get them.
var ErrStalled = errors.New("swarm: fetch stalled: no peer has the missing chunks")

// FetchConfig configures Fetch. The zero value means the defaults.
type FetchConfig struct {
	// Timeout is how long a requested chunk may take before it is asked
	// of another peer, and how long a peer may take to send HANDSHAKE
	// (0: DefaultFetchTimeout).
	Timeout time.Duration
	// InFlight bounds the requested, unanswered chunks per peer; the
	// peer's HANDSHAKE max_requests bounds it further (0:
	// DefaultInFlight). Below the bound the window adapts to the peer.
	InFlight int
	// EndGame is how many chunks may be missing for a chunk already asked
	// of one peer to be asked of a second (0: DefaultEndGame; <0: never).
	EndGame int
	// Window, if positive, is the streaming mode: chunks are picked among
	// the Window chunks from the first missing one on (rarest first inside
	// the window), so the object arrives roughly in order.
	Window int
	// BatchChunks and BatchBytes bound the batches of verified chunks
	// written to the sink with one PutChunks (0: DefaultBatchChunks,
	// DefaultBatchBytes); a batch is written once full, once its first
	// chunk has waited FlushDelay (0: DefaultFlushDelay) and before Fetch
	// returns. BatchChunks 1 writes each chunk as it is verified. Batches
	// are written by a goroutine of their own, in order, while the next
	// one fills; at most two wait for the sink.
	BatchChunks int
	BatchBytes  int
	FlushDelay  time.Duration
	// Idle is how long Fetch waits, with chunks missing, for any peer to
	// come or send anything before it returns ErrStalled (0: DefaultIdle).
	// Peers that hold part of the object announce more as they get it, so
	// a quiet swarm is waited for this long.
	Idle time.Duration
	// OnPex, if not nil, is called from the fetch loop with the peers each
	// PEX names, so that the caller can reach them and hand their sessions
	// in on the peers channel. It must not block.
	OnPex func(peers []PexPeer)
	// Logger receives per-peer events at Debug level (nil: discard).
	Logger *slog.Logger
	// Metrics, if not nil, counts chunks and times the fetch (metrics.go).
	Metrics *Metrics
}

func (c FetchConfig) fill() FetchConfig {
	if c.Timeout <= 0 {
		c.Timeout = DefaultFetchTimeout
	}
	if c.InFlight <= 0 {
		c.InFlight = DefaultInFlight
	}
	c.InFlight = min(c.InFlight, MaxRequestsInFlight)
	if c.EndGame == 0 {
		c.EndGame = DefaultEndGame
	}
	if c.BatchChunks <= 0 {
		c.BatchChunks = DefaultBatchChunks
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// FetchStats is what a Fetch did.
type FetchStats struct {
	Chunks uint64 // chunks verified and stored (held before Fetch included)
	Bytes  int64  // payload bytes verified for storing
	// DupBytes is payload received but not stored: chunks already stored
	// (end-game duplicates, late answers to requests asked elsewhere).
	DupBytes int64
	Timeouts int // requests that timed out and were asked elsewhere
	Peers    []PeerStats
}

// PeerStats is what one peer of a Fetch did, in the order the peers came.
type PeerStats struct {
	Chunks uint64 // chunks from this peer that were stored
	Bytes  int64  // payload bytes received from this peer, stored or not
	// Bad is set when the peer sent a chunk or hash that did not verify:
	// it was dropped and never asked again.
	Bad bool
	// Err is why the peer's session ended before the fetch did (nil if it
	// lasted).
	Err error
}

// fetcher is one Fetch call.
type fetcher struct {
	cfg    FetchConfig
	id     cid.Cid
	info   object.Info
	n      uint64
	height uint
	log    *slog.Logger
	wr     *batchWriter
	bufs   bufPool // received messages' buffers

	peers   []*fpeer
	wg      sync.WaitGroup // the peers' readers and writers
	ctx     context.Context
	events  chan fevent
	done    []bool    // chunk verified (and stored or on its way)
	lo      uint64    // no chunk below lo is missing
	heard   time.Time // when a peer last came or sent anything
	missing uint64
	held    uint64 // chunks held before Fetch
	avail   []int  // live peers holding each chunk
	asked   []int  // outstanding requests for each chunk
	// gen counts the changes that may give a starved peer something to
	// ask: a chunk back in the pool, a HAVE, the end game.
	gen     uint64
	putBins map[object.Bin]bool
	stats   FetchStats
	// The batch: verified chunks and hashes not yet handed to wr.
	pending      []object.Chunk
	pendingBytes int
	pendingSince time.Time
	pendingHash  map[object.Bin][]byte
	pendingBufs  []*[]byte // the received buffers pending chunks alias
}

// Fetch downloads the object described by info into dst from the sessions
// (one Conn each, with a peer serving the object) that arrive on peers:
// Fetch starts with those at hand and takes more as they come, until peers
// is closed. It sends HANDSHAKE (it serves nothing), learns each peer's
// HAVE and asks each missing chunk of one peer at a time, rarest first
// (streaming mode: inside FetchConfig.Window), with a request window per
// peer that adapts to it (FetchConfig.InFlight). Each peer's reader
// verifies every chunk against info.Root with the uncles from that peer's
// INTEGRITY before the loop sees it; verified chunks and their new uncles
// are written to dst in batches, off the loop. A request that times out is
// cancelled and asked of another peer; a peer that sends a chunk or hash
// that does not verify, breaks the protocol or stalls is dropped. Only
// when at most FetchConfig.EndGame chunks are missing and all are asked may
// a chunk be asked of a second peer.
//
// Fetch returns once every chunk is in dst (nil), when ctx ends, when dst
// fails, or with ErrNoPeers once peers is closed and every session has
// ended. It closes every conn it received before it returns; the caller
// must not send on peers after that (select on its own done signal).
func Fetch(ctx context.Context, info object.Info, peers <-chan Conn, dst ChunkSink, cfg FetchConfig) (FetchStats, error) {
	start := time.Now()
	cfg = cfg.fill()
	n := info.Chunks()
	if n == 0 || !info.Hash.Valid() || len(info.Root) != info.Hash.Size() {
		return FetchStats{}, fmt.Errorf("swarm: fetch: %w: bad object info", object.ErrBadChunk)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &fetcher{
		cfg: cfg, id: info.ID(), info: info, n: n, height: info.Height(), log: cfg.Logger,
		ctx:         ctx,
		events:      make(chan fevent, eventQueue),
		done:        make([]bool, n),
		avail:       make([]int, n),
		asked:       make([]int, n),
		putBins:     make(map[object.Bin]bool),
		pendingHash: make(map[object.Bin][]byte),
	}
	bits, err := dst.Have(f.id)
	if err != nil {
		return f.stats, fmt.Errorf("swarm: fetch: have: %w", err)
	}
	for i := range n {
		if bitSet(bits, i) {
			f.done[i] = true
			f.held++
		} else {
			f.missing++
		}
	}
	f.bufs = newBufPool()
	f.wr = newBatchWriter(dst, f.id, f.bufs)
	defer func() {
		for _, p := range f.peers {
			p.cancel()
			p.conn.Close()
		}
		f.wg.Wait()
	}()
	err = f.run(peers)
	// Verified chunks are worth keeping whatever ended the fetch.
	f.flush()
	if werr := f.wr.close(); werr != nil && err == nil {
		err = werr
	}
	f.stats.Chunks = f.held + f.wr.stored
	cfg.Metrics.fetched(start, err)
	return f.stats, err
}

// run is the fetch loop: the only goroutine that touches the fetcher's
// and the peers' state.
func (f *fetcher) run(peers <-chan Conn) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	f.heard = time.Now()
	for f.missing > 0 {
		if peers == nil && f.live() == 0 {
			return ErrNoPeers
		}
		f.schedule()
		d := f.heard.Add(f.cfg.Idle)
		if t, ok := f.nextDeadline(); ok && t.Before(d) {
			d = t
		}
		if at := f.pendingSince.Add(f.cfg.FlushDelay); len(f.pending) > 0 && at.Before(d) {
			d = at
		}
		timer.Reset(time.Until(d))
		select {
		case c, ok := <-peers:
			if !ok {
				peers = nil
				continue
			}
			f.add(c)
			f.heard = time.Now()
		case ev := <-f.events:
			if ev.p.dead {
				continue
			}
			f.heard = time.Now()
			if ev.err != nil {
				if ev.bad {
					f.cfg.Metrics.chunkRejected()
				}
				f.drop(ev.p, ev.err, ev.bad)
				continue
			}
			if ev.chunk != nil {
				f.data(ev.p, ev.chunk)
				continue
			}
			f.handle(ev.p, ev.m)
		case <-f.wr.failed:
			return f.wr.err
		case <-timer.C:
			now := time.Now()
			// Idle only if no event waits either: the loop itself may
			// have been held up (by the sink), not the peers.
			if now.Sub(f.heard) >= f.cfg.Idle && len(f.events) == 0 {
				return fmt.Errorf("%w (%d of %d chunks, %d peers, nothing for %v)", ErrStalled, f.n-f.missing, f.n, f.live(), f.cfg.Idle)
			}
			if len(f.pending) > 0 && !now.Before(f.pendingSince.Add(f.cfg.FlushDelay)) {
				f.flush()
			}
			f.expire(now)
		case <-f.ctx.Done():
			return f.ctx.Err()
		}
	}
	return nil
}

func (f *fetcher) live() int {
	k := 0
	for _, p := range f.peers {
		if !p.dead {
			k++
		}
	}
	return k
}

// nextDeadline returns the earliest request or handshake deadline.
func (f *fetcher) nextDeadline() (time.Time, bool) {
	var d time.Time
	for _, p := range f.peers {
		if p.dead {
			continue
		}
		if !p.hs && (d.IsZero() || p.hsDue.Before(d)) {
			d = p.hsDue
		}
		for _, t := range p.inflight {
			if t = t.Add(f.cfg.Timeout); d.IsZero() || t.Before(d) {
				d = t
			}
		}
	}
	return d, !d.IsZero()
}

// drop ends a peer's session and gives its requests back; bad marks a
// peer that sent something that does not verify.
func (f *fetcher) drop(p *fpeer, err error, bad bool) {
	if p.dead {
		return
	}
	p.dead = true
	st := f.pstats(p)
	st.Err, st.Bad = err, bad
	f.log.Debug("swarm: fetch: peer dropped", "peer", p.idx, "bad", bad, "err", err)
	f.forget(p)
	for c, h := range p.have {
		if h {
			f.avail[c]--
		}
	}
	f.gen++ // a chunk only p shunned may now be pickable elsewhere
	p.cancel()
	p.conn.Close()
}

// handle applies one message of a live peer; peer faults drop the peer.
func (f *fetcher) handle(p *fpeer, m Message) {
	if !p.hs {
		h, ok := m.(Handshake)
		if !ok {
			f.drop(p, fmt.Errorf("%w: %v before HANDSHAKE", ErrProtocol, m.Type()), false)
			return
		}
		if err := checkHandshake(h, f.id, f.info); err != nil {
			f.drop(p, err, false)
			return
		}
		p.hs = true
		p.maxLimit = int(max(1, min(h.MaxRequests, uint64(f.cfg.InFlight))))
		p.limit = min(startInFlight, p.maxLimit)
		return
	}
	switch m := m.(type) {
	case Handshake:
		f.drop(p, fmt.Errorf("%w: second HANDSHAKE", ErrProtocol), false)
	case Have:
		for _, r := range m.Ranges {
			if r.Last >= f.n {
				f.drop(p, fmt.Errorf("%w: HAVE chunk %d of %d", ErrProtocol, r.Last, f.n), false)
				return
			}
			for c := r.First; c <= r.Last; c++ {
				if !p.have[c] {
					p.have[c] = true
					f.avail[c]++
				}
			}
		}
		f.gen++
	case Unchoke:
		p.unchoked = true
	case Choke:
		p.unchoked = false
		f.forget(p) // the server drops them; ask elsewhere
	case Pex:
		if f.cfg.OnPex != nil {
			f.cfg.OnPex(m.Peers)
		}
	}
	// REQUEST, CANCEL and unknown types: Fetch serves nothing.
}

// inTree reports whether b is a node of the covering tree below the root.
func (f *fetcher) inTree(b object.Bin) bool {
	l := b.Layer()
	return l < f.height && b.Offset() < uint64(1)<<(f.height-l)
}
