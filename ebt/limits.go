package ebt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// ErrAbuse ends the session of a peer that broke a per-peer limit
// (Limits): it named more feeds than MaxFeeds, or kept sending entries that
// were invalid or not asked for. The node drops such a peer for a
// cool-down.
var ErrAbuse = errors.New("ebt: peer broke a limit")

// Defaults of Limits.
const (
	// DefaultNotesPerSec is how many notes a second a peer may send once
	// its first MaxFeeds (the burst: a whole scope at once) are spent.
	DefaultNotesPerSec = 10_000
	// DefaultEntriesPerSec is how many entries a second a peer may send
	// once its burst (entriesBurst seconds' worth) is spent.
	DefaultEntriesPerSec = 100_000
	// DefaultMaxFeeds bounds the distinct feeds a peer may name in the
	// notes of one session.
	DefaultMaxFeeds = 1 << 18

	entriesBurst = 10 // seconds of DefaultEntriesPerSec a peer may send at once
)

// Limits bounds what one peer may make this node do over ebt/1; they are
// checked before the work is done. A peer over a rate is slowed: its
// session's reader waits before it handles the message, and flitlink's
// flow control makes the peer wait too. A peer naming more than MaxFeeds feeds,
// or past its strikes, is dropped: its session ends with ErrAbuse. Zero
// fields mean the defaults; a negative rate means no limit.
type Limits struct {
	NotesPerSec   float64 // notes a second; burst MaxFeeds
	EntriesPerSec float64 // entries a second; burst 10 s worth
	MaxFeeds      int     // distinct feeds named in one session's notes
	// Policy counts offences: a message with invalid or malformed entries
	// and one with entries of feeds not asked for (out of scope, frozen,
	// full) are one strike each (zero fields: limit.DefaultPolicy).
	Policy limit.Policy
}

func (l *Limits) fill() {
	if l.NotesPerSec == 0 {
		l.NotesPerSec = DefaultNotesPerSec
	}
	if l.EntriesPerSec == 0 {
		l.EntriesPerSec = DefaultEntriesPerSec
	}
	if l.MaxFeeds <= 0 {
		l.MaxFeeds = DefaultMaxFeeds
	}
	l.Policy = l.Policy.OrDefault()
}

// Kinds of a Replicator's limit.Guard.
const (
	kindNotes = iota
	kindEntries
)

// newGuard returns the per-peer buckets of l's rates.
func newGuard(l Limits) *limit.Guard[feed.ID] {
	return limit.NewGuard[feed.ID](l.Policy,
		limit.Rate{PerSec: l.NotesPerSec, Burst: float64(l.MaxFeeds)},
		limit.Rate{PerSec: l.EntriesPerSec, Burst: entriesBurst * l.EntriesPerSec},
	)
}

// admit applies the limits to message m before the session handles it:
// it ends the session (ErrAbuse) when m names a feed beyond MaxFeeds, and
// waits while the peer is over its rate of notes or entries.
func (s *session) admit(ctx context.Context, m message) error {
	lim := s.r.cfg.Limits
	var kind, n int
	switch m.typ {
	case msgNotes:
		if s.named == nil {
			s.named = map[feed.ID]struct{}{}
		}
		for _, fn := range m.notes {
			if _, ok := s.named[fn.Feed]; ok {
				continue
			}
			if len(s.named) >= lim.MaxFeeds {
				return fmt.Errorf("%w: notes name more than %d feeds", ErrAbuse, lim.MaxFeeds)
			}
			s.named[fn.Feed] = struct{}{}
		}
		kind, n = kindNotes, len(m.notes)
	case msgEntries:
		kind, n = kindEntries, len(m.entries)
	default:
		return nil
	}
	d := s.r.guard.Take(time.Now(), s.peer, kind, float64(n))
	if d > 0 {
		s.r.log.Debug("ebt: peer over its rate; slowed", "peer", s.peer, "wait", d)
	}
	return limit.Wait(ctx, d)
}

// offend counts an offence of p (what); past its strikes p is dropped:
// its session ends with ErrAbuse. A core without a policy (tests that
// build one directly) counts nothing.
func (c *core) offend(p *peerState, what string) {
	if c.abuse.Strikes <= 0 || p.dropped {
		return
	}
	if p.strikes == nil {
		s := limit.NewStrikes(c.abuse, c.now)
		p.strikes = &s
	}
	if p.strikes.Add(c.now) {
		p.dropped = true
		c.emit(actClose{peer: p.id, err: fmt.Errorf("%w: too many messages with %s", ErrAbuse, what)})
	}
}

// offendEntries counts the offences of ENTRIES message ev of p: entries
// of feeds not asked for, and invalid or malformed entries. It reports
// whether p is dropped: the message is then not handled.
func (c *core) offendEntries(p *peerState, ev evEntries) (dropped bool) {
	unasked, invalid := false, ev.malformed > 0
	for _, r := range ev.runs {
		fs := c.feeds[r.author]
		unasked = unasked || fs == nil || !c.wantRx(fs)
		invalid = invalid || r.err != nil
	}
	if unasked {
		c.offend(p, "entries not asked for")
	}
	if invalid {
		c.offend(p, "invalid entries")
	}
	return p.dropped
}

// publishScope lets the sessions' readers see the scope as of the event
// Run just handled. The core replaces its scope map whenever it changes,
// never writing to one it has set, so the readers may share it.
func (r *Replicator) publishScope() {
	s := r.core.scope
	r.scope.Store(&s)
}

// inScope reports whether f was in scope at the last event Run handled,
// for the readers: the notes of other feeds are not stored as the peer's
// clock, so a peer naming endless feeds makes the node store nothing. It
// is true for every feed before Run publishes a scope (the simulator
// never does).
func (r *Replicator) inScope(f feed.ID) bool {
	s := r.scope.Load()
	return s == nil || (*s)[f]
}
