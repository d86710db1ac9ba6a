package live

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
)

// Window defaults: a stream keeps at most the last DefaultWindowBytes of
// chunk bytes or DefaultWindowAge of munros, whichever is smaller.
const (
	DefaultWindowBytes = 8 << 20
	DefaultWindowAge   = 30 * time.Second
)

// StreamConfig configures a Stream. Zero fields but ID mean the defaults.
type StreamConfig struct {
	ID feed.ID // the stream: its publisher's key
	// MunroLog is k, munros of 2^k chunks (0..MaxMunroLog), of an Origin
	// stream (0: DefaultMunroLog). A viewer's stream takes it from its
	// first upstream's handshake.
	MunroLog int
	// Origin marks the publisher's own stream: it is alive for as long
	// as it is open, and its hop count is 0.
	Origin      bool
	WindowBytes int64         // 0: DefaultWindowBytes
	WindowAge   time.Duration // 0: DefaultWindowAge
}

// heldMunro is a verified munro in a stream's window.
type heldMunro struct {
	Munro
	size int       // chunk bytes
	at   time.Time // when it entered the window
}

// Stream is a node's buffer of one live stream: the window of verified
// munros (bounded by bytes and age), the END mark once it came, and what
// the node knows of its distance to the publisher. Munros enter it in
// increasing index order (Add ignores the others), maybe with gaps; its
// readers (Chunks, Serve) each keep their own position, so a slow reader
// never holds the stream back: it finds the munros it missed gone. All
// methods are safe for concurrent use.
type Stream struct {
	id       feed.ID
	origin   bool
	maxBytes int64
	maxAge   time.Duration

	mu      sync.Mutex    // guards the fields below
	k       int           // the munro log
	kSet    bool          // k is sure: the publisher's, or a verified munro or END came
	held    []*heldMunro  // the window, by increasing index
	bytes   int64         // chunk bytes in held
	trimmed uint64        // munros below this index left the window (0: none did)
	end     *End          // the END mark, once it came
	heard   time.Time     // the last sign of life from upstream
	hops    int           // distance to the publisher (MaxHops: unknown)
	changed chan struct{} // closed (and replaced) when k, a munro or END comes
}

// NewStream returns an empty stream buffer.
func NewStream(cfg StreamConfig) *Stream {
	s := &Stream{
		id: cfg.ID, k: cfg.MunroLog, kSet: cfg.Origin, origin: cfg.Origin,
		maxBytes: cfg.WindowBytes, maxAge: cfg.WindowAge,
		hops: MaxHops, changed: make(chan struct{}),
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultWindowBytes
	}
	if s.maxAge <= 0 {
		s.maxAge = DefaultWindowAge
	}
	if cfg.Origin {
		s.hops = 0
		if s.k == 0 {
			s.k = DefaultMunroLog
		}
	}
	return s
}

// ID returns the stream's ID.
func (s *Stream) ID() feed.ID { return s.id }

// MunroLog returns k: the stream's munros are 2^k chunks.
func (s *Stream) MunroLog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.k
}

// useMunroLog makes k the munro log of the stream for an upstream about
// to push it. It is the first upstream's word until a munro or END from
// it verified (Add, Finish); from then on an upstream that states another
// k is lying, and useMunroLog reports false.
func (s *Stream) useMunroLog(k int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.kSet {
		s.k = k
	}
	return s.k == k
}

// waitMunroLog returns k once it is sure, or false if ctx ends first.
func (s *Stream) waitMunroLog(ctx context.Context) (int, bool) {
	for {
		s.mu.Lock()
		k, ok, changed := s.k, s.kSet, s.changed
		s.mu.Unlock()
		if ok {
			return k, true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// Hops returns the node's distance to the publisher: 0 on the publisher,
// its upstream's plus one on a viewer, MaxHops while unknown.
func (s *Stream) Hops() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hops
}

// SetHops records the node's distance to the publisher (its upstream's
// hops plus one), at most MaxHops.
func (s *Stream) SetHops(h int) {
	s.mu.Lock()
	s.hops = min(h, MaxHops)
	s.mu.Unlock()
}

// Heard records a sign of life from upstream (a munro or a KEEPALIVE).
func (s *Stream) Heard() {
	s.mu.Lock()
	s.heard = time.Now()
	s.mu.Unlock()
}

// alive reports whether the stream is fed: it is the publisher's, or its
// upstream was heard within DefaultSilence. Serve sends KEEPALIVEs only
// for a fed stream, so that a loop of relays starves and breaks up.
func (s *Stream) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.origin && s.end == nil || time.Since(s.heard) < DefaultSilence
}

// Add puts a verified munro in the window (of munros of 2^MunroLog chunks) and drops the munros that no
// longer fit it (the newest always stays). A munro not newer than the
// newest held, or after END, is ignored: Add reports whether it was kept.
func (s *Stream) Add(m Munro) bool {
	size := 0
	for _, c := range m.Chunks {
		size += len(c)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end != nil || len(s.held) > 0 && m.Index <= s.held[len(s.held)-1].Index || m.Index < s.trimmed {
		return false
	}
	s.kSet = true
	s.held = append(s.held, &heldMunro{Munro: m, size: size, at: now})
	s.bytes += int64(size)
	drop := 0
	for drop < len(s.held)-1 && (s.bytes > s.maxBytes || now.Sub(s.held[drop].at) > s.maxAge) {
		s.bytes -= int64(s.held[drop].size)
		s.trimmed = s.held[drop].Index + 1
		s.held[drop] = nil
		drop++
	}
	s.held = s.held[drop:]
	s.notifyLocked()
	return true
}

// Finish records the stream's END mark; readers get it after the munros
// held. Later munros are ignored.
func (s *Stream) Finish(e End) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end == nil {
		s.end, s.kSet = &e, true
		s.notifyLocked()
	}
}

// Ended reports whether the stream's END came.
func (s *Stream) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end != nil
}

// Next returns the next munro index the node lacks: one past the newest
// held, or 0 and false if it holds none.
func (s *Stream) Next() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.held) == 0 {
		return s.trimmed, s.trimmed > 0
	}
	return s.held[len(s.held)-1].Index + 1, true
}

func (s *Stream) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// get returns the oldest held munro with index ≥ pos (LiveEdge: the
// newest held), or else END if it came, or else nil and a channel closed
// when that may change. lost reports that munros at or past pos left the
// window: a reader at pos fell behind.
func (s *Stream) get(pos uint64) (h *heldMunro, end *End, lost bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lost = pos < s.trimmed
	if n := len(s.held); n > 0 {
		if pos == LiveEdge {
			return s.held[n-1], nil, false, nil
		}
		// The window is short (tens of munros): a scan from the end
		// finds the munro at pos faster than a search would matter.
		for i := n - 1; i >= 0 && s.held[i].Index >= pos; i-- {
			h = s.held[i]
		}
		if h != nil {
			return h, nil, lost, nil
		}
	}
	return nil, s.end, lost, s.changed
}

// Chunk is one chunk a watcher gets: its index in the stream, its bytes
// (never empty) and its munro's publish time (unix microseconds); or,
// with End set, the end of the stream (Index: one past its last chunk).
type Chunk struct {
	Index     uint64
	Data      []byte
	Published int64
	End       bool
}

// Chunks yields the stream's non-empty chunks from chunk index from
// (LiveEdge: from the newest munro held, or the first to come) in order,
// then an End chunk after the stream's END; it stops when ctx ends. A
// reader that falls behind the window skips to the oldest munro still held
// (the Index jumps); one that asks for a position no longer held starts at
// the oldest held. The Data alias the window: the caller must not modify
// them.
func (s *Stream) Chunks(ctx context.Context, from uint64) iter.Seq[Chunk] {
	return func(yield func(Chunk) bool) {
		k, ok := s.waitMunroLog(ctx)
		if !ok {
			return
		}
		pos := LiveEdge
		if from != LiveEdge {
			pos = from >> k
		}
		for {
			h, end, _, changed := s.get(pos)
			switch {
			case h != nil:
				for i, c := range h.Chunks {
					idx := h.Index<<k + uint64(i)
					if len(c) == 0 || from != LiveEdge && idx < from {
						continue
					}
					if !yield(Chunk{Index: idx, Data: c, Published: h.Published}) {
						return
					}
				}
				pos = h.Index + 1
			case end != nil:
				yield(Chunk{Index: end.Munros << k, End: true})
				return
			default:
				select {
				case <-changed:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}
