package flitlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// Link is one flit link to a peer over a reliable, ordered byte stream. It
// runs two goroutines, a reader and a writer, until the stream fails or
// Close is called. All methods are safe for concurrent use.
type Link struct {
	conn      io.ReadWriteCloser
	remote    feed.ID
	initiator bool
	cfg       Config
	log       *slog.Logger

	done    chan struct{}  // closed when the link is dead (err is set)
	helloCh chan struct{}  // closed when the peer's hello has been read
	wake    chan struct{}  // capacity 1: the writer may have work
	wg      sync.WaitGroup // the reader and the writer

	wbuf []byte // owned by the writer goroutine (filled under mu)

	rhdr [HeaderSize]byte // owned by the reader goroutine
	rbuf []byte           // owned by the reader goroutine

	// mu guards the fields below and the fields of every Circuit of this
	// link that are marked "guarded by l.mu". No blocking call (I/O,
	// channel wait) is made while holding it.
	mu           sync.Mutex
	err          error  // why the link died; nil while alive
	peerFlit     int    // the peer's hello; zero until it arrived
	peerWindow   int    //
	sendFlit     int    // min(own, peer's) flit size
	sendMax      int    // min(own, peer's) max message size
	capability   uint16 // min(own, peer's) capability
	helloSent    bool
	nextID       uint64 // next circuit id this side opens (odd: initiator)
	lastRemoteID uint32 // highest circuit id the peer opened
	circuits     map[uint32]*Circuit
	localOpen    int // circuits this side opened, not yet freed
	remoteOpen   int // circuits the peer opened, not yet freed or refused
	backlog      fifo[*Circuit]
	acceptSig    chan struct{} // closed (and cleared) when Accept may progress
	ctrl         fifo[*Circuit]
	ready        [numClasses]fifo[*Circuit]
	pass         [numClasses]uint64 // stride-scheduler virtual time (Video, Data)
	discard      limit.Bucket       // bytes the peer may send on circuits this side closed (limits.go)
}

// NewLink starts a link over conn, which it owns from now on: conn is closed
// when the link dies. remote is the peer's identity as authenticated by the
// transport. Exactly one side of a connection must be the initiator; it opens
// odd circuit ids, the acceptor even ones.
func NewLink(conn io.ReadWriteCloser, remote feed.ID, initiator bool, cfg Config) *Link {
	cfg = cfg.withDefaults()
	l := &Link{
		conn:      conn,
		remote:    remote,
		initiator: initiator,
		cfg:       cfg,
		log:       cfg.Logger.With("remote", remote.Short()),
		done:      make(chan struct{}),
		helloCh:   make(chan struct{}),
		wake:      make(chan struct{}, 1),
		wbuf:      make([]byte, 0, 2*(HeaderSize+max(cfg.FlitSize, MaxControlSize))),
		rbuf:      make([]byte, max(cfg.FlitSize, MaxControlSize)),
		circuits:  make(map[uint32]*Circuit),
		nextID:    2,
		discard:   newDiscard(cfg, time.Now()),
	}
	if initiator {
		l.nextID = 1
	}
	l.wg.Add(2)
	go l.readLoop()
	go l.writeLoop()
	return l
}

// Remote returns the peer's identity.
func (l *Link) Remote() feed.ID { return l.remote }

// Initiator reports whether this side initiated the connection.
func (l *Link) Initiator() bool { return l.initiator }

// Done returns a channel closed when the link is dead.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err returns why the link died (wrapping ErrLinkClosed), or nil while it
// is alive.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close kills the link: the connection is closed, every circuit fails with
// ErrLinkClosed, and Close waits for the link's goroutines. Frames not yet
// written are dropped; to deliver everything, close the circuits and wait
// for the peer's CLOSE first. Close is idempotent and returns nil.
func (l *Link) Close() error {
	l.fail(errLocalClose)
	l.wg.Wait()
	return nil
}

// Open opens a circuit to the peer for service with the given class. It
// waits for the peer's hello and for its ACCEPT or REFUSE; a refusal is a
// *RefusedError (errors.Is(err, ErrRefused)).
func (l *Link) Open(ctx context.Context, service string, class Class) (*Circuit, error) {
	if len(service) == 0 || len(service) > MaxServiceLen || !utf8.ValidString(service) || class >= numClasses {
		return nil, fmt.Errorf("%w: %q, class %v", ErrBadService, service, class)
	}
	select {
	case <-l.helloCh:
	case <-l.done:
		return nil, l.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return nil, err
	}
	if l.localOpen >= MaxCircuits || l.nextID > math.MaxUint32 {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %d open", ErrTooManyCircuits, MaxCircuits)
	}
	id := uint32(l.nextID)
	l.nextID += 2
	c := l.newCircuitLocked(id, service, class, true)
	c.reply = make(chan struct{})
	l.circuits[id] = c
	l.localOpen++
	c.needOpen = true
	l.queueCtrlLocked(c)
	l.mu.Unlock()

	select {
	case <-c.reply:
	case <-l.done:
		return nil, l.Err()
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch c.state {
	case stateOpen:
		return c, nil
	case stateRefused:
		return nil, &RefusedError{Service: service, Reason: c.refuse}
	}
	if l.err != nil {
		return nil, l.err
	}
	// Still waiting: give up. An ACCEPT that arrives later closes it.
	c.abandoned = true
	return nil, ctx.Err()
}

// Accept returns the next circuit the peer opened. Circuits are accepted on
// the wire as soon as they arrive (up to Config.AcceptBacklog waiting for
// Accept), so the peer may already have sent data on them.
func (l *Link) Accept(ctx context.Context) (*Circuit, error) {
	for {
		l.mu.Lock()
		if l.err != nil {
			err := l.err
			l.mu.Unlock()
			return nil, err
		}
		if c, ok := l.backlog.pop(); ok {
			l.mu.Unlock()
			return c, nil
		}
		if err := l.waitLocked(ctx, &l.acceptSig); err != nil {
			return nil, err
		}
	}
}

// waitLocked releases l.mu, which the caller holds, and waits until *sig
// is closed (it is made here if nil), the link dies or ctx ends. The
// caller re-locks and re-checks its condition after a nil return.
func (l *Link) waitLocked(ctx context.Context, sig *chan struct{}) error {
	if *sig == nil {
		*sig = make(chan struct{})
	}
	ch := *sig
	l.mu.Unlock()
	select {
	case <-ch:
	case <-l.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// fail kills the link with cause; only the first call has an effect.
func (l *Link) fail(cause error) {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return
	}
	l.err = fmt.Errorf("%w: %w", ErrLinkClosed, cause)
	close(l.done)
	l.mu.Unlock()
	l.log.Debug("flitlink: link closed", "cause", cause)
	_ = l.conn.Close() // the cause is what matters; a close error adds nothing
}

func (l *Link) wakeWriter() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *Link) newCircuitLocked(id uint32, service string, class Class, local bool) *Circuit {
	return &Circuit{
		l:               l,
		id:              id,
		service:         service,
		class:           class,
		local:           local,
		sendMax:         l.sendMax,
		sendSem:         make(chan struct{}, 1),
		sendCredit:      l.peerWindow,
		recvOutstanding: l.cfg.Window,
	}
}

// queueCtrlLocked schedules c's pending control messages.
func (l *Link) queueCtrlLocked(c *Circuit) {
	if !c.inCtrl {
		c.inCtrl = true
		l.ctrl.push(c)
		l.wakeWriter()
	}
}

// readyLocked schedules c's data if it has something it may send.
func (l *Link) readyLocked(c *Circuit) {
	if c.inReady || !c.sendableLocked() {
		return
	}
	c.inReady = true
	q := &l.ready[c.class]
	if q.len() == 0 && (c.class == Video || c.class == Data) {
		// A class that was idle starts level with the busy one instead of
		// spending credit it banked while idle.
		other := Video + Data - c.class
		l.pass[c.class] = max(l.pass[c.class], l.pass[other])
	}
	q.push(c)
	l.wakeWriter()
}

// maybeFreeLocked forgets c once both sides have closed it.
func (l *Link) maybeFreeLocked(c *Circuit) {
	if !c.sentClose || !c.remoteClosed || l.circuits[c.id] != c {
		return
	}
	delete(l.circuits, c.id)
	if c.local {
		l.localOpen--
	} else {
		l.remoteOpen--
	}
}

// maybeGrantLocked re-grants credit to the peer for c. Bytes of complete
// messages waiting for Recv count against the window; a partial message
// counts only while complete ones wait too, so a message larger than the
// window can still arrive (it is bounded by MaxMessageSize instead).
// Credit is granted in steps of at least a quarter window.
func (l *Link) maybeGrantLocked(c *Circuit) {
	if c.remoteClosed || c.state != stateOpen || l.err != nil {
		return
	}
	held := 0
	if !c.localClosed && c.queuedCost > 0 {
		held = c.queuedCost + c.partialCost
	}
	w := l.cfg.Window
	if g := w - held - c.recvOutstanding; g > 0 && g >= max(w/4, 1) {
		c.grant += g
		c.recvOutstanding += g
		l.queueCtrlLocked(c)
	}
}

func (l *Link) notifyAcceptLocked() {
	if l.acceptSig != nil {
		close(l.acceptSig)
		l.acceptSig = nil
	}
}

// fifo is a queue; the zero value is empty.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int { return len(q.items) - q.head }

func (q *fifo[T]) push(v T) {
	if q.head > 32 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, v)
}

func (q *fifo[T]) pop() (T, bool) {
	var zero T
	if q.head == len(q.items) {
		return zero, false
	}
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		q.items = q.items[:0]
		q.head = 0
	}
	return v, true
}

// isEOF reports a clean end of the stream (not a truncated frame).
func isEOF(err error) bool { return errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) }
