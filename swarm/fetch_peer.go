package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/contextd/contextd/object"
)

// This file is Fetch's side of each peer: the session's reader, which
// verifies what the peer sends before the loop sees it, and its writer.

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
// tells the idle check that the peers are not silent. An event may hold a
// whole run (up to 256 KiB), so the queue holds at most 4 MiB of chunks.
const eventQueue = 16

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

// bufPool recycles the buffers of received messages within one Fetch: a
// run of chunks stays in its message's buffer until the batch writer has
// stored it, then the buffer serves another message. It keeps at most
// cap(free) buffers; beyond that they are left to the collector. (A
// sync.Pool would be emptied by every collection, frequent under the
// daemon's memory bound.)
type bufPool struct{ free chan *[]byte }

// keptBufs is how many buffers a bufPool keeps: about two request windows
// of runs.
const keptBufs = 32

func newBufPool() bufPool { return bufPool{free: make(chan *[]byte, keptBufs)} }

func (p bufPool) get() *[]byte {
	select {
	case b := <-p.free:
		return b
	default:
		b := make([]byte, 0, maxRunBytes+runHeaderRoom)
		return &b
	}
}

func (p bufPool) put(b *[]byte) {
	select {
	case p.free <- b:
	default:
	}
}

// runHeaderRoom is room for a CHUNKS header beside maxRunBytes of chunks.
const runHeaderRoom = 8 << 10

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
	// A DATA or CHUNKS message needs at most MaxRunUncles hashes the peer
	// has not sent before, so a peer may have sent no more than that per
	// verified message (and one message's worth ahead): hashes nobody
	// asked for cannot grow the map beyond the work the peer did.
	runs := 0
	keep := func(hs []object.BinHash) error {
		if len(hashes)+len(hs) > (runs+2)*MaxRunUncles {
			return fmt.Errorf("%w: %d hashes for %d runs of chunks", ErrProtocol, len(hashes)+len(hs), runs)
		}
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
		buf := f.bufs.get()
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
		if ev.chunk != nil {
			runs++
		}
		if ev.chunk != nil && cap(b) > 0 && &b[:1][0] == &(*buf)[:1][0] {
			*buf = b
			ev.chunk.buf = buf // the loop passes it on with the chunks
		} else if ev.m == nil {
			f.bufs.put(buf) // nothing holds on to it
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
