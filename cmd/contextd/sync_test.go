package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// look builds a syncState: progress cur/tgt, one peer session per state,
// and the feeds.
func look(cur, tgt int64, states []string, feeds ...api.FeedStatus) syncState {
	s := syncState{progress: api.Progress{Current: cur, Target: tgt}, feeds: feeds}
	for _, st := range states {
		s.peers = append(s.peers, api.EBTPeer{State: st})
	}
	return s
}

var (
	noPeers     []string
	replicating = []string{"replicating"}
	handshake   = []string{"handshake"}
	mixed       = []string{"replicating", "handshake"}
	upToDate    = api.FeedStatus{Local: 5, Best: 5}
	lagging     = api.FeedStatus{Local: 3, Best: 9}
	forkedBack  = api.FeedStatus{Local: 4, Best: 7, Forked: true, ForkSeq: 5}
)

func TestSyncPhase(t *testing.T) {
	tests := []struct {
		name string
		s    syncState
		wait bool
		want syncPhase
	}{
		{"no peers, nothing claimed", look(5, 5, noPeers, upToDate), false, phaseCaughtUp},
		{"no peers, nothing claimed, --wait", look(5, 5, noPeers, upToDate), true, phaseNoPeer},
		{"no peers, stale claim", look(3, 9, noPeers, lagging), false, phaseStranded},
		{"no peers, stale claim, --wait", look(3, 9, noPeers, lagging), true, phaseNoPeer},
		{"handshake, nothing known yet", look(5, 5, handshake, upToDate), false, phaseCaughtUp},
		{"handshake, nothing known yet, --wait", look(5, 5, handshake, upToDate), true, phaseHandshake},
		{"one peer handshaking, one done, --wait", look(5, 5, mixed, upToDate), true, phaseHandshake},
		{"behind", look(3, 9, replicating, lagging), false, phaseBehind},
		{"behind, --wait", look(3, 9, replicating, lagging), true, phaseBehind},
		{"behind a handshaking peer", look(3, 9, handshake, lagging), true, phaseBehind},
		{"caught up", look(9, 9, replicating, upToDate), false, phaseCaughtUp},
		{"caught up, --wait", look(9, 9, replicating, upToDate), true, phaseCaughtUp},
		{"current past target", look(10, 9, replicating), true, phaseCaughtUp},
		{"only a forked feed behind", look(4, 7, replicating, upToDate, forkedBack), true, phaseCaughtUp},
		{"forked and unforked feeds behind", look(4, 13, replicating, lagging, forkedBack), true, phaseBehind},
		{"progress behind, feed.list not yet", look(4, 7, replicating, upToDate), true, phaseBehind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.phase(tt.wait); got != tt.want {
				t.Errorf("phase(wait=%v) = %d, want %d", tt.wait, got, tt.want)
			}
		})
	}
}

func TestSyncLine(t *testing.T) {
	tests := []struct {
		s    syncState
		ph   syncPhase
		want string
	}{
		{look(180, 200, replicating, lagging, lagging), phaseBehind, "synced 180/200 entries (90%), 2 feeds behind, 1 peer"},
		{look(199, 200, mixed, lagging), phaseBehind, "synced 199/200 entries (99%), 1 feed behind, 2 peers"},
		{look(180, 200, replicating, upToDate), phaseBehind, "synced 180/200 entries (90%), 1 peer"},
		{look(200, 200, replicating, upToDate), phaseCaughtUp, "synced 200/200 entries (100%), caught up with 1 peer"},
		{look(0, 0, noPeers), phaseCaughtUp, "synced 0/0 entries (100%), caught up (no peer connected)"},
		{look(5, 5, noPeers, upToDate), phaseNoPeer, "synced 5/5 entries (100%), waiting for a peer"},
		{look(3, 9, noPeers, lagging), phaseNoPeer, "synced 3/9 entries (33%), waiting for a peer"},
		{look(5, 5, mixed, upToDate), phaseHandshake, "synced 5/5 entries (100%), waiting for the notes of 1 peer"},
		{look(3, 9, noPeers, lagging), phaseStranded, "synced 3/9 entries (33%), no peer connected"},
		{look(4, 7, replicating, upToDate, forkedBack), phaseCaughtUp,
			"synced 4/7 entries (57%), caught up with 1 peer (1 feed frozen by a fork, not waited for)"},
	}
	for _, tt := range tests {
		if got := tt.s.line(tt.ph); got != tt.want {
			t.Errorf("line(%d) of %+v\n got %q\nwant %q", tt.ph, tt.s.progress, got, tt.want)
		}
	}
}

func TestSyncLineDue(t *testing.T) {
	tests := []struct {
		line, last string
		since      time.Duration
		want       bool
	}{
		{"a", "", 0, true}, // the first line at once
		{"a", "a", time.Hour, false},
		{"b", "a", syncLineEvery / 2, false},
		{"b", "a", syncLineEvery, true},
	}
	for _, tt := range tests {
		if got := lineDue(tt.line, tt.last, tt.since); got != tt.want {
			t.Errorf("lineDue(%q, %q, %v) = %v, want %v", tt.line, tt.last, tt.since, got, tt.want)
		}
	}
}

// TestSyncLineView checks what sync prints when standard output is not a
// terminal: changed lines at most once per syncLineEvery, and the last
// line always.
func TestSyncLineView(t *testing.T) {
	var out bytes.Buffer
	v := &lineView{w: &out}
	t0 := time.Unix(1000, 0)
	v.show(look(5, 5, noPeers), phaseNoPeer, t0)
	v.show(look(5, 5, noPeers), phaseNoPeer, t0.Add(3*syncLineEvery))     // unchanged
	v.show(look(5, 9, replicating), phaseBehind, t0.Add(3*syncLineEvery)) // changed
	v.show(look(6, 9, replicating), phaseBehind, t0.Add(3*syncLineEvery+syncPollEvery))
	v.show(look(7, 9, replicating), phaseBehind, t0.Add(4*syncLineEvery))
	v.end(look(9, 9, replicating), phaseCaughtUp)
	want := strings.Join([]string{
		"synced 5/5 entries (100%), waiting for a peer",
		"synced 5/9 entries (55%), 1 peer",
		"synced 7/9 entries (77%), 1 peer",
		"synced 9/9 entries (100%), caught up with 1 peer",
	}, "\n") + "\n"
	if out.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", out.String(), want)
	}
}

// TestSyncBarView drives the terminal view through waiting, a growing
// target and the end: it must not lose the final line, and must end it
// with a newline.
func TestSyncBarView(t *testing.T) {
	var out bytes.Buffer
	v := &barView{w: &out}
	now := time.Unix(1000, 0)
	v.show(look(5, 5, noPeers), phaseNoPeer, now)
	v.show(look(5, 50, replicating, lagging), phaseBehind, now)
	v.show(look(20, 50, replicating, lagging), phaseBehind, now)
	v.show(look(30, 80, replicating, lagging), phaseBehind, now)
	v.show(look(80, 80, handshake), phaseHandshake, now)
	v.show(look(80, 90, replicating, lagging), phaseBehind, now)
	v.end(look(90, 90, replicating), phaseCaughtUp)
	s := out.String()
	if !strings.Contains(s, "entries") {
		t.Errorf("no bar drawn:\n%q", s)
	}
	if want := "\nsynced 90/90 entries (100%), caught up with 1 peer\n"; !strings.HasSuffix(s, want) {
		t.Errorf("output ends %q, want %q", s[max(0, len(s)-120):], want)
	}

	out.Reset()
	v = &barView{w: &out}
	v.show(look(5, 50, replicating, lagging), phaseBehind, now)
	v.stop()
	if s := out.String(); !strings.HasSuffix(s, "\n") || strings.Contains(s, "caught up") {
		t.Errorf("stopped view printed %q", s)
	}
}
