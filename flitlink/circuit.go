package flitlink

import (
	"context"
	"fmt"
	"io"
	"time"
)

type circuitState uint8

const (
	stateOpening circuitState = iota // OPEN sent, waiting for the reply
	stateOpen                        // accepted
	stateRefused                     // the peer refused it
)

// Circuit is one message stream inside a link, opened by service name and
// class. Messages are delivered whole and in order. Send and Recv are safe
// for concurrent use; concurrent Sends are serialised (a message is never
// interleaved with another on the same circuit).
type Circuit struct {
	l       *Link
	id      uint32
	service string
	class   Class
	local   bool          // this side opened it
	sendMax int           // largest message Send accepts
	sendSem chan struct{} // capacity 1: held by the Send in progress

	// Guarded by l.mu.
	state     circuitState
	reply     chan struct{} // local circuits: closed on ACCEPT or REFUSE
	refuse    RefuseReason
	abandoned bool // Open gave up before the reply

	inCtrl     bool // in l.ctrl
	needOpen   bool
	needAccept bool
	needRefuse bool
	needClose  bool
	grant      int // credit to announce to the peer

	sendCredit  int     // payload bytes the peer lets us send
	out         *outMsg // message being sent
	needCancel  bool    // a partly sent message was abandoned: send CANCEL
	inReady     bool    // in l.ready[class]
	writeClosed bool    // CloseWrite or Close was called
	sentClose   bool    // CLOSE handed to the writer

	recvOutstanding int // credit the peer has not used yet
	queue           fifo[inMsg]
	queuedCost      int    // credit cost of the messages in queue
	partial         []byte // message being reassembled (reader's)
	partialCost     int
	partialLen      int
	inPartial       bool
	remoteClosed    bool          // the peer sent CLOSE
	localClosed     bool          // Close was called: discard what arrives
	sig             chan struct{} // closed (and cleared) when Recv may progress
}

// outMsg is a message handed to the writer by Send.
type outMsg struct {
	data     []byte
	off      int // bytes already copied into frames
	done     chan struct{}
	finished bool
	err      error
	queued   time.Time // when Send took it; set only with Config.Metrics
}

func (m *outMsg) finishLocked(err error) {
	m.finished = true
	m.err = err
	close(m.done)
}

// inMsg is a received message and the credit it cost.
type inMsg struct {
	data []byte
	cost int
}

// Service returns the service name the circuit was opened for.
func (c *Circuit) Service() string { return c.service }

// Class returns the circuit's class.
func (c *Circuit) Class() Class { return c.class }

// ID returns the circuit id (odd if the link's initiator opened it).
func (c *Circuit) ID() uint32 { return c.id }

// Link returns the link the circuit belongs to.
func (c *Circuit) Link() *Link { return c.l }

// Send sends msg as one message. It blocks while the peer has granted no
// credit, and returns once the last fragment has been handed to the link's
// writer (not when the peer has read it); msg is not retained afterwards.
// If ctx ends first, the message is abandoned (the peer discards any part of
// it) and ctx's error is returned. Messages above the link's maximum size
// fail with ErrTooLarge; after CloseWrite or Close, with ErrCircuitClosed.
func (c *Circuit) Send(ctx context.Context, msg []byte) error {
	l := c.l
	if len(msg) > c.sendMax {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(msg), c.sendMax)
	}
	select {
	case c.sendSem <- struct{}{}:
	case <-l.done:
		return l.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sendSem }()

	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return err
	}
	if c.writeClosed {
		l.mu.Unlock()
		return ErrCircuitClosed
	}
	m := &outMsg{data: msg, done: make(chan struct{})}
	if l.cfg.Metrics != nil {
		m.queued = time.Now()
	}
	c.out = m
	l.readyLocked(c)
	l.mu.Unlock()

	select {
	case <-m.done:
		return m.err
	case <-l.done:
		return l.Err()
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !m.finished {
		c.abortLocked(ctx.Err())
	}
	return m.err
}

// abortLocked abandons the message being sent, failing its Send with err.
func (c *Circuit) abortLocked(err error) {
	m := c.out
	if m == nil {
		return
	}
	c.out = nil
	if m.off > 0 {
		c.needCancel = true
		c.l.readyLocked(c)
	}
	m.finishLocked(err)
	c.afterSendLocked()
}

// afterSendLocked queues CLOSE once the send side is closed and idle.
func (c *Circuit) afterSendLocked() {
	if c.writeClosed && c.out == nil && !c.needCancel && !c.needClose && !c.sentClose && c.state == stateOpen {
		c.needClose = true
		c.l.queueCtrlLocked(c)
	}
}

func (c *Circuit) sendableLocked() bool {
	return c.needCancel || (c.out != nil && c.sendCredit > 0)
}

// Recv returns the next message. After the peer closed the circuit and every
// message was read, it returns io.EOF; after Close, ErrCircuitClosed; when
// the link dies, messages already received are still returned, then the
// link's error (ErrLinkClosed).
func (c *Circuit) Recv(ctx context.Context) ([]byte, error) {
	l := c.l
	for {
		l.mu.Lock()
		if c.localClosed {
			l.mu.Unlock()
			return nil, ErrCircuitClosed
		}
		if m, ok := c.queue.pop(); ok {
			c.queuedCost -= m.cost
			l.maybeGrantLocked(c)
			l.mu.Unlock()
			return m.data, nil
		}
		if c.remoteClosed {
			l.mu.Unlock()
			return nil, io.EOF
		}
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return nil, err
		}
		if err := l.waitLocked(ctx, &c.sig); err != nil {
			return nil, err
		}
	}
}

func (c *Circuit) notifyLocked() {
	if c.sig != nil {
		close(c.sig)
		c.sig = nil
	}
}

func (c *Circuit) dropPartialLocked() {
	c.partial = nil
	c.partialCost = 0
	c.partialLen = 0
	c.inPartial = false
}

// CloseWrite half-closes the circuit: after the message being sent (if any),
// CLOSE tells the peer no more messages follow, and its Recv returns io.EOF
// once it has read them all. Recv keeps working on this side.
func (c *Circuit) CloseWrite() error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.closeWriteLocked()
	return nil
}

func (c *Circuit) closeWriteLocked() {
	if !c.writeClosed {
		c.writeClosed = true
		c.afterSendLocked()
	}
}

// Close closes the circuit in both directions: a Send in progress is
// abandoned, CLOSE is sent, messages not yet read are dropped and later ones
// are discarded (while still granting credit, so the peer never blocks on a
// circuit nobody reads). Close is idempotent and returns nil.
func (c *Circuit) Close() error {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.closeLocked(ErrCircuitClosed)
	return nil
}

func (c *Circuit) closeLocked(err error) {
	c.abortLocked(err)
	c.closeWriteLocked()
	if c.localClosed {
		return
	}
	c.localClosed = true
	c.queue = fifo[inMsg]{}
	c.queuedCost = 0
	c.partial = nil
	c.partialCost = 0
	c.notifyLocked()
	c.l.maybeGrantLocked(c)
}

func (c *Circuit) hasControlLocked() bool {
	return c.needOpen || c.needAccept || c.needRefuse || c.grant > 0 || c.needClose
}
