package swarm_test

import (
	"bytes"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/swarm"
)

// TestFetchMetrics: a fetch from three seeders, one of which corrupts a
// chunk, counts every chunk it stored as verified, the corrupt one as
// rejected, the end game's extra copies as duplicates, their bytes, and
// one completed fetch taking the time Fetch took.
func TestFetchMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 1<<20, 16<<10)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		corrupt := func(c swarm.Conn) swarm.Conn {
			return &tamperConn{Conn: c, edit: func(m swarm.Message) []byte {
				if c, ok := m.(swarm.Chunks); ok {
					c.Data = bytes.Clone(c.Data)
					c.Data[0] ^= 1
					return c.Append(nil)
				}
				return nil
			}}
		}
		reg := prometheus.NewRegistry()
		st, took, _, err := runFetch(t, sn, o, sink, []func(swarm.Conn) swarm.Conn{corrupt, nil, nil},
			swarm.FetchConfig{Metrics: swarm.NewMetrics(reg)})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		sink.check(t)

		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				name := mf.GetName()
				if l := m.GetLabel(); len(l) == 1 {
					name += "/" + l[0].GetValue()
				}
				got[name] = m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
				if h := m.GetHistogram(); h != nil {
					got[name+"/sum"] = h.GetSampleSum()
				}
			}
		}
		chunk := float64(16 << 10)
		for name, want := range map[string]float64{
			"contextd_swarm_chunks_verified_total":      float64(o.tree.Chunks()),
			"contextd_swarm_chunks_rejected_total":      1,
			"contextd_swarm_chunks_duplicate_total":     float64(st.DupBytes) / chunk,
			"contextd_swarm_bytes_received_total":       float64(st.Bytes + st.DupBytes),
			"contextd_swarm_fetches_total/ok":           1,
			"contextd_swarm_fetches_total/error":        0,
			"contextd_swarm_fetch_duration_seconds":     1,
			"contextd_swarm_fetch_duration_seconds/sum": took.Seconds(),
			"contextd_swarm_chunks_sent_total":          0, // the seeders' Serve has no Metrics
		} {
			if got[name] != want {
				t.Errorf("%s = %v, want %v", name, got[name], want)
			}
		}
		if sum := got["contextd_swarm_fetch_duration_seconds/sum"]; sum <= 0 || sum > took.Seconds() {
			t.Errorf("fetch time %vs, want the %v Fetch took at most", sum, took)
		}
	})
}
