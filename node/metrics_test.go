package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/rpc/api"
)

// series is one gathered sample: a counter's or gauge's value, or a
// histogram's count of observations, with its labels.
type series struct {
	labels map[string]string
	value  float64
}

// gather returns every series of g by metric name.
func gather(t *testing.T, g prometheus.Gatherer) map[string][]series {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out[mf.GetName()] = append(out[mf.GetName()], s)
		}
	}
	return out
}

// value sums the series of name whose labels include want ("k=v" each).
func value(got map[string][]series, name string, want ...string) float64 {
	var v float64
	for _, s := range got[name] {
		match := true
		for _, kv := range want {
			k, val, _ := strings.Cut(kv, "=")
			match = match && s.labels[k] == val
		}
		if match {
			v += s.value
		}
	}
	return v
}

// TestMetrics: after B syncs A's feed, gets A's object, receives a context
// message and answers RPC calls, every metric of every package is on each
// node's registry, and the counters of each family moved, on the side
// that did the work.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)
	const entries = 30
	for i := range entries {
		if _, err := a.Publish(ctx, "post", fmt.Appendf(nil, "entry %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Contact(ctx, a.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, a.ID(), entries)

	mustGet(t, ctx, b, putFile(t, ctx, a, 5*16<<10+7))

	room, err := a.CreateContext(ctx, api.ContextCreateParams{Name: "room"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JoinContext(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PublishContext(ctx, room.ID, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, ctx, b, room.ID, 1)

	const token = "metrics-test-token"
	srv := rpc.New(rpc.Config{Node: b, Token: token, Metrics: rpc.NewMetrics(b.Metrics())})
	defer srv.Close()
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"node.info"}`,
		`{"jsonrpc":"2.0","id":2,"method":"feed.get","params":{"author":"not an id"}}`,
	} {
		req := httptest.NewRequest(http.MethodPost, api.Path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", body, rec.Code, rec.Body)
		}
	}

	// Every name is on both nodes' registries.
	names := []string{
		"contextd_ebt_entries_received_total", "contextd_ebt_entries_sent_total",
		"contextd_ebt_entries_duplicate_total", "contextd_ebt_entries_invalid_total",
		"contextd_ebt_entries_appended_total", "contextd_ebt_notes_received_total",
		"contextd_ebt_notes_sent_total", "contextd_ebt_sessions_active",
		"contextd_ebt_sessions_started_total", "contextd_ebt_stalls_total",
		"contextd_ebt_fork_freezes_total",
		"contextd_swarm_bytes_received_total", "contextd_swarm_bytes_sent_total",
		"contextd_swarm_chunks_verified_total", "contextd_swarm_chunks_rejected_total",
		"contextd_swarm_chunks_duplicate_total", "contextd_swarm_chunks_sent_total",
		"contextd_swarm_fetches_total", "contextd_swarm_fetch_duration_seconds",
		"contextd_flitlink_bytes_sent_total", "contextd_flitlink_bytes_received_total",
		"contextd_flitlink_queue_delay_seconds",
		"contextd_contexts_messages_delivered_total", "contextd_contexts_delivery_latency_seconds",
		"contextd_contexts_gaps_filled_total", "contextd_contexts_gossip_received_total",
		"contextd_contexts_gossip_duplicate_total", "contextd_contexts_gossip_rejected_total",
		"contextd_store_size_bytes", "contextd_store_commit_duration_seconds",
		"contextd_store_sync_duration_seconds",
		"go_goroutines", "process_resident_memory_bytes",
	}
	ga, gb := gather(t, a.Metrics()), gather(t, b.Metrics())
	for _, n := range names {
		for node, g := range map[string]map[string][]series{"A": ga, "B": gb} {
			if len(g[n]) == 0 {
				t.Errorf("%s lacks %s", node, n)
			}
		}
	}
	for _, n := range []string{"contextd_rpc_calls_total", "contextd_rpc_errors_total", "contextd_rpc_call_duration_seconds"} {
		if len(gb[n]) == 0 {
			t.Errorf("B lacks %s", n)
		}
	}

	// The counters of each family moved where the work was done.
	for _, c := range []struct {
		node   string
		g      map[string][]series
		name   string
		labels []string
		min    float64
	}{
		{"B", gb, "contextd_ebt_entries_received_total", nil, entries},
		{"B", gb, "contextd_ebt_entries_appended_total", nil, entries},
		{"A", ga, "contextd_ebt_entries_sent_total", nil, entries},
		{"B", gb, "contextd_ebt_notes_received_total", nil, 1},
		{"B", gb, "contextd_ebt_notes_sent_total", nil, 1},
		{"B", gb, "contextd_ebt_sessions_started_total", nil, 1},
		{"B", gb, "contextd_ebt_sessions_active", nil, 1},
		{"B", gb, "contextd_swarm_chunks_verified_total", nil, 6},
		{"B", gb, "contextd_swarm_bytes_received_total", nil, 5*16<<10 + 7},
		{"B", gb, "contextd_swarm_fetches_total", []string{"result=ok"}, 1},
		{"B", gb, "contextd_swarm_fetch_duration_seconds", nil, 1},
		{"A", ga, "contextd_swarm_chunks_sent_total", nil, 6},
		{"A", ga, "contextd_swarm_bytes_sent_total", nil, 5*16<<10 + 7},
		{"A", ga, "contextd_flitlink_bytes_sent_total", []string{"class=data"}, 5 * 16 << 10},
		{"B", gb, "contextd_flitlink_bytes_received_total", []string{"class=data"}, 5 * 16 << 10},
		{"A", ga, "contextd_flitlink_queue_delay_seconds", []string{"class=data"}, 1},
		{"B", gb, "contextd_contexts_messages_delivered_total", nil, 1},
		{"B", gb, "contextd_contexts_delivery_latency_seconds", nil, 1},
		{"B", gb, "contextd_store_commit_duration_seconds", nil, 1},
		{"A", ga, "contextd_store_sync_duration_seconds", nil, 1},
		{"B", gb, "contextd_rpc_calls_total", []string{"method=node.info"}, 1},
		{"B", gb, "contextd_rpc_calls_total", []string{"method=feed.get"}, 1},
		{"B", gb, "contextd_rpc_errors_total", []string{"method=feed.get"}, 1},
		{"B", gb, "contextd_rpc_call_duration_seconds", []string{"method=node.info"}, 1},
	} {
		if v := value(c.g, c.name, c.labels...); v < c.min {
			t.Errorf("%s: %s%v = %v, want at least %v", c.node, c.name, c.labels, v, c.min)
		}
	}
	if v := value(gb, "contextd_rpc_errors_total", "method=node.info"); v != 0 {
		t.Errorf("B: node.info answered %v errors, want 0", v)
	}
	checkMetricsDocs(t, gb)
}

// checkMetricsDocs checks docs/OPERATIONS.md names every contextd metric
// of got, and that each metric the Grafana dashboard queries is one of
// them.
func checkMetricsDocs(t *testing.T, got map[string][]series) {
	t.Helper()
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range got {
		if strings.HasPrefix(name, "contextd_") && !strings.Contains(string(doc), "`"+name) {
			t.Errorf("docs/OPERATIONS.md does not list %s", name)
		}
	}
	raw, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range regexp.MustCompile(`contextd_[a-z_]+`).FindAllString(tg.Expr, -1) {
				n++
				if name := strings.TrimSuffix(m, "_bucket"); len(got[name]) == 0 {
					t.Errorf("the dashboard queries %s, which no node exports", m)
				}
			}
		}
	}
	if n < 20 {
		t.Errorf("the dashboard queries only %d contextd metrics", n)
	}
}
