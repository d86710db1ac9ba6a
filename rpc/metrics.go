package rpc

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts the calls the server answers, by method, for Prometheus
// (Config.Metrics). A nil *Metrics records nothing. The per-method metrics
// are resolved when the Metrics is made, one set per method of the method
// table; calls of unknown methods are not counted.
type Metrics struct {
	methods map[string]methodMetrics
}

// methodMetrics are one method's metrics.
type methodMetrics struct {
	calls, errors prometheus.Counter
	latency       prometheus.Observer
}

// NewMetrics returns RPC metrics registered on reg (nil: not registered).
// It panics if reg holds them already: one server per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "rpc", Name: "calls_total",
		Help: "JSON-RPC calls answered, by method.",
	}, []string{"method"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "contextd", Subsystem: "rpc", Name: "errors_total",
		Help: "JSON-RPC calls answered with an error (refused, bad params, failed, timed out), by method.",
	}, []string{"method"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "contextd", Subsystem: "rpc", Name: "call_duration_seconds",
		Help:    "Time to handle a JSON-RPC call, from its dispatch to its result, by method.",
		Buckets: prometheus.ExponentialBuckets(100e-6, 4, 10), // 100 µs .. 26 s
	}, []string{"method"})
	m := &Metrics{methods: make(map[string]methodMetrics, len(methods))}
	for name := range methods {
		m.methods[name] = methodMetrics{
			calls:   calls.WithLabelValues(name),
			errors:  errs.WithLabelValues(name),
			latency: latency.WithLabelValues(name),
		}
	}
	if reg != nil {
		reg.MustRegister(calls, errs, latency)
	}
	return m
}

// called records a call of method that began at start and ended with
// *err (a pointer, so that a deferred call sees the final error).
func (m *Metrics) called(method string, start time.Time, err *error) {
	if m == nil {
		return
	}
	mm, ok := m.methods[method]
	if !ok {
		return
	}
	mm.calls.Inc()
	if *err != nil {
		mm.errors.Inc()
	}
	mm.latency.Observe(time.Since(start).Seconds())
}
