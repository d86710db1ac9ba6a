package sdk

import (
	"errors"
	"testing"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

func TestPing(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	// The fake answers KeyFor(1) only: ping i takes i+1 ms, every tenth unanswered.
	r, err := c.Ping(ctx, api.PingParams{Peer: rpctest.KeyFor(1).Public(), Count: 3, IntervalMs: 1})
	if err != nil || r.Sent != 3 || r.Received != 3 || len(r.RTTsUs) != 3 || r.MaxUs != 3000 {
		t.Fatalf("Ping %+v %v", r, err)
	}
	if _, err := c.Ping(ctx, api.PingParams{Peer: rpctest.KeyFor(2).Public()}); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("Ping of an unreachable peer: %v", err)
	}
	if _, err := c.Ping(ctx, api.PingParams{Peer: rpctest.KeyFor(1).Public(), Size: api.MaxPingSize + 1}); !errors.Is(err, api.ErrInvalidParams) {
		t.Fatalf("Ping too large: %v", err)
	}
}
