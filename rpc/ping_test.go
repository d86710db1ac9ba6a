package rpc

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

func TestNodePing(t *testing.T) {
	e := newEnv(t, Config{})
	peer := rpctest.KeyFor(1).Public()

	// The fake's ping i takes i+1 ms, every tenth unanswered.
	r := result[api.PingResult](t, e.call(t, api.MethodNodePing, api.PingParams{Peer: peer, Count: 20, Size: 1024, IntervalMs: 5}))
	want := api.PingResult{Peer: peer, Size: 1024, Sent: 20, Received: 18,
		MinUs: 1000, AvgUs: 10000, P50Us: 9000, P99Us: 18000, MaxUs: 19000}
	if len(r.RTTsUs) != 20 || r.RTTsUs[0] != 1000 || r.RTTsUs[9] != -1 || r.RTTsUs[19] != -1 {
		t.Fatalf("samples %v", r.RTTsUs)
	}
	r.RTTsUs = nil
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("node.ping: %+v, want %+v", r, want)
	}

	// Defaults, and the summary alone.
	r = result[api.PingResult](t, e.call(t, api.MethodNodePing, api.PingParams{Peer: peer, Summary: true}))
	if r.Sent != api.DefaultPingCount || r.Size != api.DefaultPingSize || r.RTTsUs != nil || r.Received != 9 {
		t.Fatalf("node.ping with defaults: %+v", r)
	}

	for _, c := range []struct {
		p    api.PingParams
		code api.Code
		msg  string
	}{
		{api.PingParams{}, api.CodeInvalidParams, `"peer"`},
		{api.PingParams{Peer: peer, Size: api.MaxPingSize + 1}, api.CodeInvalidParams, `"size"`},
		{api.PingParams{Peer: peer, Size: -1}, api.CodeInvalidParams, `"size"`},
		{api.PingParams{Peer: peer, Count: api.MaxPingCount + 1}, api.CodeInvalidParams, `"count"`},
		{api.PingParams{Peer: peer, IntervalMs: -1}, api.CodeInvalidParams, `"intervalMs"`},
		{api.PingParams{Peer: peer, IntervalMs: api.MaxPingInterval + 1}, api.CodeInvalidParams, `"intervalMs"`},
		{api.PingParams{Peer: rpctest.KeyFor(2).Public()}, api.CodeUnavailable, "no link"},
	} {
		wantCode(t, e.call(t, api.MethodNodePing, c.p), c.code, c.msg)
	}
	if methods[api.MethodNodePing].scope != api.ScopeAdmin {
		t.Fatal("node.ping is not admin-only")
	}
}

func TestPingSummary(t *testing.T) {
	r := pingSummary(nil)
	if r.Sent != 0 || r.Received != 0 || len(r.RTTsUs) != 0 {
		t.Fatalf("no pings: %+v", r)
	}
	r = pingSummary(slices.Repeat([]time.Duration{-1}, 3))
	if r.Sent != 3 || r.Received != 0 || r.MaxUs != 0 {
		t.Fatalf("no replies: %+v", r)
	}
}
