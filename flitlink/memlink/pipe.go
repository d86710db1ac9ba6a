package memlink

import (
	"io"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
)

// pipe is an in-memory full-duplex byte stream between two endpoints. Each
// direction delivers every write whole and in order, Latency after it has
// been serialised at Bandwidth. It uses no goroutines of its own: readers
// and writers wait on timers (faked inside a synctest bubble).
type pipe struct {
	latency   time.Duration
	bandwidth int64 // bytes/s; 0 = unlimited
	buffer    int   // bytes in flight per direction before Write blocks
	ids       [2]feed.ID
	onDone    func(*pipe) // called once, when both ends are closed

	dead     chan struct{} // closed by kill
	closedCh [2]chan struct{}

	mu     sync.Mutex // guards the fields below
	dir    [2]half    // dir[i] carries what end i writes
	closed [2]bool
	killed bool
}

// half is one direction of a pipe.
type half struct {
	chunks []chunk
	unread int       // bytes in chunks
	txFree time.Time // when the sender's serialiser is free again
	eof    bool      // the writing end closed; EOF at eofAt
	eofAt  time.Time
	err    error         // the pipe was killed: both ends fail at once
	sig    chan struct{} // closed (and cleared) on any change
}

type chunk struct {
	data []byte
	at   time.Time // delivery time
}

func (h *half) notifyLocked() {
	if h.sig != nil {
		close(h.sig)
		h.sig = nil
	}
}

func (h *half) sigLocked() chan struct{} {
	if h.sig == nil {
		h.sig = make(chan struct{})
	}
	return h.sig
}

func newPipe(cfg Config, a, b feed.ID, onDone func(*pipe)) *pipe {
	return &pipe{
		latency:   cfg.Latency,
		bandwidth: cfg.Bandwidth,
		buffer:    cfg.Buffer,
		ids:       [2]feed.ID{a, b},
		onDone:    onDone,
		dead:      make(chan struct{}),
		closedCh:  [2]chan struct{}{make(chan struct{}), make(chan struct{})},
	}
}

// end returns end i (0 or 1) as a connection.
func (p *pipe) end(i int) *end { return &end{p: p, i: i} }

// kill breaks the pipe at once: reads and writes at both ends fail with err
// and bytes in flight are lost.
func (p *pipe) kill(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		return
	}
	p.killed = true
	close(p.dead)
	for i := range p.dir {
		p.dir[i].err = err
		p.dir[i].chunks = nil
		p.dir[i].unread = 0
		p.dir[i].notifyLocked()
	}
}

// end is one end of a pipe; it implements io.ReadWriteCloser.
type end struct {
	p *pipe
	i int
}

// Read returns bytes whose delivery time has come, waiting for them.
func (e *end) Read(b []byte) (int, error) {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.dir[1-e.i]
	for {
		if p.closed[e.i] {
			return 0, io.ErrClosedPipe
		}
		if h.err != nil {
			return 0, h.err
		}
		now := time.Now()
		n := 0
		for len(h.chunks) > 0 && n < len(b) && !h.chunks[0].at.After(now) {
			c := &h.chunks[0]
			k := copy(b[n:], c.data)
			n += k
			if c.data = c.data[k:]; len(c.data) == 0 {
				h.chunks[0] = chunk{}
				h.chunks = h.chunks[1:]
			}
		}
		if n > 0 || len(b) == 0 {
			h.unread -= n
			h.notifyLocked()
			return n, nil
		}
		var next time.Time
		switch {
		case len(h.chunks) > 0:
			next = h.chunks[0].at
		case h.eof && !h.eofAt.After(now):
			return 0, io.EOF
		case h.eof:
			next = h.eofAt
		}
		sig := h.sigLocked()
		p.mu.Unlock()
		if next.IsZero() {
			<-sig
		} else {
			t := time.NewTimer(next.Sub(now))
			select {
			case <-t.C:
			case <-sig:
			}
			t.Stop()
		}
		p.mu.Lock()
	}
}

// Write queues b for delivery and returns once it has been serialised at
// the pipe's bandwidth. It blocks while the direction holds Buffer bytes.
func (e *end) Write(b []byte) (int, error) {
	p := e.p
	p.mu.Lock()
	h := &p.dir[e.i]
	for {
		switch {
		case h.err != nil: // killed: the kill's cause wins over the ends closing after it
			p.mu.Unlock()
			return 0, h.err
		case p.closed[e.i] || p.closed[1-e.i]:
			p.mu.Unlock()
			return 0, io.ErrClosedPipe
		}
		if h.unread < p.buffer {
			break
		}
		sig := h.sigLocked()
		p.mu.Unlock()
		<-sig
		p.mu.Lock()
	}
	now := time.Now()
	start := now
	if h.txFree.After(start) {
		start = h.txFree
	}
	sent := start
	if p.bandwidth > 0 {
		sent = start.Add(time.Duration(int64(len(b)) * int64(time.Second) / p.bandwidth))
	}
	h.txFree = sent
	h.chunks = append(h.chunks, chunk{data: append([]byte(nil), b...), at: sent.Add(p.latency)})
	h.unread += len(b)
	h.notifyLocked()
	p.mu.Unlock()

	if sent.After(now) {
		t := time.NewTimer(sent.Sub(now))
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.dead:
		case <-p.closedCh[e.i]:
		}
	}
	return len(b), nil
}

// Close closes this end: the peer reads what is in flight, then EOF (one
// latency after the last byte); writes towards this end fail.
func (e *end) Close() error {
	p := e.p
	p.mu.Lock()
	if p.closed[e.i] {
		p.mu.Unlock()
		return nil
	}
	p.closed[e.i] = true
	close(p.closedCh[e.i])
	out := &p.dir[e.i]
	out.eof = true
	out.eofAt = time.Now()
	if out.txFree.After(out.eofAt) {
		out.eofAt = out.txFree
	}
	out.eofAt = out.eofAt.Add(p.latency)
	out.notifyLocked()
	p.dir[1-e.i].notifyLocked()
	both := p.closed[0] && p.closed[1]
	p.mu.Unlock()
	if both && p.onDone != nil {
		p.onDone(p)
	}
	return nil
}
