package memlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

func id(i int) feed.ID { return feed.ID{byte(i >> 8), byte(i), 0xee} }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	t.Cleanup(cancel)
	return ctx
}

// connect dials a→b and returns both links, closed at the end of the test.
func connect(t *testing.T, n *Network, a, b feed.ID) (la, lb *flitlink.Link) {
	t.Helper()
	ctx := testCtx(t)
	eb := n.Endpoint(b)
	la, err := n.Endpoint(a).Dial(ctx, b)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	lb, err = eb.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	t.Cleanup(func() {
		la.Close()
		lb.Close()
	})
	if la.Remote() != b || lb.Remote() != a || !la.Initiator() || lb.Initiator() {
		t.Fatalf("remote/initiator wrong")
	}
	return la, lb
}

func circuit(t *testing.T, la, lb *flitlink.Link, class flitlink.Class) (ca, cb *flitlink.Circuit) {
	t.Helper()
	ctx := testCtx(t)
	ca, err := la.Open(ctx, "test", class)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	cb, err = lb.Accept(ctx)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return ca, cb
}

func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lat = 10 * time.Millisecond
		ctx := testCtx(t)
		n := NewNetwork(Config{Latency: lat})
		start := time.Now()
		la, lb := connect(t, n, id(1), id(2))
		ca, cb := circuit(t, la, lb, flitlink.Voice)
		// hello (1 latency), then OPEN and ACCEPT (2 more).
		if d := time.Since(start); d != 3*lat {
			t.Errorf("Open took %v, want %v", d, 3*lat)
		}
		for i, dir := range [][2]*flitlink.Circuit{{ca, cb}, {cb, ca}, {ca, cb}} {
			t0 := time.Now()
			if err := dir[0].Send(ctx, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if got, err := dir[1].Recv(ctx); err != nil || string(got) != "ping" {
				t.Fatalf("Recv = %q, %v", got, err)
			}
			if d := time.Since(t0); d != lat {
				t.Errorf("message %d took %v, want %v", i, d, lat)
			}
		}
	})
}

func TestBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lat, bw = 5 * time.Millisecond, 1_000_000
		ctx := testCtx(t)
		// No keepalives: they would share the serialiser with the test's bytes.
		n := NewNetwork(Config{Latency: lat, Bandwidth: bw, Link: flitlink.Config{KeepAlive: time.Hour}})
		la, lb := connect(t, n, id(1), id(2))
		ca, cb := circuit(t, la, lb, flitlink.Data)
		for _, size := range []int{10_000, 1 << 20} {
			msg := bytes.Repeat([]byte{7}, size)
			t0 := time.Now()
			errc := make(chan error, 1)
			go func() { errc <- ca.Send(ctx, msg) }()
			if got, err := cb.Recv(ctx); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("Recv = %d bytes, %v", len(got), err)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			wire := flitlink.LengthSize + size
			want := lat + time.Duration(wire)*time.Second/bw
			if d := time.Since(t0); d != want {
				t.Errorf("%d bytes took %v, want %v", size, d, want)
			}
		}
	})
}

// TestSharedBandwidth: streams of one link share its bandwidth piece by
// piece, so a small message waits for at most a piece of another stream's
// bulk.
func TestSharedBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lat, bw = 5 * time.Millisecond, 1 << 20
		ctx := testCtx(t)
		n := NewNetwork(Config{Latency: lat, Bandwidth: bw})
		la, lb := connect(t, n, id(1), id(2))
		bulk, _ := circuit(t, la, lb, flitlink.Data)
		chatA, chatB := circuit(t, la, lb, flitlink.Voice)
		go bulk.Send(ctx, make([]byte, 1<<20)) // a second of bulk, unread
		time.Sleep(100 * time.Millisecond)
		t0 := time.Now()
		if err := chatA.Send(ctx, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := chatB.Recv(ctx); err != nil {
			t.Fatal(err)
		}
		piece := time.Duration(16<<10) * time.Second / bw
		if d := time.Since(t0); d > lat+piece+time.Millisecond {
			t.Errorf("a small message took %v behind bulk, want ≤ %v", d, lat+piece+time.Millisecond)
		}
	})
}

// TestStall: a stalled stream's bytes arrive when the stall ends; the
// link's other streams are not held back.
func TestStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lat = 5 * time.Millisecond
		ctx := testCtx(t)
		n := NewNetwork(Config{Latency: lat})
		la, lb := connect(t, n, id(1), id(2))
		c1a, c1b := circuit(t, la, lb, flitlink.Data)  // stream 1
		c2a, c2b := circuit(t, la, lb, flitlink.Voice) // stream 2
		n.Stall(id(1), id(2), 1, time.Second)
		t0 := time.Now()
		for _, c := range []*flitlink.Circuit{c1a, c2a} {
			if err := c.Send(ctx, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c2b.Recv(ctx); err != nil || time.Since(t0) != lat {
			t.Fatalf("unstalled stream: %v after %v", err, time.Since(t0))
		}
		if _, err := c1b.Recv(ctx); err != nil || time.Since(t0) != time.Second {
			t.Fatalf("stalled stream: %v after %v, want 1s", err, time.Since(t0))
		}
		// The other direction of the stalled stream was never held.
		t0 = time.Now()
		if err := c1b.Send(ctx, []byte("y")); err != nil {
			t.Fatal(err)
		}
		if _, err := c1a.Recv(ctx); err != nil || time.Since(t0) != lat {
			t.Fatalf("reverse direction: %v after %v", err, time.Since(t0))
		}
	})
}

func TestCutAndHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		n := NewNetwork(Config{Latency: time.Millisecond})
		a, b, c := id(1), id(2), id(3)
		la, lb := connect(t, n, a, b)
		lc, _ := connect(t, n, a, c)
		ca, _ := circuit(t, la, lb, flitlink.Data)
		errc := make(chan error, 1)
		go func() { _, err := ca.Recv(ctx); errc <- err }()
		synctest.Wait()

		t0 := time.Now()
		n.Cut(b, a)
		if err := <-errc; !errors.Is(err, ErrCut) {
			t.Fatalf("Recv after Cut: %v", err)
		}
		<-lb.Done()
		if time.Since(t0) != 0 || !errors.Is(lb.Err(), ErrCut) {
			t.Errorf("b's link died after %v with %v", time.Since(t0), lb.Err())
		}
		if lc.Err() != nil {
			t.Errorf("link a–c died: %v", lc.Err())
		}
		if _, err := n.Endpoint(a).Dial(ctx, b); !errors.Is(err, ErrCut) {
			t.Errorf("Dial a→b after Cut: %v", err)
		}
		if _, err := n.Endpoint(b).Dial(ctx, a); !errors.Is(err, ErrCut) {
			t.Errorf("Dial b→a after Cut: %v", err)
		}
		n.Heal(a, b)
		la2, lb2 := connect(t, n, b, a)
		c1, c2 := circuit(t, la2, lb2, flitlink.Voice)
		if err := c1.Send(ctx, []byte("healed")); err != nil {
			t.Fatal(err)
		}
		if got, err := c2.Recv(ctx); err != nil || string(got) != "healed" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
	})
}

func TestEndpointClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		n := NewNetwork(Config{Latency: time.Millisecond})
		a, b := id(1), id(2)
		la, _ := connect(t, n, a, b)
		eb := n.Endpoint(b)
		// One link waits in b's backlog when b goes away.
		pending, err := n.Endpoint(a).Dial(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		defer pending.Close()
		eb.Close()
		<-la.Done()
		<-pending.Done()
		if !errors.Is(la.Err(), ErrClosed) {
			t.Errorf("live link died with %v", la.Err())
		}
		if _, err := eb.Accept(ctx); !errors.Is(err, ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
		if _, err := eb.Dial(ctx, a); !errors.Is(err, ErrClosed) {
			t.Errorf("Dial from a closed endpoint: %v", err)
		}
		if _, err := n.Endpoint(a).Dial(ctx, b); !errors.Is(err, ErrUnreachable) {
			t.Errorf("Dial to a closed endpoint: %v", err)
		}
		if _, err := n.Endpoint(a).Dial(ctx, id(99)); !errors.Is(err, ErrUnreachable) {
			t.Errorf("Dial to an unknown endpoint: %v", err)
		}
		connect(t, n, a, b) // a new endpoint for b
	})
}

// Stream-level behaviour: order, buffer backpressure, EOF after the data,
// reset.
func TestPipe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lat = 3 * time.Millisecond
		c := newConn(Config{Latency: lat, Buffer: 10}, id(1), id(2), nil)
		w, r := c.streams[0].end(0), c.streams[0].end(1)
		t0 := time.Now()
		if _, err := w.Write([]byte("0123456789")); err != nil {
			t.Fatal(err)
		}
		wrote := make(chan struct{})
		go func() {
			w.Write([]byte("abc")) // blocks: 10 bytes unread
			w.CloseWrite()
			close(wrote)
		}()
		synctest.Wait()
		select {
		case <-wrote:
			t.Fatal("Write over the buffer did not block")
		default:
		}
		buf := make([]byte, 4)
		var got []byte
		for {
			k, err := r.Read(buf)
			got = append(got, buf[:k]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		<-wrote
		if string(got) != "0123456789abc" {
			t.Errorf("read %q", got)
		}
		// The second write went out when the first was read (at lat).
		if d := time.Since(t0); d != 2*lat {
			t.Errorf("EOF after %v, want %v", d, 2*lat)
		}
		if _, err := w.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("Write after CloseWrite: %v", err)
		}
		// Half-closed: the other direction still works.
		if _, err := r.Write([]byte("back")); err != nil {
			t.Fatal(err)
		}
		if k, err := w.Read(buf); err != nil || string(buf[:k]) != "back" {
			t.Fatalf("Read = %q, %v", buf[:k], err)
		}
		// A deadline interrupts a blocked Read.
		w.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := w.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read past its deadline: %v", err)
		}
		r.Reset()
		if _, err := w.Read(buf); !errors.Is(err, ErrReset) {
			t.Errorf("Read after Reset: %v", err)
		}
		if _, err := r.Write([]byte("x")); !errors.Is(err, ErrReset) {
			t.Errorf("Write after Reset: %v", err)
		}
	})
}

// A thousand endpoints in a ring, each sending one message to the next.
func TestManyEndpoints(t *testing.T) {
	const nodes = 1000
	start := time.Now()
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		n := NewNetwork(Config{Latency: 20 * time.Millisecond, Bandwidth: 10 << 20})
		eps := make([]*Endpoint, nodes)
		for i := range eps {
			eps[i] = n.Endpoint(id(i))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2*nodes)
		var links sync.Map
		for i := range nodes {
			wg.Go(func() {
				l, err := eps[i].Dial(ctx, id((i+1)%nodes))
				if err != nil {
					errs <- err
					return
				}
				links.Store(l, true)
				c, err := l.Open(ctx, "ring", flitlink.Data)
				if err == nil {
					err = c.Send(ctx, []byte(fmt.Sprint(i)))
				}
				if err != nil {
					errs <- err
				}
			})
			wg.Go(func() {
				l, err := eps[i].Accept(ctx)
				if err != nil {
					errs <- err
					return
				}
				links.Store(l, true)
				c, err := l.Accept(ctx)
				if err != nil {
					errs <- err
					return
				}
				got, err := c.Recv(ctx)
				if want := fmt.Sprint((i + nodes - 1) % nodes); err != nil || string(got) != want {
					errs <- fmt.Errorf("node %d got %q, %v; want %q", i, got, err, want)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		links.Range(func(l, _ any) bool {
			l.(*flitlink.Link).Close()
			return true
		})
	})
	t.Logf("%d endpoints, %d links: %v real time", nodes, nodes, time.Since(start))
}
