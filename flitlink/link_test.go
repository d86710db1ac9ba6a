package flitlink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
)

func TestOpenAcceptSendRecv(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, Config{}, Config{}, nil)
		if !a.Initiator() || b.Initiator() || a.Remote() != idB || b.Remote() != idA {
			t.Fatalf("initiator/remote: %v %v %v %v", a.Initiator(), b.Initiator(), a.Remote(), b.Remote())
		}
		ca, cb := openPair(t, a, b, "echo/1", Voice)
		if ca.ID()%2 != 1 {
			t.Errorf("initiator opened even circuit %d", ca.ID())
		}
		for i, msg := range [][]byte{[]byte("hello"), {}, pattern(1, 3000)} {
			if err := ca.Send(ctx, msg); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
			got, err := cb.Recv(ctx)
			if err != nil || !bytes.Equal(got, msg) || got == nil {
				t.Fatalf("Recv %d = %d bytes, %v; want %d bytes", i, len(got), err, len(msg))
			}
		}
		// The acceptor opens too, with even ids, and replies flow back.
		cb2, ca2 := openPair(t, b, a, "back", Data)
		if cb2.ID()%2 != 0 {
			t.Errorf("acceptor opened odd circuit %d", cb2.ID())
		}
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
		if err := ca.Send(ctx, []byte("x")); !errors.Is(err, ErrCircuitClosed) {
			t.Fatalf("Send after CloseWrite: %v", err)
		}
		if got, err := cb.Recv(ctx); err != nil || string(got) != "last" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
		if _, err := cb.Recv(ctx); err != io.EOF {
			t.Fatalf("Recv after CLOSE: %v, want io.EOF", err)
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
		synctest.Wait()
		for _, l := range []*Link{a, b} {
			l.mu.Lock()
			if _, ok := l.circuits[ca.ID()]; ok {
				t.Errorf("circuit %d not freed after both closes", ca.ID())
			}
			l.mu.Unlock()
		}
	})
}

func TestBadOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, _ := newPair(t, Config{}, Config{}, nil)
		for _, tc := range []struct {
			service string
			class   Class
		}{{"", Data}, {string(make([]byte, MaxServiceLen+1)), Data}, {"\xff", Data}, {"ok", 4}} {
			if _, err := a.Open(testCtx(t), tc.service, tc.class); !errors.Is(err, ErrBadService) {
				t.Errorf("Open(%q, %d) = %v", tc.service, tc.class, err)
			}
		}
	})
}

func TestFragmentation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		tap := &tapConn{}
		cfg := Config{FlitSize: 16 << 10, MaxMessageSize: 1 << 20}
		a, b := newPair(t, cfg, cfg, tap)
		ca, cb := openPair(t, a, b, "bulk", Data)
		off := tap.hold()
		tap.release()
		msg := pattern(7, 1<<20)
		errc := make(chan error, 1)
		go func() { errc <- ca.Send(ctx, msg) }()
		got, err := cb.Recv(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Recv = %d bytes, %v", len(got), err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if err := ca.Send(ctx, make([]byte, 1<<20+1)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Send of MaxMessageSize+1: %v", err)
		}
		hs := splitFrames(t, tap.since(off))
		if len(hs) != 64 {
			t.Fatalf("1 MiB went out in %d frames, want 64", len(hs))
		}
		for i, h := range hs {
			want := uint8(flagMore)
			switch i {
			case 0:
				want = flagFirst | flagMore
			case len(hs) - 1:
				want = 0
			}
			if h.circuit != ca.ID() || h.flags != want || h.length != 16<<10 {
				t.Fatalf("frame %d = %+v, want flags %#x and 16 KiB", i, h, want)
			}
		}
	})
}

func TestManyCircuits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		cfg := Config{FlitSize: 4 << 10, Window: 16 << 10, AcceptBacklog: 64}
		a, b := newPair(t, cfg, cfg, nil)
		const circuits, msgs = 40, 10
		var wg sync.WaitGroup
		errs := make(chan error, 4*circuits)
		// Each side accepts and verifies what the other opens.
		serve := func(l *Link) {
			for range circuits {
				c, err := l.Accept(ctx)
				if err != nil {
					errs <- err
					return
				}
				wg.Go(func() {
					var seed int
					fmt.Sscanf(c.Service(), "svc-%d", &seed)
					for i := range msgs {
						got, err := c.Recv(ctx)
						if want := pattern(seed*100+i, (seed*7919+i*104729)%(40<<10)); err != nil || !bytes.Equal(got, want) {
							errs <- fmt.Errorf("%s message %d: %d bytes, %v; want %d bytes", c.Service(), i, len(got), err, len(want))
							return
						}
					}
					if _, err := c.Recv(ctx); err != io.EOF {
						errs <- fmt.Errorf("%s: %v, want EOF", c.Service(), err)
					}
				})
			}
		}
		wg.Go(func() { serve(a) })
		wg.Go(func() { serve(b) })
		for i := range 2 * circuits {
			from := a
			if i%2 == 1 {
				from = b
			}
			wg.Go(func() {
				c, err := from.Open(ctx, fmt.Sprintf("svc-%d", i), Class(i%4))
				if err != nil {
					errs <- err
					return
				}
				for j := range msgs {
					if err := c.Send(ctx, pattern(i*100+j, (i*7919+j*104729)%(40<<10))); err != nil {
						errs <- err
						return
					}
				}
				c.CloseWrite()
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestRefuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		a, b := newPair(t, Config{}, Config{AcceptBacklog: 2}, nil)
		for i := range 2 {
			if _, err := a.Open(ctx, "s", Data); err != nil {
				t.Fatalf("Open %d: %v", i, err)
			}
		}
		_, err := a.Open(ctx, "s", Data)
		var re *RefusedError
		if !errors.Is(err, ErrRefused) || !errors.As(err, &re) || re.Reason != RefuseBacklogFull {
			t.Fatalf("Open over the backlog: %v", err)
		}
		if _, err := b.Accept(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Open(ctx, "s", Data); err != nil {
			t.Fatalf("Open after Accept: %v", err)
		}
		synctest.Wait()
		a.mu.Lock()
		defer a.mu.Unlock()
		b.mu.Lock()
		defer b.mu.Unlock()
		if a.localOpen != 3 || b.remoteOpen != 3 {
			t.Errorf("open counts: a %d, b %d; want 3 (the refused one freed)", a.localOpen, b.remoteOpen)
		}
	})
}

func TestCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		const window, size, total = 64 << 10, 4 << 10, 40
		cfg := Config{Window: window}
		a, b := newPair(t, cfg, cfg, nil)
		ca, cb := openPair(t, a, b, "slow", Data)
		var sent atomic.Int64
		done := make(chan error, 1)
		go func() {
			for i := range total {
				if err := ca.Send(ctx, pattern(i, size)); err != nil {
					done <- err
					return
				}
				sent.Add(1)
			}
			done <- nil
		}()
		synctest.Wait()
		if n := sent.Load(); n != window/size {
			t.Fatalf("sender got %d messages out before blocking, want %d", n, window/size)
		}
		// A stalled circuit does not block others.
		oa, ob := openPair(t, a, b, "other", Data)
		if err := oa.Send(ctx, []byte("through")); err != nil {
			t.Fatal(err)
		}
		if got, err := ob.Recv(ctx); err != nil || string(got) != "through" {
			t.Fatalf("other circuit: %q, %v", got, err)
		}
		// Reading less than a quarter window grants nothing yet; reading a
		// quarter grants a quarter.
		for i := range 3 {
			if got, err := cb.Recv(ctx); err != nil || !bytes.Equal(got, pattern(i, size)) {
				t.Fatalf("Recv %d: %v", i, err)
			}
		}
		synctest.Wait()
		if n := sent.Load(); n != window/size {
			t.Fatalf("after 3 reads the sender sent %d, want %d", n, window/size)
		}
		if _, err := cb.Recv(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := sent.Load(); n != window/size+4 {
			t.Fatalf("after 4 reads the sender sent %d, want %d", n, window/size+4)
		}
		for i := 4; i < total; i++ {
			if got, err := cb.Recv(ctx); err != nil || !bytes.Equal(got, pattern(i, size)) {
				t.Fatalf("Recv %d: %v", i, err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if cb.recvOutstanding > window {
			t.Errorf("receiver granted %d outstanding, window %d", cb.recvOutstanding, window)
		}
	})
}

// A message larger than the window still arrives while nothing else waits,
// and a Send abandoned halfway is discarded by the receiver.
func TestLargeMessageAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		cfg := Config{Window: 16 << 10, FlitSize: 4 << 10}
		a, b := newPair(t, cfg, cfg, nil)
		ca, cb := openPair(t, a, b, "big", Data)
		big := pattern(1, 200<<10)
		if err := ca.Send(ctx, big); err != nil {
			t.Fatal(err)
		}
		if got, err := cb.Recv(ctx); err != nil || !bytes.Equal(got, big) {
			t.Fatalf("Recv = %d bytes, %v", len(got), err)
		}

		// One unread message makes the partial one count: the next large
		// Send stalls halfway, and is then cancelled.
		if err := ca.Send(ctx, []byte("first")); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { errc <- ca.Send(sctx, big) }()
		synctest.Wait()
		select {
		case err := <-errc:
			t.Fatalf("Send beyond the window returned %v", err)
		default:
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Send: %v", err)
		}
		if err := ca.Send(ctx, []byte("after")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"first", "after"} {
			if got, err := cb.Recv(ctx); err != nil || string(got) != want {
				t.Fatalf("Recv = %d bytes %.10q, %v; want %q", len(got), got, err, want)
			}
		}
	})
}

// While a Data circuit is saturated, a Voice message overtakes its queued
// frames: it is written right after the frame in flight.
func TestPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		tap := &tapConn{}
		cfg := Config{FlitSize: 16 << 10, Window: 1 << 20}
		a, b := newPair(t, cfg, cfg, tap)
		da, db := openPair(t, a, b, "bulk", Data)
		va, vb := openPair(t, a, b, "chat", Voice)
		var order []string
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, c := range []*Circuit{db, vb} {
			wg.Go(func() {
				if _, err := c.Recv(ctx); err != nil {
					t.Error(err)
				}
				mu.Lock()
				order = append(order, c.Service())
				mu.Unlock()
			})
		}
		off := tap.hold()
		wg.Go(func() {
			if err := da.Send(ctx, pattern(1, 512<<10)); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait() // the writer is stuck writing the first data frame
		wg.Go(func() {
			if err := va.Send(ctx, []byte("hi")); err != nil {
				t.Error(err)
			}
		})
		synctest.Wait()
		tap.release()
		wg.Wait()

		hs := splitFrames(t, tap.since(off))
		if len(hs) != 33 {
			t.Fatalf("%d frames written, want 32 data + 1 voice", len(hs))
		}
		for i, h := range hs {
			if want := da.ID(); i == 1 {
				if h.circuit != va.ID() {
					t.Errorf("frame %d is on circuit %d, want the voice circuit %d", i, h.circuit, va.ID())
				}
			} else if h.circuit != want {
				t.Errorf("frame %d is on circuit %d, want the data circuit %d", i, h.circuit, want)
			}
		}
		if order[0] != "chat" {
			t.Errorf("delivery order %v, want chat first", order)
		}
	})
}

// Video and Data share the link VideoWeight:DataWeight by bytes, and
// Control-class data goes first.
func TestWeightedShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		tap := &tapConn{}
		cfg := Config{FlitSize: 4 << 10, Window: 1 << 20}
		a, b := newPair(t, cfg, cfg, tap)
		var wg sync.WaitGroup
		sendRecv := func(ca, cb *Circuit, n int) {
			wg.Go(func() {
				if err := ca.Send(ctx, pattern(n, n)); err != nil {
					t.Error(err)
				}
			})
			wg.Go(func() {
				if got, err := cb.Recv(ctx); err != nil || len(got) != n {
					t.Error(len(got), err)
				}
			})
		}
		da, db := openPair(t, a, b, "bulk", Data)
		va, vb := openPair(t, a, b, "stream", Video)
		ka, kb := openPair(t, a, b, "notes", Control)
		off := tap.hold()
		sendRecv(da, db, 400<<10)
		synctest.Wait()
		sendRecv(va, vb, 400<<10)
		sendRecv(ka, kb, 12<<10)
		synctest.Wait()
		tap.release()
		wg.Wait()

		hs := splitFrames(t, tap.since(off))
		// Frame 0 was in flight; then the three Control frames; then 3:1.
		for i := 1; i <= 3; i++ {
			if hs[i].circuit != ka.ID() {
				t.Fatalf("frame %d on circuit %d, want control circuit %d", i, hs[i].circuit, ka.ID())
			}
		}
		var video, data int
		for _, h := range hs[4:84] {
			switch h.circuit {
			case va.ID():
				video++
			case da.ID():
				data++
			}
		}
		if video != 60 || data != 20 {
			t.Errorf("of 80 frames with both busy: %d video, %d data; want 60:20", video, data)
		}
	})
}

func TestLinkClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		cfg := Config{Window: 1 << 10}
		a, b := newPair(t, cfg, cfg, nil)
		ca, cb := openPair(t, a, b, "s", Data)
		// Queued before the link dies: still readable afterwards.
		if err := ca.Send(ctx, []byte("queued")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		errs := make(chan error, 4)
		go func() { _, err := b.Accept(ctx); errs <- err }()
		go func() { _, err := ca.Recv(ctx); errs <- err }()
		go func() { errs <- ca.Send(ctx, make([]byte, 4<<10)) }() // stalls on credit
		synctest.Wait()
		a.Close()
		go func() { _, err := a.Open(ctx, "late", Data); errs <- err }()
		for range 4 {
			if err := <-errs; !errors.Is(err, ErrLinkClosed) {
				t.Errorf("blocked call returned %v, want ErrLinkClosed", err)
			}
		}
		if err := a.Err(); !errors.Is(err, ErrLinkClosed) || !errors.Is(err, errLocalClose) {
			t.Errorf("a.Err() = %v", err)
		}
		<-b.Done()
		if err := b.Err(); !errors.Is(err, ErrLinkClosed) || !errors.Is(err, errPeerClosed) || errors.Is(err, io.EOF) {
			t.Errorf("b.Err() = %v", err)
		}
		if got, err := cb.Recv(ctx); err != nil || string(got) != "queued" {
			t.Errorf("Recv of a queued message after death = %q, %v", got, err)
		}
		if _, err := cb.Recv(ctx); !errors.Is(err, ErrLinkClosed) {
			t.Errorf("Recv after death: %v", err)
		}
	})
}

func TestCircuitClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		cfg := Config{Window: 4 << 10}
		a, b := newPair(t, cfg, cfg, nil)
		ca, cb := openPair(t, a, b, "s", Data)
		if err := ca.Send(ctx, []byte("dropped")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		cb.Close()
		if _, err := cb.Recv(ctx); !errors.Is(err, ErrCircuitClosed) {
			t.Fatalf("Recv after Close: %v", err)
		}
		if err := cb.Send(ctx, nil); !errors.Is(err, ErrCircuitClosed) {
			t.Fatalf("Send after Close: %v", err)
		}
		if _, err := ca.Recv(ctx); err != io.EOF {
			t.Fatalf("peer Recv: %v, want io.EOF", err)
		}
		// The closed side discards but keeps granting: far more than the
		// window goes through without blocking.
		for i := range 20 {
			if err := ca.Send(ctx, make([]byte, 1<<10)); err != nil {
				t.Fatalf("Send %d to a closed circuit: %v", i, err)
			}
		}
		ca.Close()
		synctest.Wait()
		a.mu.Lock()
		b.mu.Lock()
		if a.localOpen != 0 || b.remoteOpen != 0 {
			t.Errorf("open counts %d, %d after both closed", a.localOpen, b.remoteOpen)
		}
		b.mu.Unlock()
		a.mu.Unlock()
		if a.Err() != nil || b.Err() != nil {
			t.Errorf("links died: %v, %v", a.Err(), b.Err())
		}
	})
}

func TestOpenAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		tap := &tapConn{}
		a, b := newPair(t, Config{}, Config{}, tap)
		if _, err := a.Open(ctx, "warmup", Data); err != nil {
			t.Fatal(err)
		}
		tap.hold()
		octx, cancel := context.WithCancel(ctx)
		errc := make(chan error, 1)
		go func() { _, err := a.Open(octx, "s", Data); errc <- err }()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("Open: %v", err)
		}
		tap.release()
		b.Accept(ctx)
		c, err := b.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Recv(ctx); err != io.EOF {
			t.Fatalf("Recv on an abandoned circuit: %v, want io.EOF", err)
		}
	})
}

// Malformed input kills the link that received it, with ErrProtocol.
func TestMalformed(t *testing.T) {
	const flit, maxMsg, window = 512, 1024, 1024
	hello := rawHello(flit, maxMsg, window)
	open1 := rawControl(control{typ: ctlOpen, circuit: 1, class: Data, service: "s"})
	full := pattern(1, flit)
	for _, tc := range []struct {
		name  string
		input [][]byte
	}{
		{"no hello", [][]byte{open1}},
		{"data before hello", [][]byte{rawFrame(1, flagFirst, []byte("x"))}},
		{"second hello", [][]byte{hello, hello}},
		{"wrong version", [][]byte{rawControl(control{typ: ctlHello, version: 2, capability: 1, flitSize: flit, maxMessage: maxMsg, window: window})}},
		{"tiny flit", [][]byte{rawHello(16, maxMsg, window)}},
		{"unknown flags", [][]byte{hello, open1, rawFrame(1, 0x10, []byte("x"))}},
		{"frame over flit", [][]byte{hello, open1, rawFrame(1, flagFirst, make([]byte, flit+1))}},
		{"huge length", [][]byte{hello, {0, 0, 0, 1, flagFirst, 0xff, 0xff, 0xff}}},
		{"huge control", [][]byte{hello, rawFrame(0, flagFirst, make([]byte, MaxControlSize+1))}},
		{"data on unknown circuit", [][]byte{hello, rawFrame(3, flagFirst, []byte("x"))}},
		{"open of our parity", [][]byte{hello, rawControl(control{typ: ctlOpen, circuit: 2, class: Data, service: "s"})}},
		{"open not increasing", [][]byte{hello, open1, open1}},
		{"open bad class", [][]byte{hello, rawFrame(0, flagFirst, []byte{ctlOpen, 0, 0, 0, 1, 9, 1, 's'})}},
		{"credit beyond window", [][]byte{hello, open1, rawControl(control{typ: ctlCredit, circuit: 1, credit: window})}},
		{"data beyond credit", [][]byte{hello, open1, rawFrame(1, flagFirst, full), rawFrame(1, flagFirst, full), rawFrame(1, flagFirst, []byte("x"))}},
		{"message too large", [][]byte{hello, open1, rawFrame(1, flagFirst|flagMore, full), rawFrame(1, flagMore, full), rawFrame(1, 0, []byte("x"))}},
		{"continuation first", [][]byte{hello, open1, rawFrame(1, flagMore, []byte("x"))}},
		{"first inside message", [][]byte{hello, open1, rawFrame(1, flagFirst|flagMore, []byte("x")), rawFrame(1, flagFirst, []byte("x"))}},
		{"cancel outside message", [][]byte{hello, open1, rawFrame(1, flagCancel, nil)}},
		{"empty fragment", [][]byte{hello, open1, rawFrame(1, flagFirst|flagMore, nil)}},
		{"close inside message", [][]byte{hello, open1, rawFrame(1, flagFirst|flagMore, []byte("x")), rawControl(control{typ: ctlClose, circuit: 1})}},
		{"close unknown", [][]byte{hello, rawControl(control{typ: ctlClose, circuit: 5})}},
		{"double close", [][]byte{hello, open1, rawControl(control{typ: ctlClose, circuit: 1}), rawControl(control{typ: ctlClose, circuit: 1})}},
		{"data after close", [][]byte{hello, open1, rawControl(control{typ: ctlClose, circuit: 1}), rawFrame(1, flagFirst, []byte("x"))}},
		{"accept of nothing", [][]byte{hello, rawControl(control{typ: ctlAccept, circuit: 2})}},
		{"zero credit", [][]byte{hello, open1, rawFrame(0, flagFirst, []byte{ctlCredit, 0, 0, 0, 1, 0, 0, 0, 0})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				mine, theirs := net.Pipe()
				l := NewLink(mine, idA, false, Config{FlitSize: flit, MaxMessageSize: maxMsg, Window: window})
				defer l.Close()
				go io.Copy(io.Discard, theirs)
				go func() {
					for _, b := range tc.input {
						if _, err := theirs.Write(b); err != nil {
							return
						}
					}
				}()
				synctest.Wait()
				select {
				case <-l.Done():
				default:
					t.Fatal("link survived")
				}
				if err := l.Err(); !errors.Is(err, ErrLinkClosed) || !errors.Is(err, ErrProtocol) {
					t.Fatalf("Err() = %v", err)
				}
				t.Log(l.Err())
				theirs.Close()
			})
		})
	}
}

// A peer may skip unknown control types and trailing hello bytes (later
// capabilities), and stale credit is ignored.
func TestTolerated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		mine, theirs := net.Pipe()
		l := NewLink(mine, idA, false, Config{})
		defer l.Close()
		defer theirs.Close()
		go io.Copy(io.Discard, theirs)
		hello := rawHello(DefaultFlitSize, DefaultMaxMessageSize, DefaultWindow)
		hello = append(hello, 1, 2, 3)
		hello[7] += 3
		for _, b := range [][]byte{
			hello,
			rawFrame(0, flagFirst, []byte{0x7f, 1, 2}),
			rawControl(control{typ: ctlCredit, circuit: 99, credit: 5}),
			rawControl(control{typ: ctlOpen, circuit: 1, class: Voice, service: "s"}),
			rawFrame(1, flagFirst, []byte("ok")),
		} {
			if _, err := theirs.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		c, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Recv(ctx); err != nil || string(got) != "ok" {
			t.Fatalf("Recv = %q, %v", got, err)
		}
	})
}

// Concurrent Sends on one circuit never interleave their fragments.
func TestConcurrentSends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := testCtx(t)
		cfg := Config{FlitSize: 1 << 10, Window: 8 << 10}
		a, b := newPair(t, cfg, cfg, nil)
		ca, cb := openPair(t, a, b, "s", Data)
		const senders, each = 4, 5
		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				for i := range each {
					msg := pattern(s*100+i, 5000+s*1000)
					msg[0], msg[1] = byte(s), byte(i)
					if err := ca.Send(ctx, msg); err != nil {
						t.Error(err)
					}
				}
			})
		}
		next := make([]int, senders)
		for range senders * each {
			got, err := cb.Recv(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s, i := int(got[0]), int(got[1])
			want := pattern(s*100+i, 5000+s*1000)
			want[0], want[1] = byte(s), byte(i)
			if s >= senders || i != next[s] || !bytes.Equal(got, want) {
				t.Fatalf("message from sender %d #%d (want #%d) is corrupt or out of order", s, i, next[s])
			}
			next[s]++
		}
		wg.Wait()
	})
}
