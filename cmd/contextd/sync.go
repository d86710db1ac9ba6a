package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

const (
	// syncPollEvery is how often sync asks the daemon how far it is.
	syncPollEvery = 200 * time.Millisecond
	// syncLineEvery is the least time between two progress lines when
	// standard output is not a terminal.
	syncLineEvery = time.Second
)

func (c *cli) syncCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "sync [--wait]",
		Short: "Show replication progress until this node has caught up with its peers",
		Long: `Show replication progress until this node holds every entry its connected peers
have told it about (ebt.progress: current >= target), then print one line and exit 0:

  synced 200/200 entries (100%), caught up with 1 peer

On a terminal a progress bar is redrawn every 200 ms; otherwise a plain line like
"synced 180/200 entries (90%), 2 feeds behind, 1 peer" is printed at most once a second.

Without --wait, "caught up" is judged on what the peers have said so far: with no peer
connected, or right after connect before a peer has sent its notes, sync exits at once. If
the node is behind and no peer is connected, nobody can fill the gap: sync exits 1.

With --wait, sync also waits until at least one peer is connected and every connected
peer's session has exchanged notes (state "replicating"), so what they have is known, and
then until the node has caught up. It keeps waiting while no peer is connected.

Feeds frozen by a fork proof never advance and are not waited for. Ctrl-C stops waiting
(exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				return runSync(ctx, cl, wait, newSyncView(cmd.OutOrStdout()))
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for a peer and its notes before judging whether the node has caught up")
	return cmd
}

// runSync polls the daemon until the node has caught up, showing each
// look through v.
func runSync(ctx context.Context, cl *sdk.Client, wait bool, v syncView) error {
	tick := time.NewTicker(syncPollEvery)
	defer tick.Stop()
	var (
		last   *syncState
		lastPh syncPhase
	)
	interrupted := func() error {
		v.stop()
		if last == nil {
			return errors.New("interrupted")
		}
		return fmt.Errorf("interrupted before catching up: %s", last.line(lastPh))
	}
	for {
		s, err := pollSync(ctx, cl)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			v.stop()
			return err
		}
		ph := s.phase(wait)
		last, lastPh = &s, ph
		switch ph {
		case phaseCaughtUp:
			v.end(s, ph)
			return nil
		case phaseStranded:
			v.end(s, ph)
			return fmt.Errorf("%d entries behind and no peer connected: connect one, or use sync --wait",
				s.progress.Target-s.progress.Current)
		}
		v.show(s, ph, time.Now())
		select {
		case <-ctx.Done():
			return interrupted()
		case <-tick.C:
		}
	}
}

// syncState is one look at the daemon.
type syncState struct {
	peers    []api.EBTPeer
	progress api.Progress
	feeds    []api.FeedStatus
}

// pollSync reads the sessions before the progress: a session past its
// handshake has had its peer's notes counted in any progress read later
// (ebt publishes both at once), so a "replicating" peer next to a
// caught-up progress really means caught up with that peer.
func pollSync(ctx context.Context, cl *sdk.Client) (s syncState, err error) {
	if s.peers, err = cl.EBTPeers(ctx); err != nil {
		return s, err
	}
	if s.progress, err = cl.Progress(ctx); err != nil {
		return s, err
	}
	s.feeds, err = cl.Feeds(ctx)
	return s, err
}

// syncPhase is what one look at the daemon says about waiting.
type syncPhase int

const (
	phaseBehind    syncPhase = iota // entries to fetch from connected peers
	phaseNoPeer                     // --wait: no peer session yet
	phaseHandshake                  // --wait: a peer session has not exchanged notes yet
	phaseCaughtUp                   // done
	phaseStranded                   // behind with no peer connected, without --wait: give up
)

// phase judges s: caught up, or what sync is waiting for.
func (s syncState) phase(wait bool) syncPhase {
	if !s.caughtUp() {
		switch {
		case len(s.peers) > 0:
			return phaseBehind
		case wait:
			return phaseNoPeer
		default:
			return phaseStranded
		}
	}
	if wait {
		if len(s.peers) == 0 {
			return phaseNoPeer
		}
		if _, handshaking := s.sessions(); handshaking > 0 {
			return phaseHandshake
		}
	}
	return phaseCaughtUp
}

// caughtUp reports whether the node holds what its peers claim: progress
// says so, or the only feeds behind are frozen by a fork proof (progress
// keeps counting what peers claim of those, but they never advance).
func (s syncState) caughtUp() bool {
	if s.progress.Current >= s.progress.Target {
		return true
	}
	return s.behind() == 0 && s.frozenBehind() > 0
}

// behind counts feeds, not frozen by a fork, of which a peer claims more
// than the node holds.
func (s syncState) behind() int {
	n := 0
	for _, f := range s.feeds {
		if !f.Forked && f.Local < f.Best {
			n++
		}
	}
	return n
}

// frozenBehind counts feeds frozen by a fork of which a peer claims more.
func (s syncState) frozenBehind() int {
	n := 0
	for _, f := range s.feeds {
		if f.Forked && f.Local < f.Best {
			n++
		}
	}
	return n
}

// sessions counts peer sessions past their handshake and still in it.
func (s syncState) sessions() (replicating, handshaking int) {
	for _, p := range s.peers {
		if p.State == "replicating" {
			replicating++
		} else {
			handshaking++
		}
	}
	return replicating, handshaking
}

// line describes s in phase ph in one line, e.g.
// "synced 180/200 entries (90%), 2 feeds behind, 1 peer".
func (s syncState) line(ph syncPhase) string {
	cur, tgt := s.progress.Current, s.progress.Target
	pct := int64(100)
	if tgt > 0 && cur < tgt {
		pct = 100 * cur / tgt // rounded down: 100% only when there
	}
	var b strings.Builder
	fmt.Fprintf(&b, "synced %d/%d entries (%d%%)", cur, tgt, pct)
	if ph != phaseNoPeer && ph != phaseStranded && ph != phaseCaughtUp {
		if n := s.behind(); n > 0 {
			fmt.Fprintf(&b, ", %s behind", plural(n, "feed"))
		}
	}
	switch ph {
	case phaseBehind:
		fmt.Fprintf(&b, ", %s", plural(len(s.peers), "peer"))
	case phaseNoPeer:
		b.WriteString(", waiting for a peer")
	case phaseHandshake:
		_, h := s.sessions()
		fmt.Fprintf(&b, ", waiting for the notes of %s", plural(h, "peer"))
	case phaseCaughtUp:
		if len(s.peers) == 0 {
			b.WriteString(", caught up (no peer connected)")
		} else {
			fmt.Fprintf(&b, ", caught up with %s", plural(len(s.peers), "peer"))
		}
	case phaseStranded:
		b.WriteString(", no peer connected")
	}
	if n := s.frozenBehind(); n > 0 {
		fmt.Fprintf(&b, " (%s frozen by a fork, not waited for)", plural(n, "feed"))
	}
	return b.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// syncView shows sync's progress.
type syncView interface {
	// show shows a look at the daemon taken at now while sync waits.
	show(s syncState, ph syncPhase, now time.Time)
	// end shows the last look, always, and leaves the output on a new line.
	end(s syncState, ph syncPhase)
	// stop leaves the output on a new line without showing more.
	stop()
}

// newSyncView draws a progress bar on a terminal, and prints plain lines
// otherwise.
func newSyncView(w io.Writer) syncView {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return &barView{w: w}
		}
	}
	return &lineView{w: w}
}

// lineView prints a line when what it says changes, at most once per
// syncLineEvery.
type lineView struct {
	w      io.Writer
	last   string    // the last line printed
	lastAt time.Time // when
}

func (v *lineView) show(s syncState, ph syncPhase, now time.Time) {
	if l := s.line(ph); lineDue(l, v.last, now.Sub(v.lastAt)) {
		fmt.Fprintln(v.w, l)
		v.last, v.lastAt = l, now
	}
}

// lineDue reports whether lineView prints line, given the last line it
// printed (empty at first) and the time since.
func lineDue(line, last string, since time.Duration) bool {
	return line != last && (last == "" || since >= syncLineEvery)
}

func (v *lineView) end(s syncState, ph syncPhase) {
	if l := s.line(ph); l != v.last {
		fmt.Fprintln(v.w, l)
		v.last = l
	}
}

func (v *lineView) stop() {}

// barView redraws, in place, a progress bar of the entries this run
// fetches while the node is behind, and a status line while sync waits for
// peers.
type barView struct {
	w      io.Writer
	bar    *progressbar.ProgressBar // nil when none is shown
	base   int64                    // entries held when bar started
	status bool                     // a status line is shown (no newline yet)
}

func (v *barView) show(s syncState, ph syncPhase, _ time.Time) {
	cur, tgt := s.progress.Current, s.progress.Target
	if ph != phaseBehind || cur >= tgt {
		// Waiting for peers: the status line replaces the bar.
		if v.bar != nil {
			v.bar.Clear()
			v.bar.Exit()
			v.bar = nil
		}
		fmt.Fprintf(v.w, "\r\x1b[K%s", s.line(ph))
		v.status = true
		return
	}
	if v.status {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.status = false
	}
	if v.bar != nil && (cur < v.base || v.bar.IsFinished()) {
		v.closeBar()
	}
	desc := "syncing"
	if n := s.behind(); n > 0 {
		desc = fmt.Sprintf("syncing, %s behind", plural(n, "feed"))
	}
	if v.bar == nil {
		v.base = cur
		v.bar = progressbar.NewOptions64(tgt-cur,
			progressbar.OptionSetWriter(v.w),
			progressbar.OptionSetDescription(desc),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("entries"),
			progressbar.OptionSetPredictTime(true),
		)
	}
	if v.bar.GetMax64() != tgt-v.base {
		v.bar.ChangeMax64(tgt - v.base)
	}
	v.bar.Describe(desc)
	v.bar.Set64(cur - v.base)
}

// closeBar ends a shown bar where it stands and moves to a new line.
func (v *barView) closeBar() {
	if v.bar == nil {
		return
	}
	v.bar.Exit()
	fmt.Fprintln(v.w)
	v.bar = nil
}

func (v *barView) end(s syncState, ph syncPhase) {
	if v.bar != nil && ph == phaseCaughtUp {
		v.bar.Finish()
	}
	v.closeBar()
	if v.status {
		fmt.Fprint(v.w, "\r\x1b[K")
		v.status = false
	}
	fmt.Fprintln(v.w, s.line(ph))
}

func (v *barView) stop() {
	v.closeBar()
	if v.status {
		fmt.Fprintln(v.w)
		v.status = false
	}
}
