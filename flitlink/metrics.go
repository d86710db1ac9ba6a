package flitlink

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what links carry, per class, for Prometheus. One Metrics
// serves every link of a node (Config.Metrics); a nil *Metrics records
// nothing. The per-class metrics are resolved when the Metrics is made:
// an update is an atomic add, made under the link's lock that the frame
// path holds anyway.
type Metrics struct {
	sent, received [numClasses]prometheus.Counter
	delay          [numClasses]prometheus.Observer
}

// NewMetrics returns link metrics registered on reg (nil: not
// registered). It panics if reg holds them already: one per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "flitlink", Name: "bytes_sent_total",
		Help: "Bytes of data frames (header and payload) written to links, by circuit class.",
	}, []string{"class"})
	received := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "flitlink", Name: "bytes_received_total",
		Help: "Bytes of data frames (header and payload) read from links, by circuit class.",
	}, []string{"class"})
	delay := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "contextd", Subsystem: "flitlink", Name: "queue_delay_seconds",
		Help: "Time from a message's Send to its first frame being scheduled onto the link " +
			"(waiting for higher classes, the circuit's turn and flow-control credit), by circuit class.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10 µs .. 2.6 s
	}, []string{"class"})
	m := &Metrics{}
	for c := range Class(numClasses) {
		m.sent[c] = sent.WithLabelValues(c.String())
		m.received[c] = received.WithLabelValues(c.String())
		m.delay[c] = delay.WithLabelValues(c.String())
	}
	if reg != nil {
		reg.MustRegister(sent, received, delay)
	}
	return m
}

// frameOut counts a data frame of n bytes sent on a circuit of class c;
// first marks a message's first frame, queued when its Send began.
func (m *Metrics) frameOut(c Class, n int, first bool, queued time.Time) {
	if m == nil {
		return
	}
	m.sent[c].Add(float64(n))
	if first {
		m.delay[c].Observe(time.Since(queued).Seconds())
	}
}

// frameIn counts a data frame of n bytes received on a circuit of class c.
func (m *Metrics) frameIn(c Class, n int) {
	if m != nil {
		m.received[c].Add(float64(n))
	}
}
