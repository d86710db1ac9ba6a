package contexts

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/feed"
)

// Metrics counts context traffic, for Prometheus: the Manager's gossip
// (Config.Metrics) and the messages the node delivers by any path
// (Delivered). A nil *Metrics records nothing.
type Metrics struct {
	delivered prometheus.Counter
	latency   prometheus.Histogram
	filled    prometheus.Counter
	gossip    [numGossip]prometheus.Counter
}

// gossipKind is what became of a gossip message from another node.
type gossipKind int

const (
	gossipReceived gossipKind = iota
	gossipDuplicate
	gossipRejected
	numGossip
)

// NewMetrics returns context metrics registered on reg (nil: not
// registered). It panics if reg holds them already: one per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "contextd", Subsystem: "contexts", Name: name, Help: help})
	}
	m := &Metrics{
		delivered: counter("messages_delivered_total", "Context messages of other authors appended to the store (by gossip, a filled gap or replication)."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "contextd", Subsystem: "contexts", Name: "delivery_latency_seconds",
			Help: "Time from a delivered message's timestamp (its author's clock) to its local append; " +
				"negative values (clock skew) count as 0. History fetched late lands in the top buckets.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400},
		}),
		filled: counter("gaps_filled_total", "Gossiped messages held ahead of a gap and appended once replication filled it."),
		gossip: [numGossip]prometheus.Counter{
			gossipReceived:  counter("gossip_received_total", "Gossip messages from other nodes that passed validation (first copies)."),
			gossipDuplicate: counter("gossip_duplicate_total", "Copies of gossip messages already seen, dropped."),
			gossipRejected:  counter("gossip_rejected_total", "Gossip messages that failed validation or were ignored (blocked, banned, stale)."),
		},
	}
	if reg != nil {
		reg.MustRegister(m.delivered, m.latency, m.filled)
		for _, c := range m.gossip {
			reg.MustRegister(c)
		}
	}
	return m
}

// Delivered counts a context message e of another author appended at
// now, and its delivery latency. The node calls it for every path that
// appends (gossip, a filled gap, replication), once per message.
func (m *Metrics) Delivered(e *feed.Entry, now time.Time) {
	if m == nil {
		return
	}
	m.delivered.Inc()
	m.latency.Observe(max(0, float64(now.UnixMilli()-e.Timestamp)/1e3))
}

// gapFilled counts a held message appended once its gap filled.
func (m *Metrics) gapFilled() {
	if m != nil {
		m.filled.Inc()
	}
}

// gossiped counts a gossip message of another node.
func (m *Metrics) gossiped(k gossipKind) {
	if m != nil {
		m.gossip[k].Inc()
	}
}
