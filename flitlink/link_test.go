package flitlink_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
)

var lat = memlink.Config{Latency: time.Millisecond}

func TestOpenAcceptSendRecv(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, lat, flitlink.Config{}, flitlink.Config{})
		if !a.Initiator() || b.Initiator() || a.Remote() != idB || b.Remote() != idA {
			t.Fatalf("initiator/remote: %v %v %v %v", a.Initiator(), b.Initiator(), a.Remote(), b.Remote())
		}
		ca, cb := openPair(t, a, b, "echo/1", flitlink.Voice)
		for i, msg := range [][]byte{[]byte("hello"), {}, pattern(1, 3000), pattern(2, 1<<20)} {
			errc := make(chan error, 1)
			go func() { errc <- ca.Send(ctx, msg) }()
			got, err := cb.Recv(ctx)
			if err != nil || !bytes.Equal(got, msg) || got == nil {
				t.Fatalf("Recv %d = %d bytes, %v; want %d bytes", i, len(got), err, len(msg))
			}
			if err := <-errc; err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		// The acceptor opens too, and replies flow back.
		cb2, ca2 := openPair(t, b, a, "back", flitlink.Data)
		if err := ca2.Send(ctx, []byte("reply")); err != nil {
			t.Fatal(err)
		}
		if got, err := cb2.Recv(ctx); err != nil || string(got) != "reply" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
		// Half-close: b reads EOF after the last message, and can still send.
		if err := ca.Send(ctx, []byte("last")); err != nil {
			t.Fatal(err)
		}
		ca.CloseWrite()
		if err := ca.Send(ctx, []byte("x")); !errors.Is(err, flitlink.ErrCircuitClosed) {
			t.Fatalf("Send after CloseWrite: %v", err)
		}
		if got, err := cb.Recv(ctx); err != nil || string(got) != "last" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
		if _, err := cb.Recv(ctx); err != io.EOF {
			t.Fatalf("Recv after the peer's end: %v, want io.EOF", err)
		}
		if err := cb.Send(ctx, []byte("after")); err != nil {
			t.Fatal(err)
		}
		if got, err := ca.Recv(ctx); err != nil || string(got) != "after" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
		cb.CloseWrite()
		if _, err := ca.Recv(ctx); err != io.EOF {
			t.Fatalf("Recv: %v, want io.EOF", err)
		}
		for _, c := range []*flitlink.Circuit{ca, cb, ca2, cb2} {
			c.Close()
		}
		time.Sleep(time.Second) // each side reads the other's end
		synctest.Wait()
		for _, l := range []*flitlink.Link{a, b} {
			if lo, re := l.OpenCounts(); lo != 0 || re != 0 {
				t.Errorf("open counts %d, %d after every circuit closed", lo, re)
			}
		}
		checkAlive(t, a, b)
	})
}

func TestBadOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, _ := newPair(t, lat, flitlink.Config{}, flitlink.Config{})
		for _, tc := range []struct {
			service string
			class   flitlink.Class
		}{{"", flitlink.Data}, {string(make([]byte, flitlink.MaxServiceLen+1)), flitlink.Data}, {"\xff", flitlink.Data}, {"ok", 4}} {
			if _, err := a.Open(testCtx(t), tc.service, tc.class); !errors.Is(err, flitlink.ErrBadService) {
				t.Errorf("Open(%q, %d) = %v", tc.service, tc.class, err)
			}
		}
	})
}

// TestMessageSize: Send refuses what the smaller of both maxima forbids.
func TestMessageSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, lat, flitlink.Config{MaxMessageSize: 1 << 20}, flitlink.Config{MaxMessageSize: 1000})
		ca, cb := openPair(t, a, b, "s", flitlink.Data)
		if err := ca.Send(ctx, make([]byte, 1001)); !errors.Is(err, flitlink.ErrTooLarge) {
			t.Fatalf("Send over the peer's maximum: %v", err)
		}
		if err := ca.Send(ctx, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if got, err := cb.Recv(ctx); err != nil || len(got) != 1000 {
			t.Fatalf("Recv = %d bytes, %v", len(got), err)
		}
		if err := cb.Send(ctx, make([]byte, 1001)); !errors.Is(err, flitlink.ErrTooLarge) {
			t.Fatalf("Send over its own maximum: %v", err)
		}
	})
}

// TestRecvBuffer: a message that fits the buffer given is read into it;
// a larger one, or an empty one, into a buffer of its own.
func TestRecvBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, lat, flitlink.Config{}, flitlink.Config{})
		ca, cb := openPair(t, a, b, "s", flitlink.Data)
		buf := make([]byte, 100)
		for _, m := range [][]byte{pattern(1, 100), pattern(2, 40), pattern(3, 101), {}} {
			if err := ca.Send(ctx, m); err != nil {
				t.Fatal(err)
			}
			got, err := cb.RecvBuffer(ctx, buf)
			if err != nil || !bytes.Equal(got, m) {
				t.Fatalf("RecvBuffer = %d bytes, %v; want %d bytes", len(got), err, len(m))
			}
			if in := len(m) > 0 && len(m) <= cap(buf); in != (len(got) > 0 && &got[0] == &buf[0]) {
				t.Errorf("a %d-byte message: read into the %d-byte buffer: %t, want %t", len(m), cap(buf), !in, in)
			}
		}
	})
}

func TestRefuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, lat, flitlink.Config{}, flitlink.Config{AcceptBacklog: 1})
		if _, err := a.Open(ctx, "first", flitlink.Data); err != nil {
			t.Fatal(err)
		}
		_, err := a.Open(ctx, "second", flitlink.Data)
		var re *flitlink.RefusedError
		if !errors.Is(err, flitlink.ErrRefused) || !errors.As(err, &re) || re.Reason != flitlink.RefuseBacklogFull || re.Service != "second" {
			t.Fatalf("Open over the backlog: %v", err)
		}
		if c, err := b.Accept(ctx); err != nil || c.Service() != "first" {
			t.Fatalf("Accept = %v, %v", c, err)
		}
		if _, err := a.Open(ctx, "third", flitlink.Data); err != nil {
			t.Fatalf("Open once the backlog has room: %v", err)
		}
		synctest.Wait()
		if lo, _ := a.OpenCounts(); lo != 2 {
			t.Errorf("a has %d circuits open, want 2 (the refused one is not counted)", lo)
		}
	})
}

// TestSlowReader: a reader that stops reading stops its sender (the
// stream's flow control), and other circuits of the link go on.
func TestSlowReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, memlink.Config{Latency: time.Millisecond, Buffer: 64 << 10}, flitlink.Config{}, flitlink.Config{})
		ca, cb := openPair(t, a, b, "bulk", flitlink.Data)
		sent := make(chan int, 100)
		go func() {
			for i := range 100 {
				if ca.Send(ctx, pattern(i, 16<<10)) != nil {
					return
				}
				sent <- i
			}
		}()
		synctest.Wait()
		if n := len(sent); n > 6 {
			t.Fatalf("%d messages of 16 KiB sent into a 64 KiB buffer nobody reads", n)
		}
		other, peer := openPair(t, a, b, "chat", flitlink.Voice)
		if err := other.Send(ctx, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if got, err := peer.Recv(ctx); err != nil || string(got) != "still here" {
			t.Fatalf("Recv on another circuit = %q, %v", got, err)
		}
		for i := range 100 {
			got, err := cb.Recv(ctx)
			if err != nil || !bytes.Equal(got, pattern(i, 16<<10)) {
				t.Fatalf("Recv %d: %d bytes, %v", i, len(got), err)
			}
		}
	})
}

// TestNoHeadOfLineBlocking (issue 11, acceptance 3): while the bytes of a
// bulk circuit are held back (memlink's stall: a lost packet), a control
// message on another circuit overtakes them; the bulk bytes arrive after.
func TestNoHeadOfLineBlocking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 10 * time.Millisecond
		ctx := testCtx(t)
		n, a, b := networkPair(t, ctx, memlink.Config{Latency: delay, Bandwidth: 10 << 20})
		bulkA, bulkB := openPair(t, a, b, "swarm/1", flitlink.Data) // stream 1
		ctlA, ctlB := openPair(t, a, b, "ctl", flitlink.Control)    // stream 2

		const stall = time.Second
		n.Stall(idA, idB, 1, stall)
		t0 := time.Now()
		got := make(chan time.Time, 1)
		go func() {
			for i := range 8 {
				if err := bulkA.Send(ctx, pattern(i, 64<<10)); err != nil {
					t.Errorf("bulk Send %d: %v", i, err)
					return
				}
			}
		}()
		go func() {
			if _, err := bulkB.Recv(ctx); err != nil {
				t.Errorf("bulk Recv: %v", err)
			}
			got <- time.Now()
		}()
		if err := ctlA.Send(ctx, []byte("urgent")); err != nil {
			t.Fatal(err)
		}
		if m, err := ctlB.Recv(ctx); err != nil || string(m) != "urgent" {
			t.Fatalf("control Recv = %q, %v", m, err)
		}
		if d := time.Since(t0); d > 3*delay {
			t.Errorf("the control message took %v behind a stalled bulk stream, want ≤ %v", d, 3*delay)
		}
		select {
		case at := <-got:
			t.Fatalf("bulk arrived after %v, during its stall", at.Sub(t0))
		default:
		}
		if d := (<-got).Sub(t0); d < stall {
			t.Errorf("bulk arrived after %v, before its stall of %v ended", d, stall)
		}
		checkAlive(t, a, b)
	})
}

// TestKeepAlive: an idle link lives on keepalives; a link that hears
// nothing for DeadAfter dies with ErrTimeout.
func TestKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 20 * time.Millisecond
		ctx := testCtx(t)
		n, a, b := networkPair(t, ctx, memlink.Config{Latency: delay})
		time.Sleep(10 * time.Second)
		if a.Err() != nil || b.Err() != nil {
			t.Fatalf("idle links died: %v, %v", a.Err(), b.Err())
		}
		// Silence from b: a's control stream is held back for longer
		// than DeadAfter.
		n.Stall(idB, idA, 0, time.Hour)
		t0 := time.Now()
		<-a.Done()
		d := time.Since(t0)
		if err := a.Err(); !errors.Is(err, flitlink.ErrTimeout) || !errors.Is(err, flitlink.ErrLinkClosed) {
			t.Fatalf("a died of %v, want ErrTimeout", err)
		}
		// The last keepalive arrived at most KeepAlive before the stall.
		if lo, hi := flitlink.DefaultDeadAfter-flitlink.DefaultKeepAlive, flitlink.DefaultDeadAfter; d < lo || d > hi {
			t.Errorf("a died %v after the silence began, want within [%v, %v]", d, lo, hi)
		}
		<-b.Done() // a's death reset the session
	})
}

func TestLinkClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, memlink.Config{Latency: time.Millisecond, Buffer: 1 << 10}, flitlink.Config{}, flitlink.Config{})
		ca, _ := openPair(t, a, b, "s", flitlink.Data)
		errs := make(chan error, 4)
		go func() { _, err := b.Accept(ctx); errs <- err }()
		go func() { _, err := ca.Recv(ctx); errs <- err }()
		go func() { errs <- ca.Send(ctx, make([]byte, 64<<10)) }() // stalls on flow control
		synctest.Wait()
		a.Close()
		go func() { _, err := a.Open(ctx, "late", flitlink.Data); errs <- err }()
		for range 4 {
			if err := <-errs; !errors.Is(err, flitlink.ErrLinkClosed) {
				t.Errorf("blocked call returned %v, want ErrLinkClosed", err)
			}
		}
		if err := a.Err(); !errors.Is(err, flitlink.ErrLinkClosed) || !errors.Is(err, flitlink.ErrLocalClose) {
			t.Errorf("a.Err() = %v", err)
		}
		<-b.Done()
		if err := b.Err(); !errors.Is(err, flitlink.ErrLinkClosed) || !errors.Is(err, memlink.ErrReset) {
			t.Errorf("b.Err() = %v", err)
		}
	})
}

// TestCircuitClose: Close interrupts this side and ends the peer's reads
// cleanly; what the peer still sends is discarded, not blocked.
func TestCircuitClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, memlink.Config{Latency: time.Millisecond, Buffer: 4 << 10}, flitlink.Config{}, flitlink.Config{})
		ca, cb := openPair(t, a, b, "s", flitlink.Data)
		if err := ca.Send(ctx, []byte("dropped")); err != nil {
			t.Fatal(err)
		}
		recvErr := make(chan error, 1)
		go func() {
			cb.Recv(ctx)
			_, err := cb.Recv(ctx) // blocked when Close comes
			recvErr <- err
		}()
		synctest.Wait()
		cb.Close()
		if err := <-recvErr; !errors.Is(err, flitlink.ErrCircuitClosed) {
			t.Fatalf("Recv interrupted by Close: %v", err)
		}
		if _, err := cb.Recv(ctx); !errors.Is(err, flitlink.ErrCircuitClosed) {
			t.Fatalf("Recv after Close: %v", err)
		}
		if err := cb.Send(ctx, nil); !errors.Is(err, flitlink.ErrCircuitClosed) {
			t.Fatalf("Send after Close: %v", err)
		}
		t1 := time.Now()
		if _, err := ca.Recv(ctx); err != io.EOF {
			t.Fatalf("peer Recv: %v, want io.EOF (after %v)", err, time.Since(t1))
		}
		// The closed side drains: far more than the buffer goes through.
		for i := range 20 {
			if err := ca.Send(ctx, make([]byte, 1<<10)); err != nil {
				t.Fatalf("Send %d to a closed circuit: %v", i, err)
			}
		}
		ca.Close()
		time.Sleep(time.Second)
		synctest.Wait()
		if lo, _ := a.OpenCounts(); lo != 0 {
			t.Errorf("a still counts %d circuits", lo)
		}
		if _, re := b.OpenCounts(); re != 0 {
			t.Errorf("b still counts %d circuits", re)
		}
		checkAlive(t, a, b)
	})
}

// TestCancel: a Recv its context interrupts keeps the partial message for
// the next Recv; a Send interrupted half-way resets the circuit.
func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, memlink.Config{Latency: time.Millisecond, Bandwidth: 16 << 10}, flitlink.Config{}, flitlink.Config{})
		ca, cb := openPair(t, a, b, "s", flitlink.Data)
		msg := pattern(3, 64<<10) // 4 s at 16 KiB/s
		go ca.Send(ctx, msg)
		short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		if _, err := cb.Recv(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Recv with a short context: %v", err)
		}
		cancel()
		if got, err := cb.Recv(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Recv after an interrupted one = %d bytes, %v", len(got), err)
		}

		short, cancel = context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		if err := ca.Send(short, msg); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send with a short context: %v", err)
		}
		if err := ca.Send(ctx, []byte("x")); !errors.Is(err, flitlink.ErrCircuitReset) {
			t.Fatalf("Send after a half-written message: %v", err)
		}
		if _, err := cb.Recv(ctx); !errors.Is(err, flitlink.ErrCircuitReset) {
			t.Fatalf("peer Recv after the reset: %v", err)
		}
		checkAlive(t, a, b)
	})
}

func TestConcurrentSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, memlink.Config{Latency: time.Millisecond, Bandwidth: 1 << 20}, flitlink.Config{}, flitlink.Config{})
		ca, cb := openPair(t, a, b, "s", flitlink.Data)
		const senders, each = 4, 10
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				for i := range each {
					if err := ca.Send(ctx, pattern(s*100+i, 20<<10)); err != nil {
						t.Error(err)
					}
				}
			})
		}
		seen := map[string]bool{}
		for range senders * each {
			got, err := cb.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			seen[string(got)] = true
		}
		wg.Wait()
		for s := range senders {
			for i := range each {
				if !seen[string(pattern(s*100+i, 20<<10))] {
					t.Fatalf("message %d of sender %d missing or mangled", i, s)
				}
			}
		}
	})
}

func TestManyCircuits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, lat, flitlink.Config{}, flitlink.Config{AcceptBacklog: 200})
		const n = 100
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				c, err := a.Open(ctx, fmt.Sprint("s", i), flitlink.Class(i%4))
				if err == nil {
					err = c.Send(ctx, []byte(c.Service()))
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		for range n {
			c, err := b.Accept(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := c.Recv(ctx); err != nil || string(got) != c.Service() {
				t.Fatalf("circuit %q got %q, %v", c.Service(), got, err)
			}
		}
		wg.Wait()
	})
}
