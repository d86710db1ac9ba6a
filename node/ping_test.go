package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// TestPing: a node pings a peer it has a link to on a ping/1 circuit;
// every ping gets its reply; bad arguments and an unreachable peer are
// refused with the API's sentinels.
func TestPing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)
	if err := a.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	rtts, err := a.Ping(ctx, b.ID(), 1024, 5, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(rtts) != 5 {
		t.Fatalf("%d round trips, want 5", len(rtts))
	}
	for i, d := range rtts {
		if d <= 0 {
			t.Errorf("ping %d: no reply (%v)", i, d)
		}
	}
	// The largest ping goes through too.
	if rtts, err := b.Ping(ctx, a.ID(), api.MaxPingSize, 1, time.Millisecond); err != nil || rtts[0] <= 0 {
		t.Fatalf("ping of %d bytes: %v %v", api.MaxPingSize, rtts, err)
	}

	for _, c := range []struct {
		size, count int
		interval    time.Duration
	}{
		{0, 1, time.Millisecond},
		{api.MaxPingSize + 1, 1, time.Millisecond},
		{1, 0, time.Millisecond},
		{1, api.MaxPingCount + 1, time.Millisecond},
		{1, 1, time.Microsecond},
	} {
		if _, err := a.Ping(ctx, b.ID(), c.size, c.count, c.interval); !errors.Is(err, api.ErrInvalidParams) {
			t.Errorf("ping %+v: %v, want invalid params", c, err)
		}
	}
	if _, err := a.Ping(ctx, a.ID(), 1, 1, time.Millisecond); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("ping self: %v", err)
	}
}
