package swarm

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what Fetch and Serve do, for Prometheus. One Metrics
// serves every Fetch and Serve of a node (FetchConfig.Metrics,
// ServeConfig.Metrics); a nil *Metrics records nothing. Each update is an
// atomic add on a metric resolved when the Metrics was made: nothing
// allocates or locks per chunk.
type Metrics struct {
	bytesReceived, bytesSent                 prometheus.Counter
	verified, rejected, duplicate, chunksOut prometheus.Counter
	fetchOK, fetchFailed                     prometheus.Counter
	fetchTime                                prometheus.Histogram
}

// NewMetrics returns swarm metrics registered on reg (nil: not
// registered). It panics if reg holds them already: one per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "contextd", Subsystem: "swarm", Name: name, Help: help})
	}
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "swarm", Name: "fetches_total",
		Help: "Object fetches (swarm/1) that ended, by result: ok (every chunk stored) or error.",
	}, []string{"result"})
	m := &Metrics{
		bytesReceived: counter("bytes_received_total", "Chunk payload bytes received that verified against the object's root (stored or duplicate)."),
		bytesSent:     counter("bytes_sent_total", "Chunk payload bytes served to peers."),
		verified:      counter("chunks_verified_total", "Chunks received that verified and were new: stored."),
		rejected:      counter("chunks_rejected_total", "Chunks or hashes received that did not verify (the peer is dropped)."),
		duplicate:     counter("chunks_duplicate_total", "Chunks received that verified but were held already (end game, late answers)."),
		chunksOut:     counter("chunks_sent_total", "Chunks served to peers."),
		fetchOK:       fetches.WithLabelValues("ok"),
		fetchFailed:   fetches.WithLabelValues("error"),
		fetchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "contextd", Subsystem: "swarm", Name: "fetch_duration_seconds",
			Help:    "Time from the start of a fetch to its last chunk stored, of the fetches that completed.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms .. ~45 min
		}),
	}
	if reg != nil {
		reg.MustRegister(m.bytesReceived, m.bytesSent, m.verified, m.rejected, m.duplicate, m.chunksOut, fetches, m.fetchTime)
	}
	return m
}

// chunkIn counts a verified chunk of size bytes; dup if it was held.
func (m *Metrics) chunkIn(size int, dup bool) {
	if m == nil {
		return
	}
	m.bytesReceived.Add(float64(size))
	if dup {
		m.duplicate.Inc()
	} else {
		m.verified.Inc()
	}
}

// chunkRejected counts a chunk or hash that did not verify.
func (m *Metrics) chunkRejected() {
	if m != nil {
		m.rejected.Inc()
	}
}

// served counts chunks served, of size bytes in all.
func (m *Metrics) served(chunks uint64, size int) {
	if m != nil {
		m.chunksOut.Add(float64(chunks))
		m.bytesSent.Add(float64(size))
	}
}

// fetched counts a fetch that started at start and ended with err.
func (m *Metrics) fetched(start time.Time, err error) {
	switch {
	case m == nil:
	case err != nil:
		m.fetchFailed.Inc()
	default:
		m.fetchOK.Inc()
		m.fetchTime.Observe(time.Since(start).Seconds())
	}
}
