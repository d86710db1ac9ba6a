package live

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the live sessions of a node do, for Prometheus and
// for the node's stream statistics. One Metrics serves every session of a
// node; a nil *Metrics records nothing. Updates are atomic adds: nothing
// allocates or locks per message.
type Metrics struct {
	bytesSent, bytesReceived atomic.Uint64
	munrosVerified           prometheus.Counter
	munrosRejected           prometheus.Counter
	sessions                 prometheus.Counter
}

// NewMetrics returns live metrics registered on reg (nil: not registered).
// It panics if reg holds them already: one per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "contextd", Subsystem: "live", Name: name, Help: help})
	}
	m := &Metrics{
		munrosVerified: counter("munros_verified_total", "Munros received from upstream peers that verified (signature and root)."),
		munrosRejected: counter("munros_rejected_total", "Munros or END marks received that did not verify, or came out of order (the peer is dropped)."),
		sessions:       counter("sessions_total", "live/1 sessions started (START sent or received)."),
	}
	if reg != nil {
		reg.MustRegister(m.munrosVerified, m.munrosRejected, m.sessions,
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "contextd", Subsystem: "live", Name: "bytes_sent_total",
				Help: "Bytes of live/1 messages sent to peers (all streams).",
			}, func() float64 { return float64(m.bytesSent.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "contextd", Subsystem: "live", Name: "bytes_received_total",
				Help: "Bytes of live/1 messages received from peers (all streams).",
			}, func() float64 { return float64(m.bytesReceived.Load()) }))
	}
	return m
}

// Sent returns the bytes of live/1 messages sent so far.
func (m *Metrics) Sent() uint64 { return m.bytesSent.Load() }

// Received returns the bytes of live/1 messages received so far.
func (m *Metrics) Received() uint64 { return m.bytesReceived.Load() }

func (m *Metrics) sent(n int) {
	if m != nil {
		m.bytesSent.Add(uint64(n))
	}
}

func (m *Metrics) received(n int) {
	if m != nil {
		m.bytesReceived.Add(uint64(n))
	}
}

func (m *Metrics) verified() {
	if m != nil {
		m.munrosVerified.Inc()
	}
}

func (m *Metrics) rejected() {
	if m != nil {
		m.munrosRejected.Inc()
	}
}

func (m *Metrics) session() {
	if m != nil {
		m.sessions.Inc()
	}
}
