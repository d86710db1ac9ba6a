package memlink

import (
	"io"
	"os"
	"sync"
	"time"
)

// piece is the unit in which a Write is serialised when bandwidth is
// limited: streams writing at once take turns piece by piece, as QUIC
// interleaves streams packet by packet, so a small message waits for at
// most a piece of another stream's bytes.
const piece = 16 << 10

// pipe is one stream of a connection: an in-memory full-duplex byte stream.
// Each direction delivers every piece whole and in order, Latency after it
// has been serialised at the connection's Bandwidth. It uses no goroutines:
// readers and writers wait on timers (faked inside a synctest bubble).
type pipe struct {
	c   *conn
	num int // the stream's number in its connection (0: the control stream)

	mu      sync.Mutex // guards the fields below
	dir     [2]half    // dir[i] carries what end i writes
	err     error      // reset or killed: both ends fail with it
	wclosed [2]bool    // end i closed its direction (CloseWrite)
	rdl     [2]time.Time
	wdl     [2]time.Time
}

// half is one direction of a pipe.
type half struct {
	chunks []chunk
	unread int           // bytes in chunks
	eof    bool          // the writing end closed; EOF at eofAt
	eofAt  time.Time     //
	hold   time.Time     // Stall: nothing is delivered before this
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

// waitLocked releases p.mu until h changes or until, if not zero.
func (p *pipe) waitLocked(h *half, until time.Time) {
	sig := h.sigLocked()
	p.mu.Unlock()
	defer p.mu.Lock()
	if until.IsZero() {
		<-sig
		return
	}
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-t.C:
	case <-sig:
	}
}

// end is one end of a pipe; it implements flitlink.Stream.
type end struct {
	p *pipe
	i int
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// Read returns bytes whose delivery time has come, waiting for them.
func (e *end) Read(b []byte) (int, error) {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.dir[1-e.i]
	for {
		if p.err != nil {
			return 0, p.err
		}
		now := time.Now()
		if dl := p.rdl[e.i]; !dl.IsZero() && !now.Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
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
		p.waitLocked(h, earliest(next, p.rdl[e.i]))
	}
}

// Write queues b for delivery and returns once it has been serialised at
// the connection's bandwidth. It blocks while the direction holds Buffer
// bytes not yet read, as QUIC's stream flow control does.
func (e *end) Write(b []byte) (int, error) {
	p := e.p
	c := p.c
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.dir[e.i]
	written := 0
	for written < len(b) {
		for {
			now := time.Now()
			switch {
			case p.err != nil:
				return written, p.err
			case p.wclosed[e.i]:
				return written, io.ErrClosedPipe
			case !p.wdl[e.i].IsZero() && !now.Before(p.wdl[e.i]):
				return written, os.ErrDeadlineExceeded
			}
			if h.unread < c.cfg.Buffer {
				break
			}
			p.waitLocked(h, p.wdl[e.i])
		}
		k := min(len(b)-written, c.cfg.Buffer-h.unread)
		if c.cfg.Bandwidth > 0 {
			k = min(k, piece)
		}
		now := time.Now()
		sent := c.serialise(e.i, now, k)
		at := sent.Add(c.cfg.Latency)
		if h.hold.After(at) {
			at = h.hold
		}
		h.chunks = append(h.chunks, chunk{data: append([]byte(nil), b[written:written+k]...), at: at})
		h.unread += k
		written += k
		h.notifyLocked()
		for sent.After(time.Now()) && p.err == nil {
			if dl := p.wdl[e.i]; !dl.IsZero() && !time.Now().Before(dl) {
				return written, os.ErrDeadlineExceeded // what is queued still goes out
			}
			p.waitLocked(h, earliest(sent, p.wdl[e.i]))
		}
	}
	return written, nil
}

// CloseWrite ends this end's direction: the peer reads what is in flight,
// then EOF (one latency after the last byte).
func (e *end) CloseWrite() error {
	p := e.p
	p.mu.Lock()
	if p.wclosed[e.i] || p.err != nil {
		p.mu.Unlock()
		return nil
	}
	p.wclosed[e.i] = true
	h := &p.dir[e.i]
	h.eof = true
	h.eofAt = p.c.serialise(e.i, time.Now(), 0).Add(p.c.cfg.Latency)
	if h.hold.After(h.eofAt) {
		h.eofAt = h.hold
	}
	h.notifyLocked()
	done := p.wclosed[0] && p.wclosed[1]
	p.mu.Unlock()
	if done {
		p.c.forget(p)
	}
	return nil
}

// Reset aborts both directions at once: both ends fail with ErrReset and
// bytes in flight are lost.
func (e *end) Reset() error {
	e.p.kill(ErrReset)
	return nil
}

// SetReadDeadline makes Read fail with os.ErrDeadlineExceeded from t on
// (zero: no deadline).
func (e *end) SetReadDeadline(t time.Time) error {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rdl[e.i] = t
	p.dir[1-e.i].notifyLocked()
	return nil
}

// SetWriteDeadline makes Write fail with os.ErrDeadlineExceeded from t on
// (zero: no deadline).
func (e *end) SetWriteDeadline(t time.Time) error {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wdl[e.i] = t
	p.dir[e.i].notifyLocked()
	return nil
}

// kill breaks the pipe at once: reads and writes at both ends fail with err
// and bytes in flight are lost.
func (p *pipe) kill(err error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return
	}
	p.err = err
	for i := range p.dir {
		p.dir[i].chunks = nil
		p.dir[i].unread = 0
		p.dir[i].notifyLocked()
	}
	p.mu.Unlock()
	p.c.forget(p)
}

// stall holds back what end i has written and writes until until, as a
// lost packet holds back the bytes behind it.
func (p *pipe) stall(i int, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &p.dir[i]
	if until.After(h.hold) {
		h.hold = until
	}
	for k := range h.chunks {
		if h.chunks[k].at.Before(until) {
			h.chunks[k].at = until
		}
	}
	if h.eof && h.eofAt.Before(until) {
		h.eofAt = until
	}
	h.notifyLocked()
}
