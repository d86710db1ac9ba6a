package store

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics times a Badger store's commits and syncs and reports the size of
// its databases, for Prometheus. Give it to one store (BadgerOptions.Metrics);
// a nil *Metrics records nothing. The sizes are read when Prometheus
// scrapes (Badger.Usage), not kept up to date.
type Metrics struct {
	commit, sync prometheus.Histogram
	sizes        *sizeCollector
}

// NewMetrics returns store metrics registered on reg (nil: not
// registered). It panics if reg holds them already: one store per
// registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	hist := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "contextd", Subsystem: "store", Name: name, Help: help,
			Buckets: prometheus.ExponentialBuckets(50e-6, 3, 10), // 50 µs .. ~1 s
		})
	}
	m := &Metrics{
		commit: hist("commit_duration_seconds", "Time to commit one append transaction (a batch of entries of one author) to the main database."),
		sync:   hist("sync_duration_seconds", "Time of one Sync, the barrier that makes the main database's committed writes durable."),
		sizes: &sizeCollector{desc: prometheus.NewDesc("contextd_store_size_bytes",
			"Size of each database on disk (allocated bytes of its files): main (feeds, indexes, object records) and blobs (chunk files, chunk records, tree hashes).",
			[]string{"db"}, nil)},
	}
	if reg != nil {
		reg.MustRegister(m.commit, m.sync, m.sizes)
	}
	return m
}

// committed records an append transaction's commit that began at start.
func (m *Metrics) committed(start time.Time) {
	if m != nil {
		m.commit.Observe(time.Since(start).Seconds())
	}
}

// synced records a Sync that began at start.
func (m *Metrics) synced(start time.Time) {
	if m != nil {
		m.sync.Observe(time.Since(start).Seconds())
	}
}

// now returns the time an operation starts, if m records it.
func (m *Metrics) now() time.Time {
	if m == nil {
		return time.Time{}
	}
	return time.Now()
}

// watch makes m report s's sizes.
func (m *Metrics) watch(s *Badger) {
	if m != nil {
		m.sizes.store.Store(s)
	}
}

// sizeCollector reports the sizes of the store it watches at each scrape;
// nothing before it watches one or once that store is closed.
type sizeCollector struct {
	desc  *prometheus.Desc
	store atomic.Pointer[Badger]
}

func (c *sizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sizeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.store.Load()
	if s == nil {
		return
	}
	u, err := s.Usage()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(u.Main), "main")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(u.Blobs), "blobs")
}
