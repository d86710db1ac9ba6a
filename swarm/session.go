package swarm

import (
	"context"
	"errors"
	"fmt"
	"github.com/contextd/contextd/object"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
)

// This file is the seeder side of a swarm/1 session (Serve) and what both
// sides share; fetch.go is the downloader. The flow is specified in
// docs/protocols/swarm.md, "Message flow".

// Conn is a reliable, ordered message channel to one peer: what a session
// needs of a flitlink circuit (*flitlink.Circuit satisfies it). Send blocks
// for flow-control credit and keeps no reference to msg once it returns
// (Serve reuses its buffer); Recv returns io.EOF once the peer has closed.
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

// ObjectSource is what Serve reads of the local object store
// (store.Objects satisfies it): the have-bitmap, held chunks (appended to a
// buffer Serve reuses), the verified tree hashes that serve as uncles, and
// Touch once per REQUEST served.
type ObjectSource interface {
	Have(id cid.Cid) ([]byte, error)
	AppendChunk(dst []byte, id cid.Cid, index uint64) ([]byte, error)
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
// from one peer when ServeConfig.MaxRequests is 0.
const DefaultMaxRequests = 64

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

	mu    sync.Mutex    // guards queue
	queue []uint64      // requested chunks not yet sent, in request order
	sig   chan struct{} // capacity 1: the queue grew

	sent      map[object.Bin]bool // writer's: hashes already sent in this session
	msg       []byte              // writer's: the DATA message buffer, reused
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
// source fails. It sends HANDSHAKE, HAVE (what src holds
// now; later HAVEs as ServeConfig.Grown tells of more), UNCHOKE, PEX (if
// ServeConfig.Peers names any), then for each requested chunk, in request
// order, an
// INTEGRITY with the uncle hashes not yet sent in this session followed by
// the DATA. It skips chunks cancelled before they are sent and chunks it
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
		sent: make(map[object.Bin]bool), grown: cfg.Grown, peers: cfg.Peers, m: cfg.Metrics,
		lim: cfg.Limiter, peer: cfg.Peer,
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() { cancel(s.write(ctx)) })
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

// write sends the greeting, then answers queued requests.
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
		default:
		}
		i, ok := s.next()
		if !ok {
			select {
			case <-s.sig:
			case <-grown:
				if err := s.announceGrowth(ctx); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			}
			continue
		}
		if err := s.answer(ctx, i); err != nil {
			return err
		}
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

// next pops the first queued chunk.
func (s *server) next() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return 0, false
	}
	i := s.queue[0]
	s.queue = s.queue[1:]
	return i, true
}

// answer sends INTEGRITY (if any uncle is new to the peer) and DATA for
// chunk i. A chunk the source does not hold is skipped. The chunk is read
// straight into the DATA message, whose buffer serves every chunk (Send
// keeps no message).
func (s *server) answer(ctx context.Context, i uint64) error {
	n := s.info.ChunkLen(i)
	hdr := appendDataHeader(s.msg[:0], object.ChunkBin(i), n)
	msg, err := s.src.AppendChunk(hdr, s.id, i)
	if err == nil && len(msg)-len(hdr) != n {
		err = fmt.Errorf("%w: %d bytes, want %d", object.ErrBadChunk, len(msg)-len(hdr), n)
	}
	if err != nil {
		s.log.Debug("swarm: requested chunk not served", "chunk", i, "err", err)
		return nil
	}
	s.msg = msg
	var integ Integrity
	h := s.info.Height()
	for b := object.ChunkBin(i); b.Layer() < h; b = b.Parent() {
		u := b.Sibling()
		if s.sent[u] || u.BaseOffset() >= s.n {
			continue // known to the peer, or padding (the zero hash)
		}
		hash, err := s.src.GetHash(s.id, u)
		if err != nil {
			// Lost with a power loss, say: serve the chunks it proves
			// to nobody rather than end the session.
			s.log.Debug("swarm: requested chunk not served", "chunk", i, "uncle", u, "err", err)
			return nil
		}
		integ.Hashes = append(integ.Hashes, BinHash{Bin: u, Hash: hash})
	}
	if len(integ.Hashes) > 0 {
		if err := s.send(ctx, integ); err != nil {
			return err
		}
		for _, bh := range integ.Hashes {
			s.sent[bh.Bin] = true
		}
	}
	if err := s.sendEncoded(ctx, TypeData, msg); err != nil {
		return err
	}
	s.m.chunkOut(n)
	return nil
}

// read receives the peer's messages and queues its requests.
func (s *server) read(ctx context.Context) error {
	first := true
	for {
		b, err := s.conn.Recv(ctx)
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
		case Data, Integrity:
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
