package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/live"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

// metrics are the node's Prometheus metrics: each package's, registered on
// a registry of the node's own (not Prometheus' global one), so several
// nodes in one process keep theirs apart. The Go runtime's and the
// process's metrics (go_*, process_*) come along.
type metrics struct {
	reg      *prometheus.Registry
	ebt      *ebt.Metrics
	swarm    *swarm.Metrics
	links    *flitlink.Metrics
	contexts *contexts.Metrics
	store    *store.Metrics
	live     *live.Metrics
	node     *linkMetrics // link losses and redials (links.go)
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &metrics{
		reg:      reg,
		ebt:      ebt.NewMetrics(reg),
		swarm:    swarm.NewMetrics(reg),
		links:    flitlink.NewMetrics(reg),
		contexts: contexts.NewMetrics(reg),
		store:    store.NewMetrics(reg),
		live:     live.NewMetrics(reg),
		node:     newLinkMetrics(reg),
	}
}

// Metrics returns the registry holding the node's metrics, named
// contextd_<package>_<what>_<unit> (docs/OPERATIONS.md lists them). The
// daemon registers its RPC server's metrics on it too and serves it on
// /metrics (contextd run --metrics).
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.reg }
