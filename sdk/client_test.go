package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

const testToken = "tok"

// killer is a listener that can cut every connection it accepted.
type killer struct {
	net.Listener
	mu    sync.Mutex // guards conns
	conns []net.Conn
}

func (l *killer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *killer) killAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

type env struct {
	node *rpctest.Node
	ln   *killer
	addr string
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newEnv runs the real rpc server with a fake node on 127.0.0.1.
func newEnv(t *testing.T) *env {
	t.Helper()
	n := rpctest.NewNode()
	srv := rpc.New(rpc.Config{Node: n, Token: testToken})
	ts := httptest.NewUnstartedServer(srv)
	ln := &killer{Listener: ts.Listener}
	ts.Listener = ln
	ts.Start()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	return &env{node: n, ln: ln, addr: strings.TrimPrefix(ts.URL, "http://")}
}

func (e *env) dial(t *testing.T, cfg Config) *Client {
	t.Helper()
	cfg.Addr = e.addr
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	cfg.Logger = logger(t)
	c, err := DialConfig(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialUnauthorized(t *testing.T) {
	e := newEnv(t)
	_, err := Dial(ctxT(t), e.addr, "wrong")
	var se *Error
	if !errors.As(err, &se) || se.Code != api.CodeUnauthorized || !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("err %v, want unauthorized", err)
	}
	t.Log(err)
	if _, err := Dial(ctxT(t), "127.0.0.1:1", testToken); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestCalls(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	self := rpctest.KeyFor(0).Public()
	other := rpctest.KeyFor(1).Public()

	info, err := c.Info(ctx)
	if err != nil || info.ID != self || len(info.Addrs) != 1 {
		t.Fatalf("Info %+v %v", info, err)
	}
	if peers, err := c.Peers(ctx); err != nil || len(peers) != 0 {
		t.Fatalf("Peers %v %v", peers, err)
	}
	if err := c.Connect(ctx, "bad"); !errors.Is(err, api.ErrInvalidParams) {
		t.Fatalf("Connect: %v", err)
	}
	if _, err := c.Head(ctx, self); !errors.Is(err, api.ErrUnknownFeed) {
		t.Fatalf("Head of empty feed: %v", err)
	}
	h1, err := c.PublishText(ctx, "", "hi")
	if err != nil || h1.Seq != 1 {
		t.Fatalf("PublishText %+v %v", h1, err)
	}
	h2, err := c.Publish(ctx, "bin", []byte{0, 0xff})
	if err != nil || h2.Seq != 2 {
		t.Fatalf("Publish %+v %v", h2, err)
	}
	if h, err := c.Head(ctx, self); err != nil || h != h2 {
		t.Fatalf("Head %+v %v", h, err)
	}
	es, err := c.Get(ctx, self, 0, 0)
	if err != nil || len(es) != 2 || es[0].Text != "hi" || es[1].Type != "bin" || es[1].Prev != h1.ID {
		t.Fatalf("Get %+v %v", es, err)
	}
	if h, err := c.Follow(ctx, other); err != nil || h.Seq != 3 {
		t.Fatalf("Follow %+v %v", h, err)
	}
	if g, err := c.Graph(ctx); err != nil || len(g.Follows) != 1 || g.Follows[0] != other {
		t.Fatalf("Graph %+v %v", g, err)
	}
	for _, f := range []func(context.Context, feed.ID) (api.Head, error){c.Unfollow, c.Block, c.Unblock} {
		if _, err := f(ctx, other); err != nil {
			t.Fatal(err)
		}
	}
	if p, err := c.Progress(ctx); err != nil || p.Target != 3 {
		t.Fatalf("Progress %+v %v", p, err)
	}
	if fs, err := c.Feeds(ctx); err != nil || len(fs) != 1 || fs[0].ID != self || fs[0].Local != 6 {
		t.Fatalf("Feeds %+v %v", fs, err)
	}
	if ps, err := c.EBTPeers(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("EBTPeers %+v %v", ps, err)
	}

	_, err = c.Publish(ctx, "", make([]byte, feed.MaxBodySize+1))
	var se *Error
	if !errors.As(err, &se) || se.Code != api.CodeTooLarge || se.Method != api.MethodFeedPublish || !errors.Is(err, feed.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	t.Log(err)
	if err := c.Call(ctx, "no.such", nil, nil); !errors.As(err, &se) || se.Code != api.CodeMethodNotFound {
		t.Fatalf("unknown method: %v", err)
	}
}

func TestCallWaitsForReconnect(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	for range 3 {
		e.ln.killAll()
		var err error
		for {
			// A call racing the drop may fail with ErrDisconnected; the
			// next one waits for the new connection.
			if _, err = c.Info(ctxT(t)); !errors.Is(err, ErrDisconnected) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// expect reads entries from..to from s, in order.
func expect(t *testing.T, s *Subscription, from, to uint64) {
	t.Helper()
	ctx := ctxT(t)
	for seq := from; seq <= to; seq++ {
		e, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next (want seq %d): %v", seq, err)
		}
		if e.Seq != seq {
			t.Fatalf("got seq %d, want %d", e.Seq, seq)
		}
	}
}

func TestSubscribeResumesAcrossDrops(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	key := rpctest.KeyFor(1)
	appendN := func(n int) {
		for range n {
			if _, err := e.node.Append(key, "post", []byte("x")); err != nil {
				t.Error(err)
			}
		}
	}
	appendN(10)
	s, err := c.Subscribe(ctxT(t), key.Public(), 3)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, 4, 10)

	// Drop the connection while entries are appended; then several
	// times mid-stream.
	e.ln.killAll()
	appendN(20)
	expect(t, s, 11, 20)
	for i := range 5 {
		var wg sync.WaitGroup
		wg.Go(func() { appendN(20) })
		e.ln.killAll()
		from := uint64(31 + 20*i)
		expect(t, s, from-10, from+9)
		wg.Wait()
	}
	expect(t, s, 121, 130)
	if s.Cursor() != 130 {
		t.Fatalf("cursor %d", s.Cursor())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	// The server released the subscription.
	if _, err := c.Info(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := e.node.Watches(); n != 0 {
		t.Fatalf("%d watches after Close", n)
	}
}

func TestSlowSubscriber(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{SubBuffer: 4})
	key := rpctest.KeyFor(2)
	for range 100 {
		e.node.Append(key, "post", []byte("x"))
	}
	s, err := c.Subscribe(ctxT(t), key.Public(), 0)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, 1, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 100 {
			e.node.Append(key, "post", []byte("y"))
		}
	})
	expect(t, s, 101, 200)
	wg.Wait()
}

func TestClientClose(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	s, err := c.Subscribe(ctxT(t), rpctest.KeyFor(1).Public(), 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		got <- err
	}()
	c.Close()
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next: %v", err)
	}
	if _, err := c.Info(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Info after Close: %v", err)
	}
	if _, err := c.Subscribe(ctxT(t), rpctest.KeyFor(1).Public(), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}

func TestSubscriptionEndedByServer(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	key := rpctest.KeyFor(1)
	e.node.Append(key, "post", []byte("a"))
	s, err := c.Subscribe(ctxT(t), key.Public(), 0)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, s, 1, 1)
	e.node.SetEntriesError(fmt.Errorf("store: %w", api.ErrForked))
	e.node.Append(key, "post", []byte("b"))
	_, err = s.Next(ctxT(t))
	var se *Error
	if !errors.As(err, &se) || se.Code != api.CodeForked || !errors.Is(err, api.ErrForked) {
		t.Fatalf("Next: %v, want forked", err)
	}
}
