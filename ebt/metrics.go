package ebt

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts what replication does, for Prometheus. One Metrics serves
// one Replicator (Config.Metrics); a nil *Metrics records nothing, so the
// core, tests and the simulator run without it. Every update is one atomic
// add on a metric resolved when the Metrics was made: nothing allocates or
// locks on the replication paths.
type Metrics struct {
	counters [numCounters]prometheus.Counter
	sessions prometheus.Gauge
}

// counter names one of Metrics' counters.
type counter int

const (
	cReceived counter = iota
	cSent
	cDuplicate
	cInvalid
	cAppended
	cNotesReceived
	cNotesSent
	cSessionsStarted
	cStalls
	cForkFreezes
	numCounters
)

// counterOpts names and explains each counter, contextd_ebt_<name>.
var counterOpts = [numCounters]struct{ name, help string }{
	cReceived:        {"entries_received_total", "Entries received from peers, valid or not."},
	cSent:            {"entries_sent_total", "Entries sent to peers."},
	cDuplicate:       {"entries_duplicate_total", "Entries received that the node held already."},
	cInvalid:         {"entries_invalid_total", "Entries received that did not verify (malformed, badly signed, not linking to the feed, or not asked for and invalid)."},
	cAppended:        {"entries_appended_total", "Entries received from peers and appended to the store."},
	cNotesReceived:   {"notes_received_total", "Notes (one feed's clock value each) received from peers."},
	cNotesSent:       {"notes_sent_total", "Notes sent to peers."},
	cSessionsStarted: {"sessions_started_total", "Replication sessions started."},
	cStalls:          {"stalls_total", "Times a source that claimed more of a feed sent nothing of it for a timeout, so the feed was asked of another peer."},
	cForkFreezes:     {"fork_freezes_total", "Feeds frozen because a fork of them was proven."},
}

// NewMetrics returns replication metrics registered on reg (nil: not
// registered). It panics if reg holds them already: one Replicator per
// registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{sessions: prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "contextd", Subsystem: "ebt", Name: "sessions_active", Help: "Replication sessions running now.",
	})}
	for i, o := range counterOpts {
		m.counters[i] = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "contextd", Subsystem: "ebt", Name: o.name, Help: o.help})
	}
	if reg != nil {
		reg.MustRegister(m.sessions)
		for _, c := range m.counters {
			reg.MustRegister(c)
		}
	}
	return m
}

// add adds n to counter c.
func (m *Metrics) add(c counter, n int) {
	if m != nil && n > 0 {
		m.counters[c].Add(float64(n))
	}
}

// session counts a session starting (+1) or ending (-1).
func (m *Metrics) session(delta int) {
	if m == nil {
		return
	}
	if delta > 0 {
		m.counters[cSessionsStarted].Inc()
	}
	m.sessions.Add(float64(delta))
}
