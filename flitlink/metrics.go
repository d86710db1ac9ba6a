package flitlink

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what links carry, per class, for Prometheus. One Metrics
// serves every link of a node (Config.Metrics); a nil *Metrics records
// nothing. The per-class metrics are resolved when the Metrics is made:
// an update is an atomic add.
type Metrics struct {
	out, in [numClasses]prometheus.Counter
	delay   [numClasses]prometheus.Observer
}

// NewMetrics returns link metrics registered on reg (nil: not
// registered). It panics if reg holds them already: one per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "flitlink", Name: "bytes_sent_total",
		Help: "Bytes of messages (length prefix and payload) written to circuits, by circuit class.",
	}, []string{"class"})
	received := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "flitlink", Name: "bytes_received_total",
		Help: "Bytes of messages (length prefix and payload) read from circuits, by circuit class.",
	}, []string{"class"})
	delay := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "contextd", Subsystem: "flitlink", Name: "queue_delay_seconds",
		Help: "Time from a message's Send to its first byte being written to its circuit's stream " +
			"(waiting for the circuit's earlier messages and, for bulk classes, the delay-based controller), by circuit class.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10 µs .. 2.6 s
	}, []string{"class"})
	m := &Metrics{}
	for c := range Class(numClasses) {
		m.out[c] = sent.WithLabelValues(c.String())
		m.in[c] = received.WithLabelValues(c.String())
		m.delay[c] = delay.WithLabelValues(c.String())
	}
	if reg != nil {
		reg.MustRegister(sent, received, delay)
	}
	return m
}

// sendDelay records that a message Send began at queued starts being
// written now.
func (m *Metrics) sendDelay(c Class, queued time.Time) {
	if m != nil {
		m.delay[c].Observe(time.Since(queued).Seconds())
	}
}

// sent counts n bytes written on a circuit of class c.
func (m *Metrics) sent(c Class, n int) {
	if m != nil {
		m.out[c].Add(float64(n))
	}
}

// received counts n bytes read on a circuit of class c.
func (m *Metrics) received(c Class, n int) {
	if m != nil {
		m.in[c].Add(float64(n))
	}
}
