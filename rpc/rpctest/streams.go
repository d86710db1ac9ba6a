package rpctest

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Bounds of the fake's live streams.
const (
	// StreamChunkSize is the largest chunk the fake cuts: each write is cut
	// into chunks of at most this many bytes at once (the fake has no
	// flush timer).
	StreamChunkSize = 16 << 10
	// StreamWindow is the number of chunks the fake keeps per stream; a
	// watcher further behind skips to the oldest one kept, so the Index
	// of its next chunk jumps.
	StreamWindow = 64
	// MaxStreams caps the streams the fake holds, open or closed;
	// OpenStream wraps api.ErrLimit beyond it.
	MaxStreams = 64
)

// streams is the fake's live streams: each one's last chunks in memory,
// delivered to watchers in this process only (the fake has no peers).
type streams struct {
	mu       sync.Mutex // guards the fields below
	streams  map[feed.ID]*fakeStream
	watches  int // WatchStream goroutines running
	sent     uint64
	received uint64
}

type fakeStream struct {
	base    uint64   // index of chunks[0]
	chunks  [][]byte // the last StreamWindow chunks
	times   []int64  // publish time of each chunk, unix microseconds
	closed  bool
	dropped bool          // DropStream: watches end without End
	changed chan struct{} // closed and replaced on every write and on close
}

// OpenStream makes a stream with a fresh random key.
func (n *Node) OpenStream(ctx context.Context) (feed.ID, error) {
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		return feed.ID{}, fmt.Errorf("open stream: %w", err)
	}
	s := &n.live
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = make(map[feed.ID]*fakeStream)
	}
	if len(s.streams) >= MaxStreams {
		return feed.ID{}, fmt.Errorf("open stream: %d streams held: %w", MaxStreams, api.ErrLimit)
	}
	id := key.Public()
	s.streams[id] = &fakeStream{changed: make(chan struct{})}
	return id, nil
}

// publishedLocked returns open stream id.
func (s *streams) publishedLocked(id feed.ID) (*fakeStream, error) {
	st := s.streams[id]
	if st == nil || st.closed {
		return nil, fmt.Errorf("stream %s: not published here or closed: %w", id, api.ErrNotFound)
	}
	return st, nil
}

// WriteStream cuts data into chunks and wakes the watchers.
func (n *Node) WriteStream(ctx context.Context, id feed.ID, data []byte) error {
	s := &n.live
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.publishedLocked(id)
	if err != nil {
		return fmt.Errorf("write stream: %w", err)
	}
	now := time.Now().UnixMicro()
	for len(data) > 0 {
		c := data[:min(len(data), StreamChunkSize)]
		data = data[len(c):]
		st.chunks = append(st.chunks, append([]byte(nil), c...))
		st.times = append(st.times, now)
		s.received += uint64(len(c))
	}
	if drop := len(st.chunks) - StreamWindow; drop > 0 {
		st.chunks, st.times = st.chunks[drop:], st.times[drop:]
		st.base += uint64(drop)
	}
	st.wakeLocked()
	return nil
}

// CloseStream ends a stream: its watchers get what they lack, then End.
func (n *Node) CloseStream(ctx context.Context, id feed.ID) error {
	s := &n.live
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.publishedLocked(id)
	if err != nil {
		return fmt.Errorf("close stream: %w", err)
	}
	st.closed = true
	st.wakeLocked()
	return nil
}

func (st *fakeStream) wakeLocked() {
	close(st.changed)
	st.changed = make(chan struct{})
}

// WatchStream delivers stream id's chunks from index from (the next chunk
// written for api.StreamLiveEdge) until End. A stream this fake does not
// hold wraps api.ErrUnavailable at once.
func (n *Node) WatchStream(ctx context.Context, id feed.ID, from int64) (<-chan api.StreamChunk, func(), error) {
	s := &n.live
	s.mu.Lock()
	st := s.streams[id]
	if st == nil {
		s.mu.Unlock()
		return nil, nil, fmt.Errorf("watch stream %s: no carrier: %w", id, api.ErrUnavailable)
	}
	next := uint64(from)
	if from == api.StreamLiveEdge {
		next = st.base + uint64(len(st.chunks))
	}
	s.watches++
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan api.StreamChunk)
	done := make(chan struct{})
	go func() {
		defer func() {
			s.mu.Lock()
			s.watches--
			s.mu.Unlock()
			close(ch)
			close(done)
		}()
		for {
			c, wake, ok := s.next(st, &next)
			if !ok {
				return
			}
			if wake != nil {
				select {
				case <-wake:
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
			if c.End {
				return
			}
		}
	}()
	var once sync.Once
	return ch, func() { once.Do(func() { cancel(); <-done }) }, nil
}

// next returns the chunk at *next (or the oldest one kept, if the window
// moved past it) and advances *next, or the End chunk once a closed
// stream has no more, or else a channel closed when there may be more;
// false once the stream was dropped.
func (s *streams) next(st *fakeStream, next *uint64) (api.StreamChunk, <-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.dropped {
		return api.StreamChunk{}, nil, false
	}
	*next = max(*next, st.base)
	if i := *next - st.base; i < uint64(len(st.chunks)) {
		c := api.StreamChunk{Index: *next, Data: st.chunks[i], Published: st.times[i]}
		*next++
		s.sent += uint64(len(c.Data))
		return c, nil, true
	}
	if st.closed {
		return api.StreamChunk{Index: *next, End: true}, nil, true
	}
	return api.StreamChunk{}, st.changed, true
}

// DropStream makes the fake lose stream id as a node that lost every
// carrier would: its watches end without End, and it is unknown from
// then on.
func (n *Node) DropStream(id feed.ID) {
	s := &n.live
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[id]; st != nil {
		st.dropped = true
		st.wakeLocked()
		delete(s.streams, id)
	}
}

// StreamStats counts the bytes written to the fake's streams as received
// and the bytes delivered to watchers as sent.
func (n *Node) StreamStats() api.StreamStats {
	s := &n.live
	s.mu.Lock()
	defer s.mu.Unlock()
	return api.StreamStats{SentBytes: s.sent, ReceivedBytes: s.received}
}

// StreamWatches returns the WatchStream deliveries still running.
func (n *Node) StreamWatches() int {
	s := &n.live
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watches
}
