package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/contextd/contextd/object"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// This file is the downloader side of swarm/1: Fetch gets one object from
// several peers at once.

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

// The per-peer request window: it starts at startInFlight and moves by one
// chunk per chunk received, up while chunks take less than targetDelay
// from request to arrival and down while they take more (at least
// minInFlight); a timeout halves it. The peer's queue thus holds about
// targetDelay of its rate: enough to keep a fast path busy, little enough
// that a slow peer's backlog (what the others wait for at the tail, or
// re-ask when it dies) stays short.
const (
	startInFlight = 8
	minInFlight   = 2
	targetDelay   = 100 * time.Millisecond
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

// fpeer is the fetcher's view of one peer; the fields are owned by the
// fetch loop unless said otherwise.
type fpeer struct {
	idx    int
	conn   Conn
	cancel context.CancelFunc
	out    outbox

	hs       bool      // HANDSHAKE received
	hsDue    time.Time // when HANDSHAKE is due
	unchoked bool
	maxLimit int // the bound on limit: ours and the peer's
	limit    int // the request window
	have     []bool
	inflight map[uint64]time.Time // requested chunk → when
	timedOut map[uint64]bool      // chunks that timed out here
	starved  uint64               // f.gen when a pick last found nothing
	strikes  int                  // timeout rounds without DATA in between
	dead     bool
}

// outbox is a peer's queue of encoded messages, drained by its writer.
type outbox struct {
	mu  sync.Mutex // guards q
	q   [][]byte
	sig chan struct{} // capacity 1
}

func (o *outbox) push(m Message) {
	o.mu.Lock()
	o.q = append(o.q, m.Append(nil))
	o.mu.Unlock()
	select {
	case o.sig <- struct{}{}:
	default:
	}
}

// pushRanges queues the messages msg makes of the ranges of chunks cs, at
// most MaxRanges ranges each.
func (o *outbox) pushRanges(cs []uint64, msg func([]Range) Message) {
	rs := toRanges(cs)
	for len(rs) > 0 {
		k := min(len(rs), MaxRanges)
		o.push(msg(rs[:k]))
		rs = rs[k:]
	}
}

func asRequest(rs []Range) Message { return Request{Ranges: rs} }
func asCancel(rs []Range) Message  { return Cancel{Ranges: rs} }

func (o *outbox) take() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.q
	o.q = nil
	return q
}

// eventQueue is how many events the peers' readers may queue for the
// fetch loop: they verify ahead while the loop is busy, and a queued event
// tells the idle check that the peers are not silent.
const eventQueue = 64

// fevent is what a peer's reader or writer tells the fetch loop: a
// message, a chunk the reader verified, or why the session ended.
type fevent struct {
	p     *fpeer
	m     Message
	chunk *verified
	err   error
	bad   bool // err is a chunk or hash that does not verify
}

// verified is a run of chunks (one DATA, or one CHUNKS) that verified
// against the root with the uncles the same peer sent.
type verified struct {
	first  uint64
	chunks [][]byte
	proved []object.BinHash // what the check proved: kept to serve them
	buf    *[]byte          // the message's buffer, which chunks alias
}

// recvBufs recycles the buffers of received messages: a run of chunks
// stays in its message's buffer until the batch writer has stored it.
var recvBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxRunBytes+runHeaderRoom); return &b }}

// runHeaderRoom is room for a CHUNKS header beside maxRunBytes of chunks.
const runHeaderRoom = 8 << 10

// fetcher is one Fetch call.
type fetcher struct {
	cfg    FetchConfig
	id     cid.Cid
	info   object.Info
	n      uint64
	height uint
	log    *slog.Logger
	wr     *batchWriter

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
	f.wr = newBatchWriter(dst, f.id)
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

// add starts a session with a peer that came on the peers channel.
func (f *fetcher) add(c Conn) {
	pctx, pcancel := context.WithCancel(f.ctx)
	f.stats.Peers = append(f.stats.Peers, PeerStats{})
	p := &fpeer{
		idx: len(f.peers), conn: c, cancel: pcancel,
		out:      outbox{sig: make(chan struct{}, 1)},
		have:     make([]bool, f.n),
		inflight: make(map[uint64]time.Time),
		timedOut: make(map[uint64]bool),
	}
	f.peers = append(f.peers, p)
	p.out.push(Handshake{
		Capability: Capability, ObjectID: f.id.Bytes(), Hash: f.info.Hash,
		ChunkSize: f.info.ChunkSize, Size: f.info.Size,
	})
	p.hsDue = time.Now().Add(f.cfg.Timeout)
	f.wg.Go(func() { f.read(pctx, p) })
	f.wg.Go(func() { f.write(pctx, p) })
}

func (f *fetcher) pstats(p *fpeer) *PeerStats { return &f.stats.Peers[p.idx] }

// read turns a peer's messages into events. It keeps the hashes the peer
// sent (INTEGRITY, CHUNKS) and verifies each DATA or CHUNKS run with
// them, so that verification runs on as many cores as there are peers; a
// chunk or hash that does not verify ends the session.
func (f *fetcher) read(ctx context.Context, p *fpeer) {
	hashes := make(map[object.Bin][]byte)
	keep := func(hs []object.BinHash) error {
		for _, bh := range hs {
			if !f.inTree(bh.Bin) {
				return fmt.Errorf("%w: hash of bin %v outside the tree", ErrProtocol, bh.Bin)
			}
			hashes[bh.Bin] = bytes.Clone(bh.Hash) // the message's buffer is recycled
		}
		return nil
	}
	for {
		ev := fevent{p: p}
		buf := recvBufs.Get().(*[]byte)
		b, err := p.conn.RecvBuffer(ctx, (*buf)[:0])
		if err == nil {
			ev.m, err = Decode(b, f.info.Hash.Size())
		}
		ev.err = err
		switch m := ev.m.(type) {
		case Integrity:
			ev.err = keep(m.Hashes)
			ev.m = nil
		case Data:
			ev.chunk, ev.err = f.verify(uint64(m.Bin)>>1, m.Data, hashes)
			ev.m = nil
		case Chunks:
			if ev.err = keep(m.Hashes); ev.err == nil {
				ev.chunk, ev.err = f.verify(m.First, m.Data, hashes)
			}
			ev.m = nil
		}
		if ev.chunk != nil && cap(b) > 0 && &b[:1][0] == &(*buf)[:1][0] {
			*buf = b
			ev.chunk.buf = buf // the loop passes it on with the chunks
		} else if ev.m == nil {
			recvBufs.Put(buf) // nothing holds on to it
		}
		ev.bad = errors.Is(ev.err, object.ErrBadChunk)
		if ev.m == nil && ev.chunk == nil && ev.err == nil {
			continue // nothing for the loop
		}
		select {
		case f.events <- ev:
		case <-ctx.Done():
			return
		}
		if ev.err != nil {
			return
		}
	}
}

// verify checks the run of chunks from first that data holds against the
// root, with the uncles in hashes.
func (f *fetcher) verify(first uint64, data []byte, hashes map[object.Bin][]byte) (*verified, error) {
	if first >= f.n {
		return nil, fmt.Errorf("%w: chunk %d of %d", ErrProtocol, first, f.n)
	}
	chunks, proved, err := f.info.VerifyRange(first, data, func(b object.Bin) []byte { return hashes[b] })
	if err != nil {
		return nil, err
	}
	return &verified{first: first, chunks: chunks, proved: proved}, nil
}

// write sends what the loop queued for a peer.
func (f *fetcher) write(ctx context.Context, p *fpeer) {
	for {
		for _, b := range p.out.take() {
			if err := p.conn.Send(ctx, b); err != nil {
				select {
				case f.events <- fevent{p: p, err: fmt.Errorf("swarm: send: %w", err)}:
				case <-ctx.Done():
				}
				return
			}
		}
		select {
		case <-p.out.sig:
		case <-ctx.Done():
			return
		}
	}
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

// unask gives back one request for a missing chunk c: it may be asked
// again (of a second peer in the end game).
func (f *fetcher) unask(c uint64) {
	f.asked[c]--
	f.gen++
}

// forget gives back every request in flight at p.
func (f *fetcher) forget(p *fpeer) {
	for c := range p.inflight {
		f.unask(c)
	}
	clear(p.inflight)
}

// data takes a run of chunks p's reader verified: fresh ones join the
// batch with the hashes that proved them, unrequested or duplicate ones
// are counted and dropped.
func (f *fetcher) data(p *fpeer, v *verified) {
	// The hashes join the batch first: a batch writes its hashes before
	// its chunks, so no chunk is stored without its uncles.
	for _, h := range v.proved {
		if !f.putBins[h.Bin] {
			f.pendingHash[h.Bin] = h.Hash
			f.putBins[h.Bin] = true
		}
	}
	kept := false
	for k, chunk := range v.chunks {
		kept = f.chunk(p, v.first+uint64(k), chunk) || kept
	}
	if v.buf != nil {
		if kept {
			f.pendingBufs = append(f.pendingBufs, v.buf)
		} else {
			recvBufs.Put(v.buf)
		}
	}
	if len(f.pending) >= f.cfg.BatchChunks || f.pendingBytes >= f.cfg.BatchBytes {
		f.flush()
	}
}

// chunk takes one verified chunk c from p into the batch, unless it is
// held already, and reports whether it did.
func (f *fetcher) chunk(p *fpeer, c uint64, data []byte) bool {
	size := int64(len(data))
	st := f.pstats(p)
	st.Bytes += size
	f.cfg.Metrics.chunkIn(len(data), f.done[c])
	at, asked := p.inflight[c]
	if asked {
		delete(p.inflight, c)
		f.asked[c]-- // not back in the pool: it is done now or was before
	}
	if f.done[c] {
		f.stats.DupBytes += size // an end-game duplicate, or already stored
		return false
	}
	// A chunk that comes after its request timed out or was cancelled is
	// verified and still missing: keep it (requests for it elsewhere are
	// withdrawn below).
	p.strikes = 0
	if asked {
		f.adapt(p, time.Since(at))
	}
	if len(f.pending) > 0 && (len(f.pending) >= f.cfg.BatchChunks || f.pendingBytes+len(data) > f.cfg.BatchBytes) {
		f.flush()
	}
	if len(f.pending) == 0 {
		f.pendingSince = time.Now()
	}
	f.pending = append(f.pending, object.Chunk{Index: c, Data: data})
	f.pendingBytes += len(data)
	f.done[c] = true
	f.missing--
	if f.cfg.Window > 0 || f.missing <= uint64(max(f.cfg.EndGame, 0)) {
		f.gen++ // the window moved, or the end game may give idle peers something to ask
	}
	f.stats.Bytes += size
	st.Chunks++
	// End game: withdraw the duplicate requests.
	for _, q := range f.peers {
		if _, ok := q.inflight[c]; ok && !q.dead {
			delete(q.inflight, c)
			f.asked[c]--
			q.out.push(Cancel{Ranges: []Range{{First: c, Last: c}}})
		}
	}
	return true
}

// adapt moves p's request window after a chunk that took took from
// request to arrival (see targetDelay).
func (f *fetcher) adapt(p *fpeer, took time.Duration) {
	if took < targetDelay {
		p.limit = min(p.limit+1, p.maxLimit)
	} else {
		p.limit = max(p.limit-1, min(minInFlight, p.maxLimit))
	}
}

// flush hands the batch to the writer: the hashes go first, so that a
// chunk in dst always has its uncles there.
func (f *fetcher) flush() {
	if len(f.pending) == 0 && len(f.pendingHash) == 0 {
		return
	}
	f.wr.put(batch{chunks: f.pending, hashes: f.pendingHash, bufs: f.pendingBufs})
	f.pending, f.pendingBytes, f.pendingBufs = nil, 0, nil
	f.pendingHash = make(map[object.Bin][]byte)
}

// batch is verified chunks, the new hashes they came with, and the
// received buffers the chunks alias (recycled once they are written).
type batch struct {
	chunks []object.Chunk
	hashes map[object.Bin][]byte
	bufs   []*[]byte
}

// batchWriter writes batches to the sink in order on a goroutine of its
// own, so that the sink's writes overlap the network. One batch waits
// while another is written; put blocks beyond that.
type batchWriter struct {
	dst  ChunkSink
	id   cid.Cid
	in   chan batch
	exit chan struct{} // closed when the goroutine has returned
	// failed is closed on the first failure, after err is set; the
	// writer then takes no more batches.
	failed chan struct{}
	err    error
	stored uint64 // chunks written; read after exit
}

func newBatchWriter(dst ChunkSink, id cid.Cid) *batchWriter {
	w := &batchWriter{dst: dst, id: id, in: make(chan batch, 1), exit: make(chan struct{}), failed: make(chan struct{})}
	go w.run()
	return w
}

func (w *batchWriter) run() {
	defer close(w.exit)
	for b := range w.in {
		if err := w.write(b); err != nil {
			w.err = err
			close(w.failed)
			return
		}
		for _, buf := range b.bufs {
			recvBufs.Put(buf)
		}
		w.stored += uint64(len(b.chunks))
	}
}

// put queues a batch. It gives up only once the writer has failed (the
// fetch then ends with that error); otherwise every batch is written, in
// order, so that no chunk reaches the sink without the uncles an earlier
// batch carried.
func (w *batchWriter) put(b batch) {
	select {
	case w.in <- b:
	case <-w.failed:
	}
}

// close waits for the queued batches and returns the first failure.
func (w *batchWriter) close() error {
	close(w.in)
	<-w.exit
	return w.err
}

// write puts one batch's hashes, object.MaxHashBatch at a time, then its chunks.
func (w *batchWriter) write(b batch) error {
	put := make(map[object.Bin][]byte, min(len(b.hashes), object.MaxHashBatch))
	for bin, h := range b.hashes {
		put[bin] = h
		if len(put) == object.MaxHashBatch || len(put) == len(b.hashes) {
			if err := w.dst.PutHashes(w.id, put); err != nil {
				return fmt.Errorf("swarm: fetch: store hashes: %w", err)
			}
			clear(put)
		}
	}
	if len(put) > 0 {
		if err := w.dst.PutHashes(w.id, put); err != nil {
			return fmt.Errorf("swarm: fetch: store hashes: %w", err)
		}
	}
	if len(b.chunks) == 0 {
		return nil
	}
	if err := w.dst.PutChunks(w.id, b.chunks); err != nil {
		return fmt.Errorf("swarm: fetch: store chunks %d to %d (%d of them): %w",
			b.chunks[0].Index, b.chunks[len(b.chunks)-1].Index, len(b.chunks), err)
	}
	return nil
}

// expire handles requests past their deadline and handshakes not come.
func (f *fetcher) expire(now time.Time) {
	for _, p := range f.peers {
		if p.dead {
			continue
		}
		if !p.hs {
			if !now.Before(p.hsDue) {
				f.drop(p, fmt.Errorf("%w: no HANDSHAKE within %v", ErrProtocol, f.cfg.Timeout), false)
			}
			continue
		}
		var late []uint64
		for c, at := range p.inflight {
			if now.Sub(at) >= f.cfg.Timeout {
				late = append(late, c)
			}
		}
		if len(late) == 0 {
			continue
		}
		slices.Sort(late)
		for _, c := range late {
			delete(p.inflight, c)
			f.unask(c)
			p.timedOut[c] = true
		}
		f.stats.Timeouts += len(late)
		p.limit = max(p.limit/2, min(minInFlight, p.maxLimit))
		p.out.pushRanges(late, asCancel)
		if p.strikes++; p.strikes >= 2 {
			f.drop(p, fmt.Errorf("swarm: fetch: peer stalled (%d requests timed out)", len(late)), false)
		}
	}
}

// schedule refills the request window of every ready peer once a quarter
// of it is free, so that one scan for chunks serves several requests.
func (f *fetcher) schedule() {
	now := time.Now()
	for _, p := range f.peers {
		if p.dead || !p.hs || !p.unchoked || p.starved == f.gen+1 {
			continue
		}
		free := p.limit - len(p.inflight)
		if free <= 0 || free < p.limit/4 && len(p.inflight) > 0 {
			continue
		}
		req := f.pick(p, free)
		if len(req) == 0 {
			p.starved = f.gen + 1 // nothing until gen moves
			continue
		}
		for _, c := range req {
			p.inflight[c] = now
			f.asked[c]++
		}
		p.out.pushRanges(req, asRequest)
	}
}

// pick chooses up to k chunks to ask of p: missing chunks p holds that no
// one is asked for, rarest first, lowest index among equals (inside the
// window in streaming mode); in the end game, chunks asked of one other
// peer. The result is sorted rarest first.
func (f *fetcher) pick(p *fpeer, k int) []uint64 {
	for f.lo < f.n && f.done[f.lo] {
		f.lo++
	}
	lo, hi := f.lo, f.n
	if f.cfg.Window > 0 {
		hi = min(f.n, lo+uint64(f.cfg.Window))
	}
	// byAvail[a-1] holds the first k candidates held by a live peers;
	// retry, those that timed out at p before and that others hold too:
	// they come last, so another peer gets them first, but are never
	// excluded (they may have timed out at every holder).
	var byAvail [][]uint64
	var retry []uint64
	for c := lo; c < hi; c++ {
		if f.done[c] || !p.have[c] || f.asked[c] > 0 {
			continue
		}
		if p.timedOut[c] && f.avail[c] > 1 {
			if len(retry) < k {
				retry = append(retry, c)
			}
			continue
		}
		a := max(f.avail[c], 1)
		for len(byAvail) < a {
			byAvail = append(byAvail, nil)
		}
		if len(byAvail[a-1]) < k {
			byAvail[a-1] = append(byAvail[a-1], c)
		}
		if a == 1 && len(byAvail[0]) == k {
			break // none can be rarer
		}
	}
	var out []uint64
	for _, cs := range append(byAvail, retry) {
		out = append(out, cs[:min(len(cs), k-len(out))]...)
	}
	if len(out) > 0 || f.cfg.EndGame < 0 || f.missing > uint64(f.cfg.EndGame) {
		return out
	}
	for c := lo; c < hi && len(out) < k; c++ {
		if _, mine := p.inflight[c]; f.done[c] || !p.have[c] || mine || f.asked[c] > 1 {
			continue
		}
		out = append(out, c)
	}
	return out
}
