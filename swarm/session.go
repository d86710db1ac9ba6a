package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
)

// This file is the seeder side of a swarm/1 session (Serve) and what both
// sides share; fetch.go is the downloader. The flow is specified in
// docs/protocols/swarm.md, "Message flow".

// Conn is a reliable, ordered message channel to one peer: what a session
// needs of a flitlink circuit (*flitlink.Circuit satisfies it). Send blocks
// while the peer does not read and keeps no reference to msg once it
// returns (Serve reuses its buffer); RecvBuffer returns the next message,
// read into buf if it fits (buf nil: a new buffer), and io.EOF once the
// peer has closed.
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	RecvBuffer(ctx context.Context, buf []byte) ([]byte, error)
	Close() error
}

// ObjectSource is what Serve reads of the local object store
// (store.Objects satisfies it): the have-bitmap, runs of held chunks
// (appended to a buffer Serve reuses; an error if any of the run is not
// held), the verified tree hashes that serve as uncles, and Touch once per
// REQUEST served.
type ObjectSource interface {
	Have(id cid.Cid) ([]byte, error)
	AppendChunks(dst []byte, id cid.Cid, first, count uint64) ([]byte, error)
	GetHash(id cid.Cid, bin object.Bin) ([]byte, error)
	Touch(id cid.Cid) error
}

// Session errors callers branch on with errors.Is.
var (
	// ErrProtocol reports a peer that broke the swarm/1 message flow
	// (a message before HANDSHAKE, a chunk index past the object, more
	// requests in flight than announced). Malformed messages are
	// ErrMalformed. Either ends the session.
	ErrProtocol = errors.New("swarm: protocol violation")
	// ErrMismatch reports a HANDSHAKE about another object, hash, chunk
	// size or size.
	ErrMismatch = errors.New("swarm: handshake does not match the object")
)

// DefaultMaxRequests is how many requested chunks Serve accepts in flight
// from one peer when ServeConfig.MaxRequests is 0: 4 MiB of 16 KiB
// chunks, a fast path's bandwidth-delay product with room to spare.
const DefaultMaxRequests = 256

// maxRunBytes bounds the chunk bytes of one CHUNKS message: a run of
// consecutive requested chunks goes out in one message up to this size
// (one chunk alone may be larger). A run of the smallest chunks must stay
// within what the Badger store reads in one call (store.MaxPutChunks,
// TestRunFitsTheStore): a longer one would be served chunk by chunk.
const maxRunBytes = 256 << 10

// ServeConfig configures Serve. The zero value of every field but Info
// means its default.
type ServeConfig struct {
	// Info is the object served; its ID (object.Info.ID) is the object's ID in
	// the source and on the wire.
	Info object.Info
	// MaxRequests is the bound on requested chunks in flight announced in
	// HANDSHAKE (0: DefaultMaxRequests; at most MaxRequestsInFlight).
	MaxRequests int
	// Grown, if not nil, tells of chunks the source gains while Serve
	// runs (a fetch of the object is storing them); Serve sends HAVEs for
	// them.
	Grown *Growth
	// Peers, if not nil, gives other peers of the swarm of this object;
	// Serve sends them in one PEX (at most MaxPeers) after UNCHOKE.
	Peers func() []PexPeer
	// Logger receives per-session events at Debug level (nil: discard).
	Logger *slog.Logger
	// Metrics, if not nil, counts the chunks served (metrics.go).
	Metrics *Metrics
	// Limiter, if not nil, applies Peer's limits (limits.go): requests
	// over its rate wait, unrequested DATA and INTEGRITY are strikes.
	Limiter *Limiter
	Peer    feed.ID
}

// checkHandshake checks a peer's HANDSHAKE against the object.
func checkHandshake(h Handshake, id cid.Cid, info object.Info) error {
	if string(h.ObjectID) != string(id.Bytes()) || h.Hash != info.Hash || h.ChunkSize != info.ChunkSize || h.Size != info.Size {
		return fmt.Errorf("%w: peer has %d-byte object of %d-byte chunks", ErrMismatch, h.Size, h.ChunkSize)
	}
	return nil
}

// haveRanges turns a have-bitmap of n chunks into ranges.
func haveRanges(bits []byte, n uint64) []Range {
	var rs []Range
	for i := uint64(0); i < n; i++ {
		if !bitSet(bits, i) {
			continue
		}
		if k := len(rs) - 1; k >= 0 && rs[k].Last+1 == i {
			rs[k].Last = i
		} else {
			rs = append(rs, Range{First: i, Last: i})
		}
	}
	return rs
}

func bitSet(bits []byte, i uint64) bool {
	return i/8 < uint64(len(bits)) && bits[i/8]&(1<<(i%8)) != 0
}

// server is one Serve call. The reader queues requested chunks; the writer
// answers them in order.
type server struct {
	conn  Conn
	src   ObjectSource
	id    cid.Cid
	info  object.Info
	n     uint64
	limit int
	log   *slog.Logger

	mu      sync.Mutex    // guards queue and peerCap
	queue   []uint64      // requested chunks not yet sent, in request order
	peerCap uint64        // the peer's HANDSHAKE capability
	sig     chan struct{} // capacity 1: the queue grew

	sent      map[object.Bin]bool // preparer's: hashes already sent (or made ready) in this session
	ready     chan answerMsg      // preparer → writer: the next answer
	bufs      chan []byte         // the session's two answer buffers not in use
	announced []byte              // writer's: the have-bitmap sent in HAVEs so far
	grown     *Growth             // ServeConfig.Grown, or nil
	peers     func() []PexPeer    // ServeConfig.Peers, or nil
	m         *Metrics            // ServeConfig.Metrics, or nil
	lim       *Limiter            // ServeConfig.Limiter, or nil
	peer      feed.ID             // ServeConfig.Peer
}

// Serve answers one peer's requests for one object over c until the peer
// closes the session (nil), ctx ends (nil), the peer breaks the protocol
// (an error wrapping ErrMalformed, ErrProtocol, ErrMismatch, or ErrAbuse
// past its strikes under a ServeConfig.Limiter) or the connection or the
// source fails. It sends HANDSHAKE, HAVE (what src holds now; later HAVEs
// as ServeConfig.Grown tells of more), UNCHOKE, PEX (if ServeConfig.Peers
// names any), then answers the requested chunks in request order: runs in
// CHUNKS messages to a peer of capability 2, INTEGRITY and DATA per chunk
// to a peer of capability 1, each with the uncle hashes not yet sent in
// this session. It reads the next run from src while the one before is
// being sent, skips chunks cancelled before they are read and chunks it
// does not hold. Serve closes c.
func Serve(ctx context.Context, c Conn, src ObjectSource, cfg ServeConfig) error {
	defer c.Close()
	info := cfg.Info
	n := info.Chunks()
	if n == 0 || !info.Hash.Valid() || info.ChunkSize > MaxDataSize || len(info.Root) != info.Hash.Size() {
		return fmt.Errorf("swarm: serve: %w: bad object info", object.ErrBadChunk)
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = DefaultMaxRequests
	}
	cfg.MaxRequests = min(cfg.MaxRequests, MaxRequestsInFlight)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{
		conn: c, src: src, id: info.ID(), info: info, n: n,
		limit: cfg.MaxRequests, log: cfg.Logger,
		sig:  make(chan struct{}, 1),
		sent: make(map[object.Bin]bool), ready: make(chan answerMsg, 1), bufs: make(chan []byte, 2),
		grown: cfg.Grown, peers: cfg.Peers, m: cfg.Metrics,
		lim: cfg.Limiter, peer: cfg.Peer,
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	s.bufs <- nil
	s.bufs <- nil
	wg.Go(func() { cancel(s.write(ctx)) })
	wg.Go(func() { cancel(s.prepare(ctx)) })
	wg.Go(func() { cancel(s.read(ctx)) })
	<-ctx.Done()
	wg.Wait()
	err := context.Cause(ctx)
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

func (s *server) send(ctx context.Context, m Message) error {
	return s.sendEncoded(ctx, m.Type(), m.Append(nil))
}

func (s *server) sendEncoded(ctx context.Context, t MsgType, b []byte) error {
	if err := s.conn.Send(ctx, b); err != nil {
		return fmt.Errorf("swarm: send %v: %w", t, err)
	}
	return nil
}

// write sends the greeting, then the answers prepare makes ready, and
// HAVEs as the source grows.
func (s *server) write(ctx context.Context) error {
	hs := Handshake{
		Capability: Capability, ObjectID: s.id.Bytes(), Hash: s.info.Hash,
		ChunkSize: s.info.ChunkSize, Size: s.info.Size, MaxRequests: uint64(s.limit),
	}
	if err := s.send(ctx, hs); err != nil {
		return err
	}
	if err := s.announce(ctx); err != nil {
		return err
	}
	if err := s.send(ctx, Unchoke{}); err != nil {
		return err
	}
	if s.peers != nil {
		if ps := s.peers(); len(ps) > 0 {
			if err := s.send(ctx, Pex{Peers: ps[:min(len(ps), MaxPeers)]}); err != nil {
				return err
			}
		}
	}
	var grown <-chan struct{} // nil (never ready) without ServeConfig.Grown
	if s.grown != nil {
		grown = s.grown.sig
	}
	for {
		select {
		case <-grown:
			if err := s.announceGrowth(ctx); err != nil {
				return err
			}
		case a := <-s.ready:
			if err := s.sendEncoded(ctx, a.t, a.msg); err != nil {
				return err
			}
			if a.pooled {
				s.bufs <- a.msg[:0] // never blocks: the buffer came from there
			}
			if a.chunks > 0 {
				s.m.served(a.chunks, a.data)
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// answerMsg is an answer the preparer made ready for the writer: a message,
// and the chunks and chunk bytes it serves (0 for an INTEGRITY).
type answerMsg struct {
	t      MsgType
	msg    []byte
	pooled bool // msg is one of the session's buffers, to go back to bufs
	chunks uint64
	data   int
}

// prepare makes the answers to queued requests ready for the writer, one
// ahead of it: the source is read for the next run while the writer sends
// the one before, so that the path does not wait for the source.
func (s *server) prepare(ctx context.Context) error {
	for {
		first, count := s.nextRun()
		if count == 0 {
			select {
			case <-s.sig:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if err := s.answer(ctx, first, count); err != nil {
			return err
		}
	}
}

// emit hands a to the writer.
func (s *server) emit(ctx context.Context, a answerMsg) error {
	select {
	case s.ready <- a:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// announce sends HAVEs for what the source holds, at most MaxRanges
// ranges per message.
func (s *server) announce(ctx context.Context) error {
	bits, err := s.src.Have(s.id)
	if err != nil {
		return fmt.Errorf("swarm: serve: have: %w", err)
	}
	s.announced = bits
	return s.sendHaves(ctx, haveRanges(bits, s.n))
}

// announceGrowth sends HAVEs for the chunks ServeConfig.Grown told of that
// the peer has not been told of.
func (s *server) announceGrowth(ctx context.Context) error {
	var fresh []uint64
	for _, i := range s.grown.take() {
		if i < s.n && !bitSet(s.announced, i) {
			s.announced[i/8] |= 1 << (i % 8)
			fresh = append(fresh, i)
		}
	}
	slices.Sort(fresh)
	return s.sendHaves(ctx, toRanges(fresh))
}

func (s *server) sendHaves(ctx context.Context, rs []Range) error {
	for len(rs) > 0 {
		k := min(len(rs), MaxRanges)
		if err := s.send(ctx, Have{Ranges: rs[:k]}); err != nil {
			return err
		}
		rs = rs[k:]
	}
	return nil
}

// Growth carries the chunks a Serve session's source gains while it runs:
// the code storing them calls Add; the session takes them. It is safe for
// concurrent use.
type Growth struct {
	mu    sync.Mutex // guards added
	added []uint64
	sig   chan struct{} // capacity 1: added grew
}

// NewGrowth returns an empty Growth.
func NewGrowth() *Growth { return &Growth{sig: make(chan struct{}, 1)} }

// Add records that the source now holds these chunks. It never blocks.
func (g *Growth) Add(indices ...uint64) {
	g.mu.Lock()
	g.added = append(g.added, indices...)
	g.mu.Unlock()
	select {
	case g.sig <- struct{}{}:
	default:
	}
}

func (g *Growth) take() []uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	added := g.added
	g.added = nil
	return added
}

// nextRun pops the longest run of consecutive chunks at the head of the
// queue that fits one message and takes at most half the queue (a single
// chunk for a peer that does not take CHUNKS); count is 0 when the queue
// is empty. Half the queue: the peer gets a message while the rest is
// still queued here, and its next requests arrive before the queue runs
// dry, so a small request window still keeps the path busy.
func (s *server) nextRun() (first, count uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return 0, 0
	}
	first, count = s.queue[0], 1
	if s.peerCap >= CapChunks {
		max := uint64(max(1, min(maxRunBytes/s.info.ChunkSize, len(s.queue)/2)))
		for count < max && int(count) < len(s.queue) && s.queue[count] == first+count {
			count++
		}
	}
	s.queue = s.queue[count:]
	return first, count
}

// runLen returns the bytes of chunks first to first+count-1.
func (s *server) runLen(first, count uint64) int {
	end := min(int64(first+count)*int64(s.info.ChunkSize), s.info.Size)
	return int(end - int64(first)*int64(s.info.ChunkSize))
}

// answer makes ready the chunks first to first+count-1 (count > 1 only for
// a peer that takes CHUNKS) with the uncles the peer lacks: one CHUNKS
// message, or INTEGRITY (if any uncle is new to the peer) and DATA for a
// peer of capability 1. The chunks are read straight into the message, in
// one of the session's two buffers. A run the source cannot serve whole is
// served chunk by chunk; a chunk it does not hold, or whose uncles it
// lacks (lost with a power loss, say), is skipped: the peer asks
// elsewhere.
func (s *server) answer(ctx context.Context, first, count uint64) error {
	var hashes []object.BinHash
	var err error
	for _, u := range s.info.RangeUncles(first, count) {
		if s.sent[u] {
			continue
		}
		var h []byte
		if h, err = s.src.GetHash(s.id, u); err != nil {
			break
		}
		hashes = append(hashes, object.BinHash{Bin: u, Hash: h})
	}
	var buf, hdr, msg []byte
	if err == nil {
		select {
		case buf = <-s.bufs:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		if s.peerCap >= CapChunks {
			hdr = appendChunksHeader(buf, first, hashes, s.runLen(first, count))
		} else {
			hdr = appendDataHeader(buf, object.ChunkBin(first), s.info.ChunkLen(first))
		}
		if msg, err = s.src.AppendChunks(hdr, s.id, first, count); err != nil {
			s.bufs <- hdr[:0] // never blocks: the buffer came from there
		}
	}
	if err != nil {
		if count > 1 {
			for i := first; i < first+count; i++ {
				if err := s.answer(ctx, i, 1); err != nil {
					return err
				}
			}
			return nil
		}
		s.log.Debug("swarm: requested chunk not served", "chunk", first, "err", err)
		return nil
	}
	for _, h := range hashes {
		s.sent[h.Bin] = true
	}
	if s.peerCap < CapChunks && len(hashes) > 0 {
		if err := s.emit(ctx, answerMsg{t: TypeIntegrity, msg: Integrity{Hashes: hashes}.Append(nil)}); err != nil {
			s.bufs <- msg[:0]
			return err
		}
	}
	return s.emit(ctx, answerMsg{t: MsgType(msg[0]), msg: msg, pooled: true, chunks: count, data: len(msg) - len(hdr)})
}

// read receives the peer's messages and queues its requests.
func (s *server) read(ctx context.Context) error {
	first := true
	for {
		b, err := s.conn.RecvBuffer(ctx, nil)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("swarm: serve: receive: %w", err)
		}
		m, err := Decode(b, s.info.Hash.Size())
		if err != nil {
			return err
		}
		if first {
			h, ok := m.(Handshake)
			if !ok {
				return fmt.Errorf("%w: %v before HANDSHAKE", ErrProtocol, m.Type())
			}
			if err := checkHandshake(h, s.id, s.info); err != nil {
				return err
			}
			s.mu.Lock()
			s.peerCap = h.Capability
			s.mu.Unlock()
			first = false
			continue
		}
		switch m := m.(type) {
		case Handshake:
			return fmt.Errorf("%w: second HANDSHAKE", ErrProtocol)
		case Request:
			if err := s.admit(ctx, m.Ranges); err != nil {
				return err
			}
			if err := s.request(m.Ranges); err != nil {
				return err
			}
			if err := s.src.Touch(s.id); err != nil {
				s.log.Debug("swarm: touch", "err", err)
			}
		case Cancel:
			s.cancel(m.Ranges)
		case Data, Integrity, Chunks:
			if err := s.offend(m.Type()); err != nil {
				return err
			}
		}
		// HAVE, INTEGRITY, DATA, PEX, CHOKE, UNCHOKE and unknown types:
		// a server that fetches nothing ignores them.
	}
}

// request queues the chunks of rs, at most limit in flight.
func (s *server) request(rs []Range) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	room := uint64(s.limit - len(s.queue))
	for _, r := range rs {
		if r.Last >= s.n {
			return fmt.Errorf("%w: request for chunk %d of %d", ErrProtocol, r.Last, s.n)
		}
		if r.Len() > room {
			return fmt.Errorf("%w: more than %d requests in flight", ErrProtocol, s.limit)
		}
		room -= r.Len()
		for i := r.First; i <= r.Last; i++ {
			s.queue = append(s.queue, i)
		}
	}
	select {
	case s.sig <- struct{}{}:
	default:
	}
	return nil
}

// cancel drops the chunks of rs from the queue.
func (s *server) cancel(rs []Range) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = deleteRanges(s.queue, rs)
}

func deleteRanges(q []uint64, rs []Range) []uint64 {
	out := q[:0]
	for _, i := range q {
		keep := true
		for _, r := range rs {
			if i >= r.First && i <= r.Last {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, i)
		}
	}
	return out
}

// toRanges turns chunk indices into ranges, merging runs in the given order.
func toRanges(is []uint64) []Range {
	var rs []Range
	for _, i := range is {
		if k := len(rs) - 1; k >= 0 && rs[k].Last+1 == i {
			rs[k].Last = i
		} else {
			rs = append(rs, Range{First: i, Last: i})
		}
	}
	return rs
}
