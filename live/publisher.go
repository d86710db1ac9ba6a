package live

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
)

// FlushDelay is how long written bytes wait for more before the publisher
// cuts and signs what it has: the latency bound of a stream.
const FlushDelay = 20 * time.Millisecond

// ErrClosed reports a write to a stream its publisher closed.
var ErrClosed = errors.New("live: stream closed")

// Publisher cuts the bytes written to a stream into chunks of at most
// MaxChunkSize, groups them in munros of 2^k chunks, signs each munro with
// the stream's key and adds it to the stream's buffer. A munro is signed
// when it is full, or FlushDelay after the first byte not yet signed: then
// the partial chunk is cut and the munro completed with empty chunks. Its
// methods are safe for concurrent use.
type Publisher struct {
	key feed.PrivateKey
	s   *Stream
	m   int // chunks per munro

	mu     sync.Mutex // guards the fields below
	chunks [][]byte   // the cut chunks of the munro being filled (< m)
	cur    []byte     // bytes not yet cut (< MaxChunkSize)
	next   uint64     // the index of the munro being filled
	timer  *time.Timer
	gen    uint64 // counts flushes: a timer flushes only its own generation
	closed bool
}

// NewPublisher returns the publisher of s, an Origin stream whose ID is
// key's public key.
func NewPublisher(key feed.PrivateKey, s *Stream) *Publisher {
	return &Publisher{key: key, s: s, m: 1 << s.MunroLog()}
}

// Write appends data to the stream. It returns ErrClosed after Close.
func (p *Publisher) Write(data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("live: write to stream %s: %w", p.s.ID().Short(), ErrClosed)
	}
	for len(data) > 0 {
		if p.cur == nil {
			p.cur = make([]byte, 0, MaxChunkSize)
		}
		n := min(len(data), MaxChunkSize-len(p.cur))
		p.cur = append(p.cur, data[:n]...)
		data = data[n:]
		if len(p.cur) == MaxChunkSize {
			p.chunks, p.cur = append(p.chunks, p.cur), nil
			if len(p.chunks) == p.m {
				p.sealLocked()
			}
		}
	}
	if p.timer == nil && (len(p.chunks) > 0 || len(p.cur) > 0) {
		gen := p.gen
		p.timer = time.AfterFunc(FlushDelay, func() { p.flush(gen) })
	}
	return nil
}

// flush signs the munro being filled if the flush of generation gen is
// still due.
func (p *Publisher) flush(gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen == p.gen && !p.closed {
		p.flushLocked()
	}
}

// flushLocked cuts the bytes not yet cut and signs the munro being filled,
// if there is anything to sign.
func (p *Publisher) flushLocked() {
	if len(p.cur) > 0 {
		p.chunks, p.cur = append(p.chunks, p.cur), nil
	}
	if len(p.chunks) > 0 {
		p.sealLocked()
	}
}

// sealLocked completes the munro being filled with empty chunks, signs it
// and adds it to the stream. Its callers cut p.cur first, so nothing is
// pending afterwards: the flush timer stops.
func (p *Publisher) sealLocked() {
	chunks := append(p.chunks, make([][]byte, p.m-len(p.chunks))...)
	m := Munro{Index: p.next, Published: time.Now().UnixMicro(), Chunks: chunks}
	if err := m.Sign(p.key, p.s.MunroLog()); err != nil {
		panic(err) // unreachable: 2^k chunks always make a subtree
	}
	p.s.Add(m)
	p.next++
	p.chunks = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
		p.gen++
	}
}

// Close flushes what was written, signs the stream's END and adds it to
// the stream. Later writes fail; a second Close does nothing.
func (p *Publisher) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.flushLocked()
	p.closed = true
	e := End{Munros: p.next}
	e.Sign(p.key)
	p.s.Finish(e)
}
