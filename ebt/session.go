package ebt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/contextd/contextd/feed"
)

// Conn is a reliable, ordered message channel to one peer: what Serve
// needs of a flitlink circuit (*flitlink.Circuit satisfies it). Send blocks
// for flow-control credit; Recv returns io.EOF once the peer has closed.
type Conn interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Close() error
}

// errRemoteClosed ends a session the peer closed cleanly.
var errRemoteClosed = errors.New("ebt: peer closed the session")

// session is one Serve call: a reader that turns messages into events for
// Run, and a writer that sends what Run queued in the outbox.
type session struct {
	r        *Replicator
	peer     feed.ID
	acceptor bool
	conn     Conn
	cancel   context.CancelCauseFunc
	reply    chan error // Run's answer to evConnect
	out      outbox
	sent     atomic.Int64 // entries sent
	// named: the feeds the peer named in notes so far (the reader's;
	// at most Limits.MaxFeeds)
	named map[feed.ID]struct{}
}

// Serve runs one replication session with peer over c until it ends: the
// peer closes it (nil), ctx is done (nil), Run returns (ErrClosed), the
// peer is or becomes blocked (ErrBlocked), a newer session with the same
// peer replaces it (ErrReplaced), the peer breaks a limit (ErrAbuse,
// limits.go), or the peer breaks the protocol or the connection fails
// (that error). acceptor is true on the side that
// accepted the circuit; it sends its notes first. Serve closes c.
func (r *Replicator) Serve(ctx context.Context, c Conn, peer feed.ID, acceptor bool) error {
	defer c.Close()
	if peer == r.cfg.Self {
		return ErrSelf
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s := r.newSession(peer, acceptor, c, cancel)
	if err := r.send(ctx, sessionEvent{s: s, ev: evConnect{peer: peer, acceptor: acceptor}}); err != nil {
		return s.result(ctx, err)
	}
	select {
	case err := <-s.reply:
		if err != nil {
			return err
		}
	case <-r.done:
		return ErrClosed
	}
	var wg sync.WaitGroup
	wg.Go(func() { cancel(s.write(ctx)) })
	wg.Go(func() { cancel(s.read(ctx)) })
	<-ctx.Done()
	wg.Wait()
	// Run must learn that the session ended even if ctx is done.
	select {
	case r.events <- sessionEvent{s: s, ev: evDisconnect{peer: peer}}:
	case <-r.done:
	}
	return s.result(ctx, context.Cause(ctx))
}

// newSession returns a session with peer over c whose outbox holds the
// HELLO; cancel ends it.
func (r *Replicator) newSession(peer feed.ID, acceptor bool, c Conn, cancel context.CancelCauseFunc) *session {
	s := &session{
		r:        r,
		peer:     peer,
		acceptor: acceptor,
		conn:     c,
		cancel:   cancel,
		reply:    make(chan error, 1),
	}
	s.out.init(r.st)
	s.out.sigs = r.sigs
	s.out.m = r.cfg.Metrics
	s.out.hello = true
	return s
}

// result maps why a session ended to what Serve returns.
func (s *session) result(ctx context.Context, cause error) error {
	switch {
	case errors.Is(cause, errRemoteClosed), errors.Is(cause, context.Canceled), errors.Is(cause, context.DeadlineExceeded):
		return nil
	}
	return cause
}

// read receives messages until the session ends.
func (s *session) read(ctx context.Context) error {
	first := true
	for {
		b, err := s.conn.Recv(ctx)
		if errors.Is(err, io.EOF) {
			return errRemoteClosed
		} else if err != nil {
			return fmt.Errorf("ebt: receive from %s: %w", s.peer.Short(), err)
		}
		m, err := decodeMessage(b)
		if err != nil {
			return err
		}
		if first != (m.typ == msgHello) {
			return fmt.Errorf("%w: HELLO must come first and once (got type %d)", ErrProtocol, m.typ)
		}
		first = false
		if err := s.admit(ctx, m); err != nil {
			return err
		}
		if ev := s.event(m); ev != nil {
			if err := s.r.send(ctx, sessionEvent{s: s, ev: ev}); err != nil {
				return err
			}
		}
	}
}

// event turns a received message into the event for Run, or nil (HELLO,
// unknown types).
func (s *session) event(m message) any {
	switch m.typ {
	case msgHello:
		s.r.log.Debug("ebt: hello", "peer", s.peer, "capability", m.capability)
		return nil
	case msgNotes:
		clock := make(map[feed.ID]int64, len(m.notes))
		for _, n := range m.notes {
			if s.r.inScope(n.Feed) { // a peer makes us store no clock of other feeds (limits.go)
				clock[n.Feed] = int64(n.Note)
			}
		}
		if err := s.r.st.SetPeerClock(s.peer, clock); err != nil {
			s.r.log.Warn("ebt: save peer clock", "peer", s.peer, "err", err)
		}
		s.r.cfg.Metrics.add(cNotesReceived, len(m.notes))
		return evNotes{peer: s.peer, notes: m.notes}
	case msgEntries:
		s.r.cfg.Metrics.add(cReceived, len(m.entries))
		es, errs := feed.DecodeAll(m.entries)
		if len(errs) > 0 {
			s.r.log.Debug("ebt: malformed entries", "peer", s.peer, "count", len(errs), "first", errs[0])
		}
		// Verify here, on the session's goroutine, not on Run's.
		return evEntries{peer: s.peer, runs: s.r.verify.verify(es), malformed: len(errs)}
	}
	s.r.log.Debug("ebt: ignoring unknown message type", "peer", s.peer, "type", m.typ)
	return nil
}

// write sends what the outbox holds until the session ends.
func (s *session) write(ctx context.Context) error {
	for {
		msg, n, err := s.out.next()
		if err != nil {
			return err
		}
		if msg == nil {
			select {
			case <-s.out.wake:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		if err := s.conn.Send(ctx, msg); err != nil {
			return fmt.Errorf("ebt: send to %s: %w", s.peer.Short(), err)
		}
		s.sent.Add(int64(n))
		s.r.cfg.Metrics.add(cSent, n)
	}
}

// outbox is what Run queued for one session: the HELLO, notes (merged per
// feed, latest wins) and ranges of entries to push per feed. Run never
// blocks on it; the writer drains it, notes first, then one ENTRIES message
// per feed in turn. Its size is bounded by the scope: one note and one
// range per feed.
type outbox struct {
	st   Store
	sigs *sigCache     // entries known to be validly signed
	wake chan struct{} // capacity 1: something was queued
	m    *Metrics      // counts the notes sent (nil: none)

	mu     sync.Mutex // guards the fields below
	hello  bool
	flush  bool // send a NOTES message even if notes is empty
	notes  map[feed.ID]Note
	ranges map[feed.ID]*span
	order  []feed.ID // feeds with a range, in turn
}

// span is a range of seqs of one feed still to send.
type span struct{ from, to uint64 }

func (o *outbox) init(st Store) {
	o.st = st
	o.sigs = newSigCache()
	o.wake = make(chan struct{}, 1)
	o.notes = map[feed.ID]Note{}
	o.ranges = map[feed.ID]*span{}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// addNotes queues notes; an empty call still causes a NOTES message.
func (o *outbox) addNotes(ns []feedNote) {
	o.mu.Lock()
	if len(ns) == 0 {
		o.flush = true
	}
	for _, n := range ns {
		o.notes[n.Feed] = n.Note
	}
	o.mu.Unlock()
	o.signal()
}

// queue adds entries from..to of f.
func (o *outbox) queue(f feed.ID, from, to uint64) {
	o.mu.Lock()
	switch sp := o.ranges[f]; {
	case sp == nil:
		o.ranges[f] = &span{from: from, to: to}
		o.order = append(o.order, f)
	case from >= sp.from && from <= sp.to+1:
		sp.to = max(sp.to, to)
	default:
		// A new span object: a read in flight of the old one does not
		// advance it.
		o.ranges[f] = &span{from: min(from, sp.from), to: max(to, sp.to)}
	}
	o.mu.Unlock()
	o.signal()
}

// cancel drops what is queued of f.
func (o *outbox) cancel(f feed.ID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dropLocked(f)
}

func (o *outbox) dropLocked(f feed.ID) {
	if _, ok := o.ranges[f]; ok {
		delete(o.ranges, f)
		o.order = slices.DeleteFunc(o.order, func(g feed.ID) bool { return g == f })
	}
}

// next returns the next message to send and how many entries it carries,
// or nil when nothing is queued.
func (o *outbox) next() ([]byte, int, error) {
	for {
		msg, n, more, err := o.try()
		if msg != nil || !more || err != nil {
			return msg, n, err
		}
	}
}

// try builds one message; more reports that something may still be queued
// when it built none.
func (o *outbox) try() (msg []byte, n int, more bool, err error) {
	o.mu.Lock()
	if o.hello {
		o.hello = false
		o.mu.Unlock()
		return appendHello(nil, Capability), 0, true, nil
	}
	if len(o.notes) > 0 || o.flush {
		ids := slices.SortedFunc(maps.Keys(o.notes), feed.ID.Compare)
		ids = ids[:min(len(ids), MaxNotes)]
		ns := make([]feedNote, len(ids))
		for i, f := range ids {
			ns[i] = feedNote{Feed: f, Note: o.notes[f]}
			delete(o.notes, f)
		}
		o.flush = false
		o.mu.Unlock()
		o.m.add(cNotesSent, len(ns))
		return appendNotes(nil, ns), 0, true, nil
	}
	if len(o.order) == 0 {
		o.mu.Unlock()
		return nil, 0, false, nil
	}
	f := o.order[0]
	o.order = append(o.order[1:], f)
	sp := o.ranges[f]
	from, to := sp.from, sp.to
	o.mu.Unlock()

	// A frame adds at most 3 bytes of length prefix to an encoding.
	limit := int(min(to-from+1, MaxEntriesPerMsg))
	enc, err := o.st.RangeEncoded(f, from, limit, MaxMessageSize-entriesHeaderSize-3*limit)
	if pruned(err) {
		// The store pruned them since they were queued: nothing to send
		// (below, the range is dropped); the peer finds another source.
		enc, err = nil, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("ebt: read entries of %s: %w", f.Short(), err)
	}
	// The peer checks the signature of the message's last entry only
	// (feed.VerifyRun): end the message with an entry whose own signature
	// is valid.
	enc = enc[:signedEnd(f, o.sigs, enc)]
	last := from - 1 + uint64(len(enc))

	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ranges[f] == sp && sp.from == from {
		if len(enc) == 0 {
			// The store lacks what was queued, or what it holds ends
			// with unsigned entries (verify.go); do not spin on it.
			o.dropLocked(f)
		} else if sp.from = last + 1; sp.from > sp.to {
			o.dropLocked(f)
		}
	}
	if len(enc) == 0 {
		return nil, 0, true, nil
	}
	size := entriesHeaderSize
	for _, b := range enc {
		size += entryFrameSize(len(b))
	}
	return appendEntries(make([]byte, 0, size), enc), len(enc), true, nil
}
