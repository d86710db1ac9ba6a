package contexts

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/feed"
)

// TestDeliveryLatency: the latency runs from the entry's timestamp to the
// append; an entry stamped in the future (the author's clock ahead) counts
// as delivered at once, not as a negative latency.
func TestDeliveryLatency(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	now := time.UnixMilli(1_000_000)
	m.Delivered(&feed.Entry{Timestamp: now.UnixMilli() - 1500}, now)
	m.Delivered(&feed.Entry{Timestamp: now.UnixMilli() + 60_000}, now)
	(*Metrics)(nil).Delivered(&feed.Entry{}, now) // records nothing, does not panic

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			if h := s.GetHistogram(); h != nil {
				got[mf.GetName()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
			} else {
				got[mf.GetName()] = [2]float64{s.GetCounter().GetValue()}
			}
		}
	}
	if g := got["contextd_contexts_messages_delivered_total"]; g[0] != 2 {
		t.Errorf("delivered %v, want 2", g[0])
	}
	if g := got["contextd_contexts_delivery_latency_seconds"]; g != [2]float64{2, 1.5} {
		t.Errorf("latency: %v observations summing to %vs, want 2 summing to 1.5s", g[0], g[1])
	}
}
