package swarm_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/swarm"
)

// servePair opens a swarm/1 circuit from node 0 to node 1 and runs Serve of
// o on node 1 under cfg (Info filled in); it returns node 0's end and
// what Serve returns.
func servePair(t *testing.T, ctx context.Context, o testObject, cfg swarm.ServeConfig) (swarm.Conn, <-chan error) {
	t.Helper()
	return serveWrapped(t, ctx, o.seederStore(t), o, cfg, func(c swarm.Conn) swarm.Conn { return c })
}

// serveWrapped is servePair with src as the source and Serve's end of the
// circuit wrapped by wrap.
func serveWrapped(t *testing.T, ctx context.Context, src swarm.ObjectSource, o testObject, cfg swarm.ServeConfig, wrap func(swarm.Conn) swarm.Conn) (swarm.Conn, <-chan error) {
	t.Helper()
	sn := newSwarmNet(memlink.Config{Latency: time.Millisecond})
	ep := sn.net.Endpoint(nodeID(1))
	la, err := sn.net.Endpoint(nodeID(0)).Dial(ctx, nodeID(1))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := ep.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { la.Close(); lb.Close() })
	c, err := la.Open(ctx, swarm.Service, flitlink.Data)
	if err != nil {
		t.Fatal(err)
	}
	s, err := lb.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Info = o.info
	done := make(chan error, 1)
	go func() { done <- swarm.Serve(ctx, wrap(s), src, cfg) }()
	return c, done
}

var testPolicy = limit.Policy{Strikes: 3, Forgive: 10 * time.Second, Cooldown: time.Minute}

// TestServeUnrequestedData: a peer that keeps sending a seeder chunks is
// tolerated for Policy.Strikes messages, then dropped with ErrAbuse.
func TestServeUnrequestedData(t *testing.T) {
	o := newObject(t, 64<<10, 1024)
	hs := swarm.Handshake{Capability: 1, ObjectID: o.id.Bytes(), Hash: object.SHA256, ChunkSize: 1024, Size: 64 << 10}
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		lim := swarm.NewLimiter(swarm.Limits{Policy: testPolicy})
		c, done := servePair(t, ctx, o, swarm.ServeConfig{Limiter: lim, Peer: nodeID(0)})
		c.Send(ctx, hs.Append(nil))
		junk := swarm.Data{Bin: object.ChunkBin(0), Data: make([]byte, 1024)}.Append(nil)
		for range testPolicy.Strikes {
			c.Send(ctx, junk)
		}
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Serve ended within the strikes: %v", err)
		default:
		}
		c.Send(ctx, junk)
		if err := <-done; !errors.Is(err, swarm.ErrAbuse) {
			t.Fatalf("Serve = %v, want ErrAbuse", err)
		}
	})
}

// TestServeRequestRate: a peer over its rate of requests is slowed to it,
// not dropped.
func TestServeRequestRate(t *testing.T) {
	o := newObject(t, 64<<10, 1024)
	hs := swarm.Handshake{Capability: 1, ObjectID: o.id.Bytes(), Hash: object.SHA256, ChunkSize: 1024, Size: 64 << 10}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		lim := swarm.NewLimiter(swarm.Limits{RequestsPerSec: 16, Policy: testPolicy})
		c, done := servePair(t, ctx, o, swarm.ServeConfig{Limiter: lim, Peer: nodeID(0), MaxRequests: 16})
		c.Send(ctx, hs.Append(nil))
		start := time.Now()
		// 64 chunks at 16 a second with a burst of 16: the last request
		// is queued 3 s after the first.
		for k := range uint64(4) {
			c.Send(ctx, swarm.Request{Ranges: []swarm.Range{{First: 16 * k, Last: 16*k + 15}}}.Append(nil))
			for n := 0; n < 16; {
				b, err := c.RecvBuffer(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				if b[0] == byte(swarm.TypeData) {
					n++
				}
			}
		}
		if d := time.Since(start); d < 3*time.Second || d > 3*time.Second+100*time.Millisecond {
			t.Errorf("64 chunks at 16/s took %v, want about 3s", d)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("a slowed peer's session ended with %v", err)
		}
	})
}

// TestServeHonestFetch: a whole fetch under the default limits is neither
// slowed nor struck.
func TestServeHonestFetch(t *testing.T) {
	o := newObject(t, 4<<20, 16<<10)
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		lim := swarm.NewLimiter(swarm.Limits{})
		c, done := servePair(t, ctx, o, swarm.ServeConfig{Limiter: lim, Peer: nodeID(0)})
		sink := newSink(t, o)
		if _, err := swarm.Fetch(ctx, o.info, peersOf(c), sink, swarm.FetchConfig{}); err != nil {
			t.Fatal(err)
		}
		sink.check(t)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("an honest fetch's session ended with %v", err)
		}
	})
}
