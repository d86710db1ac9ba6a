package flitlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contextd/contextd/feed"
)

// headerTimeout bounds how long an incoming circuit stream may take to
// deliver its header; a stream that does not is reset (not a violation:
// its packets may be lost).
const headerTimeout = 10 * time.Second

// Link is one flit link to a peer over a Session. It runs three goroutines
// (the control stream's reader, its writer of hello and keepalives, and the
// acceptor of incoming streams) until the session fails or Close is
// called. All methods are safe for concurrent use.
type Link struct {
	sess      Session
	ctrl      Stream
	remote    feed.ID
	initiator bool
	cfg       Config
	log       *slog.Logger
	pacer     *bulkPacer // nil: bulk is unmanaged
	start     time.Time

	ctx      context.Context // ends when the link dies
	cancel   context.CancelFunc
	done     chan struct{} // closed when the link is dead (err is set)
	helloCh  chan struct{} // closed when the peer's hello has been read
	wg       sync.WaitGroup
	lastRecv atomic.Int64 // time.Since(start) when bytes last arrived on any stream

	// mu guards the fields below. No blocking call (I/O, channel wait)
	// is made while holding it.
	mu         sync.Mutex
	err        error  // why the link died; nil while alive
	sendMax    int    // min(own, peer's) max message size
	capability uint16 // min(own, peer's) capability
	nextID     uint32
	circuits   map[*Circuit]struct{} // not yet closed: reset when the link dies
	localOpen  int                   // circuits this side opened, not yet closed
	remoteOpen int                   // circuits the peer opened, not yet closed
	incoming   map[Stream]struct{}   // incoming streams whose header is being read: reset when the link dies
	answering  int                   // accepted circuits being answered: each holds a backlog place
	backlog    fifo[*Circuit]
	acceptSig  chan struct{} // closed (and cleared) when Accept may progress
}

// NewLink starts a link over sess, which it owns from now on: the session
// is closed when the link dies. remote is the peer's identity as
// authenticated by the transport; initiator is true on the side that opened
// the session (and its control stream).
func NewLink(sess Session, remote feed.ID, initiator bool, cfg Config) *Link {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		sess:      sess,
		ctrl:      sess.Control(),
		remote:    remote,
		initiator: initiator,
		cfg:       cfg,
		log:       cfg.Logger.With("remote", remote.Short()),
		start:     time.Now(),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		helloCh:   make(chan struct{}),
		circuits:  make(map[*Circuit]struct{}),
		incoming:  make(map[Stream]struct{}),
	}
	rtt, _ := sess.(RTTSampler) // nil: no pacer
	l.pacer = newBulkPacer(cfg, rtt)
	l.wg.Add(3)
	go l.readControl()
	go l.keepAlive()
	go l.acceptStreams()
	return l
}

// Remote returns the peer's identity.
func (l *Link) Remote() feed.ID { return l.remote }

// Initiator reports whether this side initiated the link.
func (l *Link) Initiator() bool { return l.initiator }

// Done returns a channel closed when the link is dead.
func (l *Link) Done() <-chan struct{} { return l.done }

// RTT reports the path's round-trip times as the transport measured them
// (the latest sample and the minimum); ok is false when the transport
// does not measure them (memlink) or has no sample yet.
func (l *Link) RTT() (latest, min time.Duration, ok bool) {
	if r, is := l.sess.(RTTSampler); is {
		return r.RTT()
	}
	return 0, 0, false
}

// Err returns why the link died (wrapping ErrLinkClosed), or nil while it
// is alive.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close kills the link: the session and every circuit's stream are reset,
// every circuit fails with ErrLinkClosed, and Close waits for the link's
// goroutines. Bytes not yet delivered are lost; to deliver everything,
// close the circuits and wait for the peer's end of each first. Close is
// idempotent and returns nil.
func (l *Link) Close() error {
	l.fail(errLocalClose)
	l.wg.Wait()
	return nil
}

// Open opens a circuit to the peer for service with the given class: a new
// stream, whose header the peer answers. It waits for the peer's hello and
// its answer; a refusal is a *RefusedError (errors.Is(err, ErrRefused)).
func (l *Link) Open(ctx context.Context, service string, class Class) (*Circuit, error) {
	if !validService(service) || class >= numClasses {
		return nil, fmt.Errorf("%w: %q, class %v", ErrBadService, service, class)
	}
	if err := l.waitHello(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	switch {
	case l.err != nil:
		l.mu.Unlock()
		return nil, l.Err()
	case l.localOpen >= MaxCircuits:
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %d open", ErrTooManyCircuits, MaxCircuits)
	}
	l.localOpen++
	l.mu.Unlock()

	st, err := l.sess.OpenStream(ctx)
	if err != nil {
		l.mu.Lock()
		l.localOpen--
		l.mu.Unlock()
		if lerr := l.Err(); lerr != nil {
			return nil, lerr
		}
		return nil, fmt.Errorf("flitlink: open %q: %w", service, err)
	}
	c, ok := l.addCircuit(st, service, class, true)
	if !ok {
		return nil, l.Err()
	}
	reply, err := c.handshake(ctx)
	if err != nil {
		c.abort()
		return nil, err
	}
	if reply != replyAccept {
		c.abort()
		return nil, &RefusedError{Service: service, Reason: RefuseReason(reply)}
	}
	return c, nil
}

// waitHello waits for the peer's hello.
func (l *Link) waitHello(ctx context.Context) error {
	select {
	case <-l.helloCh:
		return nil
	case <-l.done:
		return l.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept returns the next circuit the peer opened. Circuits are accepted on
// the wire as soon as their header arrives (up to Config.AcceptBacklog
// waiting for Accept), so the peer may already have sent data on them.
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
		if l.acceptSig == nil {
			l.acceptSig = make(chan struct{})
		}
		sig := l.acceptSig
		l.mu.Unlock()
		select {
		case <-sig:
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// addCircuit registers a circuit over st; false (st reset) if the link is
// dead. The caller has counted it in localOpen or remoteOpen.
func (l *Link) addCircuit(st Stream, service string, class Class, local bool) (*Circuit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		_ = st.Reset()
		return nil, false
	}
	l.nextID++
	c := newCircuit(l, st, l.nextID, service, class, local)
	l.circuits[c] = struct{}{}
	return c, true
}

// forget unregisters c once; it no longer counts against MaxCircuits.
func (l *Link) forget(c *Circuit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.circuits[c]; !ok {
		return
	}
	delete(l.circuits, c)
	if c.local {
		l.localOpen--
	} else {
		l.remoteOpen--
	}
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
	streams := make([]Stream, 0, len(l.circuits)+len(l.incoming))
	for c := range l.circuits {
		streams = append(streams, c.st)
	}
	for st := range l.incoming {
		streams = append(streams, st)
	}
	l.mu.Unlock()
	l.cancel()
	if l.pacer != nil {
		l.pacer.close()
	}
	for _, st := range streams {
		_ = st.Reset() // the cause is what matters; a reset error adds nothing
	}
	_ = l.sess.Close()
	l.log.Debug("flitlink: link closed", "cause", cause)
}

// touch records that bytes arrived from the peer.
func (l *Link) touch() { l.lastRecv.Store(int64(time.Since(l.start))) }

// keepAlive is the control stream's writer: it sends the hello, then a
// keepalive every Config.KeepAlive, and fails the link when nothing has
// arrived for Config.DeadAfter.
func (l *Link) keepAlive() {
	defer l.wg.Done()
	msg := appendMessage(nil, appendHello(nil, hello{version: Version, capability: Capability, maxMessage: uint32(l.cfg.MaxMessageSize)}))
	if _, err := l.ctrl.Write(msg); err != nil {
		l.fail(fmt.Errorf("write hello: %w", err))
		return
	}
	ka := appendMessage(nil, []byte{ctlKeepAlive})
	next := l.cfg.KeepAlive // since start
	t := time.NewTimer(next)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		now := time.Since(l.start)
		if silent := now - time.Duration(l.lastRecv.Load()); silent >= l.cfg.DeadAfter {
			l.fail(fmt.Errorf("%w: nothing for %v", ErrTimeout, silent.Round(time.Millisecond)))
			return
		}
		if now >= next {
			if _, err := l.ctrl.Write(ka); err != nil {
				l.fail(fmt.Errorf("write keepalive: %w", err))
				return
			}
			next = now + l.cfg.KeepAlive
		}
		dead := time.Duration(l.lastRecv.Load()) + l.cfg.DeadAfter
		t.Reset(min(next, dead) - now)
	}
}

// readControl is the control stream's reader: the peer's hello, then
// keepalives. It kills the link when the stream ends or breaks the
// protocol.
func (l *Link) readControl() {
	defer l.wg.Done()
	var buf [MaxControlSize]byte
	greeted := false
	for {
		p, err := l.readControlMessage(&buf)
		if err == nil {
			err = l.handleControl(p, &greeted) // an empty p is a violation
		}
		if err != nil {
			switch {
			case errors.Is(err, ErrProtocol):
			case isEOF(err):
				err = errPeerClosed
			default:
				err = fmt.Errorf("read control stream: %w", err)
			}
			l.fail(err)
			return
		}
	}
}

// readControlMessage reads the next control message into buf, its length
// checked first. A stream that ends inside a message fails with
// io.ErrUnexpectedEOF, one that ends between messages with io.EOF.
func (l *Link) readControlMessage(buf *[MaxControlSize]byte) ([]byte, error) {
	var lb [LengthSize]byte
	if _, err := io.ReadFull(l.ctrl, lb[:]); err != nil {
		return nil, err
	}
	l.touch()
	n, err := parseLength(&lb, MaxControlSize)
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(l.ctrl, buf[:n]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l.touch()
	return buf[:n], nil
}

// handleControl processes one control message.
func (l *Link) handleControl(p []byte, greeted *bool) error {
	typ, h, err := parseControl(p)
	switch {
	case err != nil:
		return err
	case typ == ctlHello && *greeted:
		return fmt.Errorf("%w: second hello", ErrProtocol)
	case typ != ctlHello && !*greeted:
		return fmt.Errorf("%w: control type %d before hello", ErrProtocol, typ)
	case typ != ctlHello:
		return nil // a keepalive, or a type from a later capability: skipped
	}
	*greeted = true
	l.mu.Lock()
	l.sendMax = min(l.cfg.MaxMessageSize, int(h.maxMessage))
	l.capability = min(Capability, h.capability)
	l.mu.Unlock()
	close(l.helloCh)
	l.log.Debug("flitlink: hello", "capability", l.capability, "max_message", l.sendMax)
	return nil
}

// acceptStreams takes the streams the peer opens and answers each (on its
// own goroutine, at most AcceptBacklog at once).
func (l *Link) acceptStreams() {
	defer l.wg.Done()
	for {
		st, err := l.sess.AcceptStream(l.ctx)
		if err != nil {
			l.fail(fmt.Errorf("accept stream: %w", err))
			return
		}
		l.mu.Lock()
		switch {
		case l.err != nil:
			l.mu.Unlock()
			_ = st.Reset()
			return
		case len(l.incoming) >= l.cfg.AcceptBacklog:
			l.mu.Unlock()
			_ = st.Reset() // too many headers outstanding: the opener sees a reset
			continue
		}
		l.incoming[st] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.acceptCircuit(st)
	}
}

// acceptCircuit reads an incoming stream's header and queues the circuit
// for Accept, or refuses it.
func (l *Link) acceptCircuit(st Stream) {
	defer l.wg.Done()
	service, class, err := readHeader(st)
	if err == nil {
		l.touch()
		err = l.waitHello(l.ctx)
	}
	l.mu.Lock()
	delete(l.incoming, st)
	var reason RefuseReason
	switch {
	case err != nil:
	case l.err != nil:
		err = l.err
	case l.remoteOpen >= MaxCircuits:
		reason = RefuseTooMany
	case l.backlog.len()+l.answering >= l.cfg.AcceptBacklog:
		reason = RefuseBacklogFull
	default:
		l.remoteOpen++
		l.answering++
	}
	l.mu.Unlock()
	switch {
	case errors.Is(err, ErrProtocol):
		_ = st.Reset()
		l.fail(err)
		return
	case err != nil:
		_ = st.Reset()
		return
	case reason != 0:
		l.log.Debug("flitlink: refused circuit", "service", service, "reason", reason)
		_, _ = st.Write([]byte{byte(reason)}) // the opener resets the stream when it reads it
		_ = st.CloseWrite()
		return
	}
	_, werr := st.Write([]byte{replyAccept})
	c, ok := l.addCircuit(st, service, class, false)
	if ok && werr != nil {
		c.abort()
		ok = false
	}
	// The circuit leaves answering and enters the backlog at once, so
	// that the two together never undercount it.
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answering--
	if !ok {
		return
	}
	l.backlog.push(c)
	if l.acceptSig != nil {
		close(l.acceptSig)
		l.acceptSig = nil
	}
}

// readHeader reads a circuit header within headerTimeout.
func readHeader(st Stream) (string, Class, error) {
	if err := st.SetReadDeadline(time.Now().Add(headerTimeout)); err != nil {
		return "", 0, err
	}
	service, class, err := readCircuitHeader(st)
	if err != nil {
		return "", 0, err
	}
	return service, class, st.SetReadDeadline(time.Time{})
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

// isEOF reports a clean end of a stream (not a truncated message).
func isEOF(err error) bool { return errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) }
