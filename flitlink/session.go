package flitlink

import (
	"context"
	"io"
	"sync"
	"time"
)

// Stream is one reliable, ordered, full-duplex byte stream of a Session:
// the link's control stream or one circuit. A libp2p network.Stream
// satisfies it. Read and Write may be called concurrently with each other;
// deadlines interrupt blocked calls with an error.
type Stream interface {
	io.Reader
	io.Writer
	// CloseWrite ends the stream in this direction: the peer reads what
	// was written, then io.EOF.
	CloseWrite() error
	// Reset aborts both directions: blocked and later calls on both ends
	// fail and bytes not yet delivered are lost.
	Reset() error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Session is the transport under one link: independent streams to one
// peer, so that a stream whose bytes are held back (a lost packet) holds
// back no other. The transport adapters (flitlink/p2plink,
// flitlink/memlink) implement it.
type Session interface {
	// Control returns the link's control stream, opened with the session
	// by the link's initiator.
	Control() Stream
	// OpenStream opens a new stream to the peer, whose AcceptStream
	// returns it.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream returns the next stream the peer opened.
	AcceptStream(ctx context.Context) (Stream, error)
	// Close ends the session: the control stream is reset and OpenStream
	// and AcceptStream fail from now on. Streams already returned are the
	// link's to reset. Close is idempotent.
	Close() error
}

// RTTSampler is implemented by sessions that can report the path's
// round-trip times (p2plink: quic-go's connection statistics). The bulk
// controller uses it; ok is false while there is no sample yet.
type RTTSampler interface {
	RTT() (latest, min time.Duration, ok bool)
}

// longAgo is a deadline in the past: it interrupts a blocked call at once.
var longAgo = time.Unix(1, 0)

// deadliner lets a context or Close interrupt the blocking calls of one
// direction of a stream by moving that direction's deadline into the past.
// One call is in progress at a time (the circuit's Send or Recv
// semaphore); a deadline it trips is cleared when the call ends, unless
// the direction was closed.
type deadliner struct {
	set func(time.Time) error

	stop func() bool // of the current call's context.AfterFunc, if any

	mu      sync.Mutex // guards the fields below
	call    uint64     // numbers the calls: a late AfterFunc of an earlier one trips nothing
	active  bool       // a call is in progress
	tripped bool       // its deadline was moved into the past
	closed  bool       // every call from now on is refused
}

// begin starts a call that ctx may interrupt; false if the direction is
// closed.
func (d *deadliner) begin(ctx context.Context) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	d.active = true
	d.call++
	call := d.call
	d.mu.Unlock()
	if ctx.Done() != nil {
		// stop in end does not wait for a trip already started: the
		// call number keeps it from tripping a later call.
		d.stop = context.AfterFunc(ctx, func() { d.trip(call) })
	}
	return true
}

// end finishes the call and reports whether it was interrupted.
func (d *deadliner) end() (tripped bool) {
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.active = false
	tripped, d.tripped = d.tripped, false
	if tripped && !d.closed {
		_ = d.set(time.Time{}) // a stream that cannot clear it fails the next call instead
	}
	return tripped
}

// trip interrupts call if it is still in progress.
func (d *deadliner) trip(call uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if call == d.call {
		d.tripLocked()
	}
}

func (d *deadliner) tripLocked() {
	if d.active && !d.tripped {
		d.tripped = true
		_ = d.set(longAgo)
	}
}

// close interrupts the call in progress and refuses later ones.
func (d *deadliner) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.tripLocked()
}
