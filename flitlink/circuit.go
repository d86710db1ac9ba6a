package flitlink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Bounds of what a closed circuit still reads (and discards) from the peer
// while waiting for the end of its stream: an honest peer stops about a
// round trip after it sees this side's end; past the bounds the stream is
// reset.
const (
	drainLimit = 16 << 20
	drainTime  = 5 * time.Second
)

// Sizes of a message's writes. A paced (bulk) Send writes the length and
// up to pacedPiece bytes in one write (copied), then the rest in pieces as
// the pacer grants them: pacedPiece at least (a 16 KiB swarm chunk with
// its message header and length prefix is one piece), more while its
// bucket holds more. An unpaced Send writes the length and up to
// firstPiece bytes in one write (copied), and the rest in one more.
const (
	pacedPiece = 16<<10 + 64
	firstPiece = 64 << 10
)

// Circuit is one message stream inside a link, opened by service name and
// class, over its own stream of the session. Messages are delivered whole
// and in order. Send and Recv are safe for concurrent use; concurrent Sends
// are serialised (a message is never interleaved with another on the same
// circuit), and so are concurrent Recvs.
type Circuit struct {
	l       *Link
	st      Stream
	id      uint32
	service string
	class   Class
	local   bool       // this side opened it
	sendMax int        // the largest message Send takes: min(own, peer's) maximum
	pacer   *bulkPacer // bulk classes: the link's controller (nil: unmanaged)

	sendSem chan struct{} // capacity 1: held by the Send in progress
	wbuf    []byte        // the Send's: length prefix and first piece
	wd      deadliner     // interrupts a blocked Write

	recvSem chan struct{} // capacity 1: held by the Recv in progress
	rd      deadliner     // interrupts a blocked Read
	// Held with recvSem: the message being read, kept across a Recv that
	// its context interrupted.
	lenBuf [LengthSize]byte
	lenN   int
	msg    []byte // nil until the length is known
	msgN   int
	rerr   error // sticky: io.EOF or the reset that ended the receive side

	closing chan struct{} // closed by Close

	mu          sync.Mutex // guards the fields below
	writeClosed bool       // CloseWrite or Close was called
	closed      bool       // Close was called
	werr        error      // sticky: why the send side broke
}

// newCircuit returns a circuit of l over st; l.mu is held and the peer's
// hello has arrived.
func newCircuit(l *Link, st Stream, id uint32, service string, class Class, local bool) *Circuit {
	c := &Circuit{
		l:       l,
		st:      st,
		id:      id,
		service: service,
		class:   class,
		local:   local,
		sendMax: l.sendMax,
		sendSem: make(chan struct{}, 1),
		recvSem: make(chan struct{}, 1),
		closing: make(chan struct{}),
		wd:      deadliner{set: st.SetWriteDeadline},
		rd:      deadliner{set: st.SetReadDeadline},
	}
	if class.bulk() {
		c.pacer = l.pacer
	}
	return c
}

// Service returns the service name the circuit was opened for.
func (c *Circuit) Service() string { return c.service }

// Class returns the circuit's class.
func (c *Circuit) Class() Class { return c.class }

// ID returns the circuit's number, unique among this side's circuits of
// the link (the two sides number their circuits independently).
func (c *Circuit) ID() uint32 { return c.id }

// Link returns the link the circuit belongs to.
func (c *Circuit) Link() *Link { return c.l }

// handshake writes the circuit header and reads the acceptor's reply.
func (c *Circuit) handshake(ctx context.Context) (byte, error) {
	hdr := appendCircuitHeader(make([]byte, 0, MaxCircuitHeader), c.service, c.class)
	if _, err := c.write(ctx, hdr); err != nil {
		return 0, c.failure(ctx, "open", err)
	}
	var reply [1]byte
	if !c.rd.begin(ctx) {
		return 0, ErrCircuitClosed
	}
	_, err := io.ReadFull(c.st, reply[:])
	if c.rd.end() && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, c.failure(ctx, "open", err)
	}
	c.l.touch()
	return reply[0], nil
}

// failure maps a stream error of op to what the caller returns: the link's
// error once it is dead, else the error wrapped in ErrCircuitReset.
func (c *Circuit) failure(ctx context.Context, op string, err error) error {
	if lerr := c.l.Err(); lerr != nil {
		return lerr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("flitlink: %s circuit %q: %w: %w", op, c.service, ErrCircuitReset, err)
}

// Send sends msg as one message: its length, then its bytes, written
// straight to the circuit's stream. It blocks while the stream's flow
// control (a slow reader) or, for Video and Data, the bulk controller
// holds it back, and returns once the message is written (not when the
// peer has read it); msg is not retained afterwards. If ctx ends first, it
// returns ctx's error; if part of the message was already written, the
// circuit is reset (both directions fail with ErrCircuitReset from then
// on). Messages above the link's maximum size fail with ErrTooLarge; after
// CloseWrite or Close, Send fails with ErrCircuitClosed.
func (c *Circuit) Send(ctx context.Context, msg []byte) error {
	l := c.l
	var queued time.Time
	if l.cfg.Metrics != nil {
		queued = time.Now()
	}
	select {
	case c.sendSem <- struct{}{}:
	case <-c.closing:
		return ErrCircuitClosed
	case <-l.done:
		return l.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sendSem }()
	select {
	case <-l.done:
		return l.Err()
	default:
	}
	if len(msg) > c.sendMax {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), c.sendMax)
	}
	c.mu.Lock()
	closed, werr := c.writeClosed, c.werr
	c.mu.Unlock()
	switch {
	case werr != nil:
		return werr
	case closed:
		return ErrCircuitClosed
	}

	// The length and the first piece in one Write (copied); the rest
	// straight from msg, in one more Write or, while a pacer meters it, in
	// the pieces it grants.
	piece := firstPiece
	if c.pacer != nil {
		piece = pacedPiece - LengthSize
	}
	first := min(len(msg), piece)
	c.wbuf = append(binary.BigEndian.AppendUint32(c.wbuf[:0], uint32(len(msg))), msg[:first]...)
	b, off := c.wbuf, first
	written := 0
	for {
		n, err := c.pacer.take(ctx, len(b))
		if err != nil {
			return c.sendFailed(ctx, written, err)
		}
		if written == 0 {
			l.cfg.Metrics.sendDelay(c.class, queued)
		}
		n, err = c.write(ctx, b[:n])
		written += n
		if err != nil {
			return c.sendFailed(ctx, written, err)
		}
		if b = b[n:]; len(b) > 0 {
			continue
		}
		if off == len(msg) {
			break
		}
		b, off = msg[off:], len(msg)
	}
	if cap(c.wbuf) > 4<<10 && len(msg) < 1<<10 {
		c.wbuf = nil // do not keep a large buffer for a circuit of small messages
	}
	l.cfg.Metrics.sent(c.class, LengthSize+len(msg))
	return nil
}

// write writes b to the stream; ctx or Close interrupts it.
func (c *Circuit) write(ctx context.Context, b []byte) (int, error) {
	if !c.wd.begin(ctx) {
		return 0, ErrCircuitClosed
	}
	n, err := c.st.Write(b)
	if c.wd.end() && err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		} else {
			err = ErrCircuitClosed
		}
	}
	return n, err
}

// sendFailed handles a Send that failed with err after writing written
// bytes of its message: a partly written message resets the stream.
func (c *Circuit) sendFailed(ctx context.Context, written int, err error) error {
	if lerr := c.l.Err(); lerr != nil {
		return lerr
	}
	interrupted := errors.Is(err, ErrCircuitClosed) || (ctx.Err() != nil && errors.Is(err, ctx.Err()))
	if interrupted && written == 0 {
		return err
	}
	broken := fmt.Errorf("flitlink: send on circuit %q: %w: %w", c.service, ErrCircuitReset, err)
	if interrupted {
		broken = fmt.Errorf("flitlink: send on circuit %q: %w: a message was abandoned half written", c.service, ErrCircuitReset)
	}
	c.mu.Lock()
	if c.werr == nil {
		c.werr = broken
	}
	c.mu.Unlock()
	_ = c.st.Reset()
	if interrupted {
		return err
	}
	return broken
}

// Recv returns the next message, read straight from the circuit's stream
// into a new buffer of the message's size (checked against the maximum
// message size first). After the peer closed the circuit and every message
// was read, it returns io.EOF; after Close, ErrCircuitClosed; when the link
// dies, the link's error (ErrLinkClosed). If ctx ends first, Recv returns
// ctx's error and the circuit stays usable: a later Recv continues the
// message.
func (c *Circuit) Recv(ctx context.Context) ([]byte, error) {
	return c.RecvBuffer(ctx, nil)
}

// RecvBuffer is Recv reading the message into buf when it fits (cap(buf)
// bytes), so that a reader of many large messages reuses its buffers. The
// message returned aliases buf if it fit. A message cut short by ctx is
// continued by the next call in the buffer it began in: buf belongs to the
// circuit until a call returns it as a message, or the circuit is done.
func (c *Circuit) RecvBuffer(ctx context.Context, buf []byte) ([]byte, error) {
	l := c.l
	select {
	case c.recvSem <- struct{}{}:
	case <-c.closing:
		return nil, ErrCircuitClosed
	case <-l.done:
		return nil, l.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.recvSem }()
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return nil, ErrCircuitClosed
	case c.rerr != nil:
		return nil, c.rerr
	}
	if !c.rd.begin(ctx) {
		return nil, ErrCircuitClosed
	}
	msg, err := c.readMessage(buf)
	tripped := c.rd.end()
	if err == nil {
		l.cfg.Metrics.received(c.class, LengthSize+len(msg))
		return msg, nil
	}
	if tripped {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ErrCircuitClosed
	}
	if lerr := l.Err(); lerr != nil {
		return nil, lerr
	}
	switch {
	case errors.Is(err, ErrProtocol):
		l.fail(fmt.Errorf("circuit %q: %w", c.service, err))
		return nil, l.Err()
	case isEOF(err) && c.lenN == 0:
		c.rerr = io.EOF
	case isEOF(err) || errors.Is(err, io.ErrUnexpectedEOF):
		l.fail(fmt.Errorf("%w: circuit %q ended inside a message", ErrProtocol, c.service))
		return nil, l.Err()
	default:
		c.rerr = fmt.Errorf("flitlink: receive on circuit %q: %w: %w", c.service, ErrCircuitReset, err)
	}
	return nil, c.rerr
}

// readMessage reads the rest of the current message: a new one into buf
// if it fits.
func (c *Circuit) readMessage(buf []byte) ([]byte, error) {
	for c.lenN < LengthSize {
		n, err := c.st.Read(c.lenBuf[c.lenN:])
		if n > 0 {
			c.lenN += n
			c.l.touch()
		}
		if err != nil && c.lenN < LengthSize {
			return nil, err
		}
	}
	if c.msg == nil {
		size, err := parseLength(&c.lenBuf, c.l.cfg.MaxMessageSize)
		if err != nil {
			return nil, err
		}
		if size > 0 && cap(buf) >= size {
			c.msg = buf[:size]
		} else {
			c.msg = make([]byte, size)
		}
	}
	for c.msgN < len(c.msg) {
		n, err := c.st.Read(c.msg[c.msgN:])
		if n > 0 {
			c.msgN += n
			c.l.touch()
		}
		if err != nil && c.msgN < len(c.msg) {
			return nil, err
		}
	}
	msg := c.msg
	c.msg, c.msgN, c.lenN = nil, 0, 0
	return msg, nil
}

// CloseWrite half-closes the circuit: after the message being sent (it
// waits for it), the peer's Recv returns io.EOF once it has read every
// message. Recv keeps working on this side.
func (c *Circuit) CloseWrite() error {
	l := c.l
	select {
	case c.sendSem <- struct{}{}:
	case <-c.closing:
		return nil
	case <-l.done:
		return nil
	}
	defer func() { <-c.sendSem }()
	c.mu.Lock()
	done := c.writeClosed || c.werr != nil
	c.writeClosed = true
	c.mu.Unlock()
	if !done {
		_ = c.st.CloseWrite() // a failure shows on the peer's side, and the link's
	}
	return nil
}

// Close closes the circuit in both directions without blocking: a Send or
// Recv in progress returns ErrCircuitClosed (a half-written message resets
// the circuit), the peer reads the messages already written and then
// io.EOF, and what the peer still sends is read and discarded until its
// end (within drainLimit and drainTime), so the peer never blocks on a
// circuit nobody reads. Close is idempotent and returns nil.
func (c *Circuit) Close() error {
	l := c.l
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.writeClosed = true
	close(c.closing)
	c.mu.Unlock()
	c.wd.close()
	c.rd.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil // the link reset the stream
	}
	l.wg.Add(1)
	go c.finish()
	return nil
}

// finish ends a closed circuit's stream: it ends this side's direction
// after the interrupted Send, then reads the peer's to its end.
func (c *Circuit) finish() {
	l := c.l
	defer l.wg.Done()
	defer l.forget(c)
	select {
	case c.sendSem <- struct{}{}:
	case <-l.done:
		return
	}
	c.mu.Lock()
	broken := c.werr != nil
	c.mu.Unlock()
	if !broken {
		_ = c.st.CloseWrite()
	}
	<-c.sendSem
	select {
	case c.recvSem <- struct{}{}:
	case <-l.done:
		return
	}
	defer func() { <-c.recvSem }()
	if c.rerr == io.EOF {
		return
	}
	if broken || c.st.SetReadDeadline(time.Now().Add(drainTime)) != nil {
		_ = c.st.Reset()
		return
	}
	n, err := io.Copy(io.Discard, io.LimitReader(c.st, drainLimit))
	if err != nil || n == drainLimit {
		_ = c.st.Reset()
	}
}

// abort resets a circuit that never reached the application.
func (c *Circuit) abort() {
	_ = c.st.Reset()
	c.l.forget(c)
}
