package live

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// This file is the sessions of live/1: Serve is the side that holds the
// stream and pushes it; Dial and Upstream.Run are the side that joins. The
// flow is specified in docs/protocols/swarm.md, "Live streams (live/1)".

// Conn is a reliable, ordered message channel to one peer: what a session
// needs of a flitlink circuit (*flitlink.Circuit satisfies it). Send blocks
// for flow-control credit and keeps no reference to msg once it returns;
// Recv returns io.EOF once the peer has closed.
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

// Timing of a session.
const (
	// KeepaliveInterval is the longest a serving side stays silent while
	// its stream is fed: it sends KEEPALIVE when no munro went for that
	// long.
	KeepaliveInterval = 500 * time.Millisecond
	// DefaultSilence is how long a joining side waits for a message
	// before it gives its upstream up (ErrSilent).
	DefaultSilence = 2 * time.Second
	// HandshakeTimeout bounds the wait for the peer's HANDSHAKE.
	HandshakeTimeout = 10 * time.Second
)

// Session errors callers branch on with errors.Is.
var (
	// ErrProtocol reports a peer that broke the live/1 message flow (a
	// message out of turn, a munro out of order, a handshake for another
	// stream). Like ErrMalformed and ErrBadMunro, the peer is dropped.
	ErrProtocol = errors.New("live: protocol violation")
	// ErrSilent reports an upstream that sent nothing for the silence
	// timeout: the joining side goes to another.
	ErrSilent = errors.New("live: upstream silent")
	// ErrSlow reports a downstream peer that fell behind the window: the
	// serving side ends the session rather than hold more for it.
	ErrSlow = errors.New("live: downstream fell behind the window")
)

// Abusive reports whether a session that ended with err was ended by the
// peer's misbehaviour (a malformed or out-of-turn message, a munro or END
// that does not verify): the caller drops the peer.
func Abusive(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrBadMunro)
}

// recv reads and decodes the next message, within d unless d is 0,
// counting its bytes.
func recv(ctx context.Context, c Conn, k int, d time.Duration, m *Metrics) (Message, error) {
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	b, err := c.Recv(ctx)
	if err != nil {
		return nil, err
	}
	m.received(len(b))
	return Decode(b, k)
}

// send encodes msg into buf and sends it, counting its bytes; it returns
// the buffer for reuse.
func send(ctx context.Context, c Conn, buf []byte, msg Message, m *Metrics) ([]byte, error) {
	buf = msg.Append(buf[:0])
	if err := c.Send(ctx, buf); err != nil {
		return buf, err
	}
	m.sent(len(buf))
	return buf, nil
}

// ReadHandshake reads the joining peer's HANDSHAKE, the first message of a
// live/1 circuit: it names the stream the peer wants.
func ReadHandshake(ctx context.Context, c Conn, m *Metrics) (Handshake, error) {
	msg, err := recv(ctx, c, -1, HandshakeTimeout, m)
	if err != nil {
		return Handshake{}, fmt.Errorf("live: read handshake: %w", err)
	}
	h, ok := msg.(Handshake)
	if !ok {
		return Handshake{}, fmt.Errorf("%w: %v before HANDSHAKE", ErrProtocol, msg.Type())
	}
	return h, nil
}

// Serve pushes stream s to the peer whose HANDSHAKE h was read from c: it
// answers with its own HANDSHAKE, waits for START, then sends every munro
// from START's position (the oldest held if that is gone, the newest for
// LiveEdge), a KEEPALIVE whenever it sent nothing for KeepaliveInterval
// while s is fed, and END after the last. It returns nil when END was sent,
// the peer closed the circuit or ctx ended; ErrSlow if the peer fell behind
// the window; an error wrapping ErrMalformed or ErrProtocol if the peer
// broke the protocol. It does not close c.
func Serve(ctx context.Context, c Conn, h Handshake, s *Stream, m *Metrics) error {
	if h.Stream != s.ID() {
		return fmt.Errorf("%w: handshake for stream %s on a session of %s", ErrProtocol, h.Stream.Short(), s.ID().Short())
	}
	k := s.MunroLog()
	buf, err := send(ctx, c, nil, Handshake{Capability: Capability, Stream: s.ID(), MunroLog: k, Hops: s.Hops()}, m)
	if err != nil {
		return fmt.Errorf("live: send handshake: %w", err)
	}
	var start Start
	for {
		msg, err := recv(ctx, c, k, 0, m)
		switch {
		case errors.Is(err, io.EOF) || ctx.Err() != nil:
			return nil // a backup given up, or the node closing
		case err != nil:
			return fmt.Errorf("live: wait for START: %w", err)
		}
		if st, ok := msg.(Start); ok {
			start = st
			break
		} else if _, ok := msg.(Unknown); !ok {
			return fmt.Errorf("%w: %v before START", ErrProtocol, msg.Type())
		}
	}
	m.session()
	ctx, cancel := context.WithCancelCause(ctx)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		cancel(drain(ctx, c, k, m))
	}()
	defer func() {
		cancel(nil)
		<-drained
	}()
	// ended is what Serve returns once ctx ended: the peer's protocol
	// error if drain found one, else nil (the peer left, or the node is
	// closing).
	ended := func() error {
		if err := context.Cause(ctx); Abusive(err) {
			return err
		}
		return nil
	}

	pos := start.From
	if pos != LiveEdge {
		pos >>= k
	}
	first := true
	idle := time.NewTimer(KeepaliveInterval)
	defer idle.Stop()
	for {
		h, end, lost, changed := s.get(pos)
		var msg Message
		switch {
		case h != nil && lost && !first:
			return fmt.Errorf("live: serve munro %d: %w", pos, ErrSlow)
		case h != nil:
			msg, pos, first = h.Munro, h.Index+1, false
		case end != nil:
			msg = *end
		default:
			select {
			case <-changed:
				continue
			case <-idle.C:
				if !s.alive() {
					idle.Reset(KeepaliveInterval)
					continue
				}
				msg = Keepalive{}
			case <-ctx.Done():
				return ended()
			}
		}
		if buf, err = send(ctx, c, buf, msg, m); err != nil {
			if ctx.Err() != nil {
				return ended()
			}
			return fmt.Errorf("live: send %v: %w", msg.Type(), err)
		}
		if msg.Type() == TypeEnd {
			return nil
		}
		idle.Reset(KeepaliveInterval)
	}
}

// drain reads what a joined peer sends after START (nothing but unknown
// messages), until it closes the circuit (io.EOF) or ctx ends.
func drain(ctx context.Context, c Conn, k int, m *Metrics) error {
	for {
		msg, err := recv(ctx, c, k, 0, m)
		if err != nil {
			return err
		}
		if _, ok := msg.(Unknown); !ok {
			return fmt.Errorf("%w: %v after START", ErrProtocol, msg.Type())
		}
	}
}

// Upstream is a peer that answered a join: it holds the stream and states
// its distance to the publisher. Nothing flows until Run.
type Upstream struct {
	c    Conn
	s    *Stream
	k    int // the munro log the peer stated
	hops int
	m    *Metrics
}

// Dial joins stream s over c: it sends HANDSHAKE with the node's hops and
// reads the peer's, which must be about the same stream.
func Dial(ctx context.Context, c Conn, s *Stream, m *Metrics) (*Upstream, error) {
	if _, err := send(ctx, c, nil, Handshake{Capability: Capability, Stream: s.ID(), MunroLog: s.MunroLog(), Hops: s.Hops()}, m); err != nil {
		return nil, fmt.Errorf("live: send handshake: %w", err)
	}
	msg, err := recv(ctx, c, -1, HandshakeTimeout, m)
	if err != nil {
		return nil, fmt.Errorf("live: read handshake: %w", err)
	}
	h, ok := msg.(Handshake)
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %v before HANDSHAKE", ErrProtocol, msg.Type())
	case h.Stream != s.ID():
		return nil, fmt.Errorf("%w: peer serves stream %s, asked for %s", ErrProtocol, h.Stream.Short(), s.ID().Short())
	}
	return &Upstream{c: c, s: s, k: h.MunroLog, hops: h.Hops, m: m}, nil
}

// Hops returns the peer's distance to the publisher, as it stated it.
func (u *Upstream) Hops() int { return u.hops }

// Close closes the session's circuit.
func (u *Upstream) Close() error { return u.c.Close() }

// Adopt makes the munro size the peer stated the stream's, unless the
// stream's is sure already (the publisher's, or a munro or END verified)
// and differs: that is ErrProtocol. A relay adopts before it answers
// joins of its own, so that it states its upstream's size; Run adopts too.
func (u *Upstream) Adopt() error {
	if !u.s.useMunroLog(u.k) {
		return fmt.Errorf("%w: peer's munros are 2^%d chunks, the stream's 2^%d", ErrProtocol, u.k, u.s.MunroLog())
	}
	return nil
}

// Run asks the peer to push the stream from chunk from (LiveEdge: its
// newest munro) and puts every munro it sends in the stream once it
// verified (with the munro size the peer stated, which must be the
// stream's once a munro verified): the signature, the root recomputed from the chunks, the order
// (each munro newer than the last). It returns nil after a verified END;
// ErrSilent if the peer sent nothing for silence (0: DefaultSilence); an
// error wrapping ErrBadMunro, ErrMalformed or ErrProtocol if the peer sent
// something wrong, of which nothing was kept; or the circuit's error.
func (u *Upstream) Run(ctx context.Context, from uint64, silence time.Duration) error {
	if silence <= 0 {
		silence = DefaultSilence
	}
	s, k := u.s, u.k
	if err := u.Adopt(); err != nil {
		return err
	}
	if _, err := send(ctx, u.c, nil, Start{From: from}, u.m); err != nil {
		return fmt.Errorf("live: send START: %w", err)
	}
	u.m.session()
	var last uint64
	started := false
	for {
		msg, err := recv(ctx, u.c, k, silence, u.m)
		switch {
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			return fmt.Errorf("live: nothing for %v: %w", silence, ErrSilent)
		case err != nil:
			return fmt.Errorf("live: receive: %w", err)
		}
		switch msg := msg.(type) {
		case Munro:
			if started && msg.Index <= last {
				u.m.rejected()
				return fmt.Errorf("%w: munro %d after %d", ErrProtocol, msg.Index, last)
			}
			if err := msg.Verify(s.ID(), k); err != nil {
				u.m.rejected()
				return err
			}
			u.m.verified()
			last, started = msg.Index, true
			s.Add(msg)
			s.Heard()
		case Keepalive:
			s.Heard()
		case End:
			if err := msg.Verify(s.ID()); err != nil {
				u.m.rejected()
				return err
			}
			s.Finish(msg)
			return nil
		case Unknown:
		default:
			return fmt.Errorf("%w: %v after START", ErrProtocol, msg.Type())
		}
	}
}
