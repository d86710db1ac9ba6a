package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// This file is the downloader side of swarm/1: Fetch gets one object from
// several peers at once (DESIGN §7, "Multi-source").

// Chunk is one chunk of an object: its index and its bytes.
type Chunk struct {
	Index uint64
	Data  []byte
}

// ChunkSink is where Fetch writes verified chunks and hashes (store.Objects
// satisfies it). Have tells which chunks are already held; the object must
// be known to the sink (store.Objects.PutObject) before Fetch. Fetch puts
// chunks in batches of at most FetchConfig.BatchChunks chunks and
// FetchConfig.BatchBytes bytes (one chunk may exceed that alone), and at
// most 256 hashes at a time (store.MaxPutHashes); the sink may keep neither slice nor
// data after the call returns.
type ChunkSink interface {
	Have(id cid.Cid) ([]byte, error)
	PutChunks(id cid.Cid, chunks []Chunk) error
	PutHashes(id cid.Cid, hashes map[Bin][]byte) error
}

// Fetch defaults for the zero FetchConfig.
const (
	DefaultFetchTimeout = 2 * time.Second
	DefaultInFlight     = 8
	DefaultEndGame      = 4
	// DefaultBatchChunks and DefaultBatchBytes bound a batch of verified
	// chunks put at once (store.MaxPutChunks, store.MaxPutChunkBytes).
	DefaultBatchChunks = 256
	DefaultBatchBytes  = 4 << 20
	// DefaultFlushDelay is how long a verified chunk may wait in a batch
	// that is not full.
	DefaultFlushDelay = 20 * time.Millisecond
)

// ErrNoPeers is returned by Fetch when every peer has gone (dropped, failed
// or closed) before the object is complete.
var ErrNoPeers = errors.New("swarm: no peer left to fetch from")

// FetchConfig configures Fetch. The zero value means the defaults.
type FetchConfig struct {
	// Timeout is how long a requested chunk may take before it is asked
	// of another peer, and how long a peer may take to send HANDSHAKE
	// (0: DefaultFetchTimeout).
	Timeout time.Duration
	// InFlight bounds the requested, unanswered chunks per peer; the
	// peer's HANDSHAKE max_requests bounds it further (0: DefaultInFlight).
	InFlight int
	// EndGame is how many chunks may be missing for a chunk already asked
	// of one peer to be asked of a second (0: DefaultEndGame; <0: never).
	EndGame int
	// Window, if positive, is the streaming mode: chunks are picked among
	// the first Window missing ones (rarest first inside the window), so
	// the object arrives roughly in order.
	Window int
	// BatchChunks and BatchBytes bound the batches of verified chunks
	// written to the sink with one PutChunks (0: DefaultBatchChunks,
	// DefaultBatchBytes); a batch is written once full, once its first
	// chunk has waited FlushDelay (0: DefaultFlushDelay) and before Fetch
	// returns. BatchChunks 1 writes each chunk as it is verified.
	BatchChunks int
	BatchBytes  int
	FlushDelay  time.Duration
	// Logger receives per-peer events at Debug level (nil: discard).
	Logger *slog.Logger
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// FetchStats is what a Fetch did.
type FetchStats struct {
	Chunks uint64 // chunks verified and stored (held before Fetch included)
	Bytes  int64  // payload bytes stored
	// DupBytes is payload received but not stored: end-game duplicates and
	// answers that came after a timeout or cancel.
	DupBytes int64
	Timeouts int // requests that timed out and were asked elsewhere
	Peers    []PeerStats
}

// PeerStats is what one peer of a Fetch did, in the order of the peers.
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

	hs       bool // HANDSHAKE received
	unchoked bool
	limit    int
	have     []bool
	inflight map[uint64]time.Time // requested chunk → deadline
	timedOut map[uint64]bool      // chunks that timed out here
	hashes   map[Bin][]byte       // hashes received in this session
	strikes  int                  // timeout rounds without DATA in between
	dead     bool
	stats    *PeerStats
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

func (o *outbox) take() [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	q := o.q
	o.q = nil
	return q
}

// fevent is what a peer's reader or writer tells the fetch loop.
type fevent struct {
	p   *fpeer
	m   Message
	err error
}

// fetcher is one Fetch call.
type fetcher struct {
	cfg    FetchConfig
	id     cid.Cid
	info   Info
	n      uint64
	height uint
	dst    ChunkSink
	log    *slog.Logger

	peers   []*fpeer
	events  chan fevent
	done    []bool // chunk stored
	missing uint64
	avail   []int // live peers holding each chunk
	asked   []int // outstanding requests for each chunk
	putBins map[Bin]bool
	stats   FetchStats
	// The batch: verified chunks and hashes not yet written to dst.
	pending      []Chunk
	pendingBytes int
	pendingSince time.Time
	pendingHash  map[Bin][]byte
	deadline     time.Time // handshakes due (zero once all arrived or dropped)
}

// Fetch downloads the object described by info from peers into dst. Each
// peer is a session (one Conn) with a peer serving the object; Fetch sends
// HANDSHAKE (it serves nothing), learns each peer's HAVE and asks each
// missing chunk of one peer at a time, rarest first (streaming mode:
// inside FetchConfig.Window), keeping at most FetchConfig.InFlight requests
// in flight per peer. Every chunk is verified against info.Root with the
// uncles from the peer's INTEGRITY before it is written to dst, with its
// new uncles. A request that times out is cancelled and asked of another
// peer; a peer that sends a chunk or hash that does not verify, breaks the
// protocol or stalls is dropped. Only when at most FetchConfig.EndGame
// chunks are missing and all are asked may a chunk be asked of a second
// peer. Fetch returns once every chunk is in dst (nil), when ctx ends,
// when dst fails, or with ErrNoPeers. It closes every conn before it
// returns.
func Fetch(ctx context.Context, info Info, peers []Conn, dst ChunkSink, cfg FetchConfig) (FetchStats, error) {
	cfg = cfg.fill()
	n := info.Chunks()
	if n == 0 || !info.Hash.valid() || len(info.Root) != info.Hash.Size() {
		for _, c := range peers {
			c.Close()
		}
		return FetchStats{}, fmt.Errorf("swarm: fetch: %w: bad object info", ErrBadChunk)
	}
	f := &fetcher{
		cfg: cfg, id: info.ID(), info: info, n: n, height: info.Height(), dst: dst, log: cfg.Logger,
		events:      make(chan fevent),
		done:        make([]bool, n),
		avail:       make([]int, n),
		asked:       make([]int, n),
		putBins:     make(map[Bin]bool),
		pendingHash: make(map[Bin][]byte),
	}
	f.stats.Peers = make([]PeerStats, len(peers))
	bits, err := dst.Have(f.id)
	if err != nil {
		for _, c := range peers {
			c.Close()
		}
		return f.stats, fmt.Errorf("swarm: fetch: have: %w", err)
	}
	for i := range n {
		if i/8 < uint64(len(bits)) && bits[i/8]&(1<<(i%8)) != 0 {
			f.done[i] = true
		} else {
			f.missing++
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range peers {
		pctx, pcancel := context.WithCancel(ctx)
		p := &fpeer{
			idx: i, conn: c, cancel: pcancel,
			out:      outbox{sig: make(chan struct{}, 1)},
			have:     make([]bool, n),
			inflight: make(map[uint64]time.Time),
			timedOut: make(map[uint64]bool),
			hashes:   make(map[Bin][]byte),
			stats:    &f.stats.Peers[i],
		}
		f.peers = append(f.peers, p)
		p.out.push(Handshake{
			Capability: Capability, ObjectID: f.id.Bytes(), Hash: info.Hash,
			ChunkSize: info.ChunkSize, Size: info.Size,
		})
		wg.Go(func() { f.read(pctx, p) })
		wg.Go(func() { f.write(pctx, p) })
	}
	defer func() {
		for _, p := range f.peers {
			p.cancel()
			p.conn.Close()
		}
		wg.Wait()
	}()
	f.deadline = time.Now().Add(cfg.Timeout)
	err = f.run(ctx)
	// Verified chunks are worth keeping whatever ended the fetch.
	if ferr := f.flush(); ferr != nil && err == nil {
		err = ferr
	}
	f.stats.Chunks = n - f.missing
	return f.stats, err
}

// read turns a peer's messages into events.
func (f *fetcher) read(ctx context.Context, p *fpeer) {
	for {
		b, err := p.conn.Recv(ctx)
		var m Message
		if err == nil {
			m, err = Decode(b, f.info.Hash.Size())
		}
		select {
		case f.events <- fevent{p: p, m: m, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
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
func (f *fetcher) run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for f.missing > 0 {
		if f.live() == 0 {
			return ErrNoPeers
		}
		f.schedule()
		d, ok := f.nextDeadline()
		if len(f.pending) > 0 {
			if at := f.pendingSince.Add(f.cfg.FlushDelay); !ok || at.Before(d) {
				d, ok = at, true
			}
		}
		if ok {
			timer.Reset(time.Until(d))
		} else {
			timer.Stop()
		}
		select {
		case ev := <-f.events:
			if ev.p.dead {
				continue
			}
			if ev.err != nil {
				f.drop(ev.p, ev.err, false)
				continue
			}
			if err := f.handle(ev.p, ev.m); err != nil {
				return err
			}
		case <-timer.C:
			now := time.Now()
			if len(f.pending) > 0 && !now.Before(f.pendingSince.Add(f.cfg.FlushDelay)) {
				if err := f.flush(); err != nil {
					return err
				}
			}
			f.expire(now)
		case <-ctx.Done():
			return ctx.Err()
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
		if !p.hs && (d.IsZero() || f.deadline.Before(d)) {
			d = f.deadline
		}
		for _, t := range p.inflight {
			if d.IsZero() || t.Before(d) {
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
	p.stats.Err = err
	p.stats.Bad = bad
	f.log.Debug("swarm: fetch: peer dropped", "peer", p.idx, "bad", bad, "err", err)
	for c := range p.inflight {
		f.asked[c]--
	}
	clear(p.inflight)
	for c, h := range p.have {
		if h {
			f.avail[c]--
		}
	}
	p.cancel()
	p.conn.Close()
}

// handle applies one message of a live peer. Only a dst failure is
// returned; peer faults drop the peer.
func (f *fetcher) handle(p *fpeer, m Message) error {
	if !p.hs {
		h, ok := m.(Handshake)
		if !ok {
			f.drop(p, fmt.Errorf("%w: %v before HANDSHAKE", ErrProtocol, m.Type()), false)
			return nil
		}
		if err := checkHandshake(h, f.id, f.info); err != nil {
			f.drop(p, err, false)
			return nil
		}
		p.hs = true
		p.limit = int(min(h.MaxRequests, uint64(f.cfg.InFlight)))
		return nil
	}
	switch m := m.(type) {
	case Handshake:
		f.drop(p, fmt.Errorf("%w: second HANDSHAKE", ErrProtocol), false)
	case Have:
		for _, r := range m.Ranges {
			if r.Last >= f.n {
				f.drop(p, fmt.Errorf("%w: HAVE chunk %d of %d", ErrProtocol, r.Last, f.n), false)
				return nil
			}
			for c := r.First; c <= r.Last; c++ {
				if !p.have[c] {
					p.have[c] = true
					f.avail[c]++
				}
			}
		}
	case Unchoke:
		p.unchoked = true
	case Choke:
		p.unchoked = false
		f.forget(p, false) // the server drops them; ask elsewhere
	case Integrity:
		for _, bh := range m.Hashes {
			if !f.inTree(bh.Bin) {
				f.drop(p, fmt.Errorf("%w: INTEGRITY bin %v outside the tree", ErrProtocol, bh.Bin), false)
				return nil
			}
			p.hashes[bh.Bin] = bh.Hash
		}
	case Data:
		return f.data(p, m)
	}
	// REQUEST, CANCEL, PEX and unknown types: Fetch serves nothing.
	return nil
}

// inTree reports whether b is a node of the covering tree below the root.
func (f *fetcher) inTree(b Bin) bool {
	l := b.Layer()
	return l < f.height && b.Offset() < uint64(1)<<(f.height-l)
}

// forget gives back every request in flight at p (cancelling them at p if
// cancel is set).
func (f *fetcher) forget(p *fpeer, cancel bool) {
	var cs []uint64
	for c := range p.inflight {
		f.asked[c]--
		cs = append(cs, c)
	}
	clear(p.inflight)
	if cancel && len(cs) > 0 {
		p.out.push(Cancel{Ranges: toRanges(cs)})
	}
}

// data verifies and stores a chunk.
func (f *fetcher) data(p *fpeer, m Data) error {
	c := uint64(m.Bin) >> 1
	if c >= f.n {
		f.drop(p, fmt.Errorf("%w: DATA chunk %d of %d", ErrProtocol, c, f.n), false)
		return nil
	}
	size := int64(len(m.Data))
	p.stats.Bytes += size
	if _, ok := p.inflight[c]; !ok || f.done[c] {
		f.stats.DupBytes += size // late, cancelled or already stored
		if ok {
			delete(p.inflight, c)
			f.asked[c]--
		}
		return nil
	}
	delete(p.inflight, c)
	f.asked[c]--
	p.strikes = 0
	uncles := make([][]byte, 0, f.height)
	for b := ChunkBin(c); b.Layer() < f.height; b = b.Parent() {
		u := b.Sibling()
		h, ok := p.hashes[u]
		if !ok && u.BaseOffset() >= f.n {
			h, ok = make([]byte, f.info.Hash.Size()), true // padding
		}
		if !ok {
			f.drop(p, fmt.Errorf("%w: chunk %d: uncle %v not sent", ErrBadChunk, c, u), true)
			return nil
		}
		uncles = append(uncles, h)
	}
	if err := f.info.VerifyChunk(c, m.Data, uncles); err != nil {
		f.drop(p, err, true)
		return nil
	}
	// The chunk and its new uncles are verified: batch them.
	if len(f.pending) > 0 && (len(f.pending) >= f.cfg.BatchChunks || f.pendingBytes+len(m.Data) > f.cfg.BatchBytes) {
		if err := f.flush(); err != nil {
			return err
		}
	}
	if len(f.pending) == 0 {
		f.pendingSince = time.Now()
	}
	f.pending = append(f.pending, Chunk{Index: c, Data: m.Data})
	f.pendingBytes += len(m.Data)
	b := ChunkBin(c)
	for _, h := range uncles {
		if u := b.Sibling(); !f.putBins[u] && u.BaseOffset() < f.n {
			f.pendingHash[u] = h
			f.putBins[u] = true
		}
		b = b.Parent()
	}
	if len(f.pending) >= f.cfg.BatchChunks {
		if err := f.flush(); err != nil {
			return err
		}
	}
	f.done[c] = true
	f.missing--
	f.stats.Bytes += size
	p.stats.Chunks++
	// End game: withdraw the duplicate requests.
	for _, q := range f.peers {
		if _, ok := q.inflight[c]; ok && !q.dead {
			delete(q.inflight, c)
			f.asked[c]--
			q.out.push(Cancel{Ranges: []Range{{First: c, Last: c}}})
		}
	}
	return nil
}

// flush writes the batch to dst: the hashes first, so that a chunk in dst
// always has its uncles there, then the chunks. On failure the batch's
// chunks count as missing again and the fetch must end.
func (f *fetcher) flush() error {
	if len(f.pending) == 0 && len(f.pendingHash) == 0 {
		return nil
	}
	chunks := f.pending
	f.pending, f.pendingBytes = nil, 0
	hashes := f.pendingHash
	f.pendingHash = make(map[Bin][]byte)
	if err := f.flushHashes(hashes); err != nil {
		f.missing += uint64(len(chunks))
		return err
	}
	if len(chunks) == 0 {
		return nil
	}
	if err := f.dst.PutChunks(f.id, chunks); err != nil {
		f.missing += uint64(len(chunks))
		return fmt.Errorf("swarm: fetch: store chunks %d to %d (%d of them): %w",
			chunks[0].Index, chunks[len(chunks)-1].Index, len(chunks), err)
	}
	return nil
}

// flushHashes writes hashes to dst, maxHashBatch at a time.
func (f *fetcher) flushHashes(hashes map[Bin][]byte) error {
	put := make(map[Bin][]byte, min(len(hashes), maxHashBatch))
	for b, h := range hashes {
		put[b] = h
		if len(put) == maxHashBatch {
			if err := f.dst.PutHashes(f.id, put); err != nil {
				return fmt.Errorf("swarm: fetch: store hashes: %w", err)
			}
			clear(put)
		}
	}
	if len(put) > 0 {
		if err := f.dst.PutHashes(f.id, put); err != nil {
			return fmt.Errorf("swarm: fetch: store hashes: %w", err)
		}
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
			if !now.Before(f.deadline) {
				f.drop(p, fmt.Errorf("%w: no HANDSHAKE within %v", ErrProtocol, f.cfg.Timeout), false)
			}
			continue
		}
		var late []uint64
		for c, d := range p.inflight {
			if !now.Before(d) {
				late = append(late, c)
			}
		}
		if len(late) == 0 {
			continue
		}
		for _, c := range late {
			delete(p.inflight, c)
			f.asked[c]--
			p.timedOut[c] = true
		}
		f.stats.Timeouts += len(late)
		p.out.push(Cancel{Ranges: toRanges(late)})
		if p.strikes++; p.strikes >= 2 {
			f.drop(p, fmt.Errorf("swarm: fetch: peer stalled (%d requests timed out)", len(late)), false)
		}
	}
}

// schedule fills every ready peer's request window.
func (f *fetcher) schedule() {
	now := time.Now()
	for _, p := range f.peers {
		if p.dead || !p.hs || !p.unchoked {
			continue
		}
		var req []uint64
		for len(p.inflight) < p.limit {
			c, ok := f.pick(p)
			if !ok {
				break
			}
			p.inflight[c] = now.Add(f.cfg.Timeout)
			f.asked[c]++
			req = append(req, c)
		}
		if len(req) > 0 {
			p.out.push(Request{Ranges: toRanges(req)})
		}
	}
}

// pick chooses the next chunk to ask of p: a missing chunk p holds that no
// one is asked for, rarest first, lowest index among equals (inside the
// window in streaming mode); in the end game, one asked of a single other
// peer.
func (f *fetcher) pick(p *fpeer) (uint64, bool) {
	lo, hi := uint64(0), f.n
	if f.cfg.Window > 0 {
		for lo < f.n && f.done[lo] {
			lo++
		}
		hi = min(f.n, lo+uint64(f.cfg.Window))
	}
	best, found := uint64(0), false
	for c := lo; c < hi; c++ {
		if f.done[c] || !p.have[c] || f.asked[c] > 0 || p.timedOut[c] && f.avail[c] > 1 {
			continue
		}
		if !found || f.avail[c] < f.avail[best] {
			best, found = c, true
		}
	}
	if found || f.cfg.EndGame < 0 || f.missing > uint64(f.cfg.EndGame) {
		return best, found
	}
	for c := lo; c < hi; c++ {
		if _, mine := p.inflight[c]; f.done[c] || !p.have[c] || mine || f.asked[c] > 1 {
			continue
		}
		return c, true
	}
	return 0, false
}
