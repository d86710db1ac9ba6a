package main

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckMetricsAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
		ok     bool
	}{
		{"127.0.0.1:9464", false, true},
		{"127.0.0.2:0", false, true},
		{"[::1]:9464", false, true},
		{"localhost:9464", false, true},
		{"0.0.0.0:9464", false, false},
		{":9464", false, false}, // every interface
		{"192.0.2.1:9464", false, false},
		{"[::]:9464", false, false},
		{"example.org:9464", false, false},
		{"0.0.0.0:9464", true, true},
		{":9464", true, true},
		{"127.0.0.1", false, false}, // no port
		{"127.0.0.1", true, false},
	} {
		err := checkLocalAddr("metrics", tc.addr, tc.public)
		if (err == nil) != tc.ok {
			t.Errorf("checkLocalAddr(metrics, %q, public %v) = %v, want ok %v", tc.addr, tc.public, err, tc.ok)
		}
		// --pprof takes what --metrics takes without --metrics-public.
		if tc.public {
			continue
		}
		if perr := checkLocalAddr("pprof", tc.addr, false); (perr == nil) != tc.ok {
			t.Errorf("checkLocalAddr(pprof, %q) = %v, want ok %v", tc.addr, perr, tc.ok)
		}
		if err != nil && !tc.public && strings.Contains(tc.addr, ":") && !strings.Contains(err.Error(), "--metrics-public") {
			t.Errorf("refusing %q does not say how to allow it: %v", tc.addr, err)
		}
	}
}

// TestMetricsEndpoint runs the daemon with --metrics on an ephemeral
// loopback port: it prints the address it bound, and /metrics there serves
// the text exposition format with the node's and the RPC server's metrics,
// the counters of a publish moved. A public address is refused before
// anything starts.
func TestMetricsEndpoint(t *testing.T) {
	c := newCluster(t)
	d, cl := c.start("a", "--metrics", "127.0.0.1:0")
	if d.Metrics == "" {
		t.Fatal("the daemon did not print its metrics address")
	}
	if _, err := cl.Publish(c.ctx, "post", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, "http://"+d.Metrics+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET /metrics: %s, Content-Type %q", resp.Status, ct)
	}
	text := string(body)
	for _, want := range []string{
		"# TYPE contextd_ebt_entries_received_total counter\n",
		"# TYPE contextd_swarm_fetch_duration_seconds histogram\n",
		"# TYPE contextd_flitlink_queue_delay_seconds histogram\n",
		"# TYPE contextd_contexts_delivery_latency_seconds histogram\n",
		"# TYPE contextd_store_commit_duration_seconds histogram\n",
		`contextd_rpc_calls_total{method="feed.publish"} 1` + "\n",
		`contextd_rpc_errors_total{method="feed.publish"} 0` + "\n",
		"\ngo_goroutines ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The publish was committed and synced.
	for _, name := range []string{"contextd_store_commit_duration_seconds_count", "contextd_store_sync_duration_seconds_count"} {
		_, rest, ok := strings.Cut(text, "\n"+name+" ")
		if v, _, _ := strings.Cut(rest, "\n"); !ok || v == "0" {
			t.Errorf("/metrics: %s is %q, want more than 0", name, v)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}

	out, err := exec.CommandContext(c.ctx, c.bin, "run", "--home", filepath.Join(c.dir, "b"), "--metrics", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a loopback address") {
		t.Fatalf("run --metrics 0.0.0.0:0: %v\n%s", err, out)
	}
}
