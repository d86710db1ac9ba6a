package live_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/live"
)

func nodeID(i int) feed.ID { return feed.ID{byte(i), 0x1e} }

func streamKey(t *testing.T) feed.PrivateKey {
	t.Helper()
	k, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// liveNet is nodes on a memlink network, each with its buffer of the one
// stream: node 0 publishes it, the others join it from one another.
type liveNet struct {
	t       *testing.T
	ctx     context.Context
	net     *memlink.Network
	key     feed.PrivateKey
	pub     *live.Publisher
	streams map[int]*live.Stream
	wg      sync.WaitGroup
	mu      sync.Mutex
	served  map[int][]error // node → what its Serve calls returned
}

func newLiveNet(t *testing.T, ctx context.Context, cfg memlink.Config, window int64) *liveNet {
	key := streamKey(t)
	ln := &liveNet{t: t, ctx: ctx, net: memlink.NewNetwork(cfg), key: key, streams: map[int]*live.Stream{}, served: map[int][]error{}}
	ln.streams[0] = live.NewStream(live.StreamConfig{ID: key.Public(), Origin: true, WindowBytes: window})
	ln.pub = live.NewPublisher(key, ln.streams[0])
	return ln
}

func (ln *liveNet) stream(i int) *live.Stream {
	if ln.streams[i] == nil {
		ln.streams[i] = live.NewStream(live.StreamConfig{ID: ln.key.Public()})
	}
	return ln.streams[i]
}

// join links node down to node up, which serves its stream on the
// circuit (through wrap, if not nil), and returns down's joined session.
func (ln *liveNet) join(down, up int, wrap func(live.Conn) live.Conn) *live.Upstream {
	t := ln.t
	t.Helper()
	ep := ln.net.Endpoint(nodeID(up))
	la, err := ln.net.Endpoint(nodeID(down)).Dial(ln.ctx, nodeID(up))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := ep.Accept(ln.ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { la.Close(); lb.Close() })
	s := ln.stream(up)
	ln.wg.Go(func() {
		c, err := lb.Accept(ln.ctx)
		if err != nil {
			return
		}
		defer c.Close()
		var conn live.Conn = c
		if wrap != nil {
			conn = wrap(c)
		}
		h, err := live.ReadHandshake(ln.ctx, conn, nil)
		if err == nil {
			err = live.Serve(ln.ctx, conn, h, s, nil)
		}
		ln.mu.Lock()
		ln.served[up] = append(ln.served[up], err)
		ln.mu.Unlock()
	})
	c, err := la.Open(ln.ctx, live.Service, flitlink.Voice)
	if err != nil {
		t.Fatal(err)
	}
	u, err := live.Dial(ln.ctx, c, ln.stream(down), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := ln.stream(up).Hops(); u.Hops() != want {
		t.Errorf("node %d states %d hops, want %d", up, u.Hops(), want)
	}
	ln.stream(down).SetHops(u.Hops() + 1)
	return u
}

// run runs u in the background from chunk from; the result comes on the
// channel.
func (ln *liveNet) run(u *live.Upstream, from uint64) <-chan error {
	done := make(chan error, 1)
	ln.wg.Go(func() {
		defer u.Close()
		done <- u.Run(ln.ctx, from, 0)
	})
	return done
}

// watch collects what node i's watchers get from chunk from until END.
func (ln *liveNet) watch(i int, from uint64) <-chan []live.Chunk {
	out := make(chan []live.Chunk, 1)
	s := ln.stream(i)
	ln.wg.Go(func() {
		var got []live.Chunk
		for c := range s.Chunks(ln.ctx, from) {
			got = append(got, c)
		}
		out <- got
	})
	return out
}

// write publishes n records of size bytes, one every gap, and returns
// their bytes.
func (ln *liveNet) write(n, size int, gap time.Duration) []byte {
	var all []byte
	for i := range n {
		rec := bytes.Repeat([]byte{byte(i)}, size)
		copy(rec, fmt.Sprintf("record %d;", i))
		if err := ln.pub.Write(rec); err != nil {
			ln.t.Fatal(err)
		}
		all = append(all, rec...)
		time.Sleep(gap)
	}
	return all
}

// checkBytes checks that got is want's bytes, in order, from chunk first
// on, with no gap, and ends with END.
func checkBytes(t *testing.T, who string, got []live.Chunk, want []byte) {
	t.Helper()
	if len(got) == 0 || !got[len(got)-1].End {
		t.Fatalf("%s: %d chunks, no END", who, len(got))
	}
	var b []byte
	for i, c := range got[:len(got)-1] {
		if i > 0 && c.Index <= got[i-1].Index {
			t.Fatalf("%s: chunk %d after %d", who, c.Index, got[i-1].Index)
		}
		b = append(b, c.Data...)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("%s: got %d bytes, want %d (equal prefix: %v)", who, len(b), len(want), bytes.HasPrefix(want, b))
	}
}

func (ln *liveNet) finish() {
	ln.wg.Wait()
}

// TestChain: publisher → relay → viewer delivers every byte in order, and
// END reaches both.
func TestChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		ln := newLiveNet(t, ctx, memlink.Config{Latency: 10 * time.Millisecond, Bandwidth: 1 << 20}, 0)
		relay := ln.run(ln.join(1, 0, nil), 0)
		viewer := ln.run(ln.join(2, 1, nil), 0)
		atRelay, atViewer := ln.watch(1, 0), ln.watch(2, 0)
		start := time.Now()
		want := ln.write(300, 1000, 2*time.Millisecond)
		ln.pub.Close()
		for who, ch := range map[string]<-chan error{"relay": relay, "viewer": viewer} {
			if err := <-ch; err != nil {
				t.Errorf("%s: Run = %v, want nil after END", who, err)
			}
		}
		checkBytes(t, "relay", <-atRelay, want)
		checkBytes(t, "viewer", <-atViewer, want)
		if hops := ln.stream(2).Hops(); hops != 2 {
			t.Errorf("viewer is %d hops from the publisher, want 2", hops)
		}
		// The last record was flushed within FlushDelay and crossed two
		// 10 ms links.
		if took, max := time.Since(start), 600*time.Millisecond+live.FlushDelay+2*10*time.Millisecond+10*time.Millisecond; took > max {
			t.Errorf("END reached the viewer %v after the first write, want ≤ %v", took, max)
		}
		cancel()
		ln.finish()
	})
}

// TestAdoptMunroLog: a viewer's stream takes its upstream's munro size at
// Adopt, before any munro came, so that the joins it answers as a relay
// state that size; a stream whose size is sure refuses a peer that states
// another.
func TestAdoptMunroLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ln := newLiveNet(t, t.Context(), memlink.Config{Latency: time.Millisecond}, 0)
		want := ln.stream(0).MunroLog()
		u := ln.join(1, 0, nil)
		if got := ln.stream(1).MunroLog(); got == want {
			t.Fatalf("the joining stream states %d before Adopt: the test shows nothing", got)
		}
		if err := u.Adopt(); err != nil {
			t.Fatal(err)
		}
		if got := ln.stream(1).MunroLog(); got != want {
			t.Fatalf("after Adopt the stream states 2^%d chunks, its upstream 2^%d", got, want)
		}
		ln.streams[2] = live.NewStream(live.StreamConfig{ID: ln.key.Public(), Origin: true, MunroLog: want + 1})
		if err := ln.join(2, 0, nil).Adopt(); !errors.Is(err, live.ErrProtocol) {
			t.Fatalf("Adopt of another munro size by a sure stream: %v, want ErrProtocol", err)
		}
	})
}

// TestJoinPositions: a late joiner starts at the publisher's newest munro;
// one that asks for a held position starts there; one that asks for a
// position the window no longer holds starts at the oldest held.
func TestJoinPositions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		ln := newLiveNet(t, ctx, memlink.Config{Latency: 5 * time.Millisecond}, 4*64<<10)
		ln.write(10, 64<<10, 0) // ten full munros: 6..9 stay in the window
		for _, c := range []struct {
			from, first uint64
		}{{live.LiveEdge, 36}, {30, 30}, {3, 24}} {
			i := len(ln.streams)
			done := ln.run(ln.join(i, 0, nil), c.from)
			got := ln.watch(i, c.from)
			synctest.Wait()
			ln.pub.Close() // later joiners get what the ended stream holds, then END
			chunks := <-got
			if err := <-done; err != nil {
				t.Errorf("from %d: Run = %v", c.from, err)
			}
			switch {
			case len(chunks) < 2:
				t.Errorf("from %d: %d chunks, want some and END", c.from, len(chunks))
			case chunks[0].Index != c.first:
				t.Errorf("from %d: first of %d chunks is %d, want chunk %d", c.from, len(chunks), chunks[0].Index, c.first)
			}
		}
		cancel()
		ln.finish()
	})
}

// tamperConn alters the n-th message of type typ it sends with alter.
type tamperConn struct {
	live.Conn
	typ   live.MsgType
	n     int
	alter func(live.Message) live.Message
}

func (c *tamperConn) Send(ctx context.Context, msg []byte) error {
	if len(msg) > 0 && live.MsgType(msg[0]) == c.typ {
		if c.n--; c.n == 0 {
			m, err := live.Decode(msg, live.DefaultMunroLog)
			if err != nil {
				return err
			}
			msg = c.alter(m).Append(nil)
		}
	}
	return c.Conn.Send(ctx, msg)
}

// alterMunro returns a tamperConn's alter that changes a munro with f.
func alterMunro(f func(*live.Munro)) func(live.Message) live.Message {
	return func(m live.Message) live.Message {
		mu := m.(live.Munro)
		mu.Chunks = append([][]byte(nil), mu.Chunks...)
		f(&mu)
		return mu
	}
}

// TestForgedMunro: a relay that alters a chunk, a signature or the order
// of munros is detected: nothing of the munro is kept or delivered, the
// session ends with an error that drops the relay, and the viewer goes on
// from an honest relay with no gap, as its window still holds the rest.
func TestForgedMunro(t *testing.T) {
	for name, wrap := range map[string]func(c live.Conn) live.Conn{
		"chunk": func(c live.Conn) live.Conn {
			return &tamperConn{Conn: c, typ: live.TypeMunro, n: 3, alter: alterMunro(func(m *live.Munro) {
				m.Chunks[1] = append([]byte{m.Chunks[1][0] ^ 1}, m.Chunks[1][1:]...)
			})}
		},
		"signature": func(c live.Conn) live.Conn {
			return &tamperConn{Conn: c, typ: live.TypeMunro, n: 3, alter: alterMunro(func(m *live.Munro) { m.Sig[9] ^= 0x40 })}
		},
		"published": func(c live.Conn) live.Conn {
			return &tamperConn{Conn: c, typ: live.TypeMunro, n: 3, alter: alterMunro(func(m *live.Munro) { m.Published++ })}
		},
		"replayed": func(c live.Conn) live.Conn {
			return &tamperConn{Conn: c, typ: live.TypeMunro, n: 3, alter: alterMunro(func(m *live.Munro) { m.Index = 0 })}
		},
		// A lying handshake: the first upstream's k must not stick.
		"munro size": func(c live.Conn) live.Conn {
			return &tamperConn{Conn: c, typ: live.TypeHandshake, n: 1, alter: func(m live.Message) live.Message {
				h := m.(live.Handshake)
				h.MunroLog = 1
				return h
			}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				ln := newLiveNet(t, ctx, memlink.Config{Latency: 5 * time.Millisecond}, 0)
				honest, evil := ln.run(ln.join(1, 0, nil), 0), ln.run(ln.join(2, 0, nil), 0)
				want := ln.write(40, 10<<10, 5*time.Millisecond) // 25 munros
				ln.pub.Close()
				for _, ch := range []<-chan error{honest, evil} {
					if err := <-ch; err != nil {
						t.Fatalf("relay: %v", err)
					}
				}
				viewer := ln.stream(3)
				got := ln.watch(3, 0)
				if err := <-ln.run(ln.join(3, 2, wrap), 0); !live.Abusive(err) {
					t.Fatalf("viewer's session with the evil relay: %v, want an abusive error", err)
				}
				next, _ := viewer.Next()
				kept := uint64(2) // munros 0 and 1 came before the altered one
				if name == "munro size" {
					kept = 0
				}
				if next != kept {
					t.Fatalf("viewer holds %d munros, want %d", next, kept)
				}
				if err := <-ln.run(ln.join(3, 1, nil), next<<live.DefaultMunroLog); err != nil {
					t.Fatalf("viewer's session with the honest relay: %v", err)
				}
				checkBytes(t, "viewer", <-got, want)
				cancel()
				ln.finish()
			})
		})
	}
}

// TestSilence: an idle publisher's viewer keeps its session (KEEPALIVE);
// a relay whose own upstream is gone goes silent, and its viewer gives it
// up after DefaultSilence.
func TestSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		ln := newLiveNet(t, ctx, memlink.Config{Latency: 5 * time.Millisecond}, 0)
		relay := ln.run(ln.join(1, 0, nil), live.LiveEdge)
		viewer := ln.run(ln.join(2, 1, nil), live.LiveEdge)
		time.Sleep(10 * time.Second)
		select {
		case err := <-relay:
			t.Fatalf("relay's session with an idle publisher ended: %v", err)
		case err := <-viewer:
			t.Fatalf("viewer's session ended: %v", err)
		default:
		}
		ln.net.Cut(nodeID(0), nodeID(1))
		cut := time.Now()
		if err := <-relay; err == nil || live.Abusive(err) {
			t.Errorf("relay cut from the publisher: %v", err)
		}
		if err := <-viewer; !errors.Is(err, live.ErrSilent) {
			t.Errorf("viewer of a starved relay: %v, want ErrSilent", err)
		}
		// The relay stays fed for DefaultSilence after the publisher's
		// last KEEPALIVE, its viewer waits DefaultSilence after the
		// relay's.
		if took := time.Since(cut); took > 2*live.DefaultSilence+live.KeepaliveInterval+100*time.Millisecond {
			t.Errorf("viewer gave its relay up after %v", took)
		}
		cancel()
		ln.finish()
	})
}

// TestSlowDownstream: a downstream peer that cannot keep up is cut off
// once it falls behind the window; the window stays within its bytes.
func TestSlowDownstream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		const window = 256 << 10
		ln := newLiveNet(t, ctx, memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 64 << 10, Buffer: 64 << 10}, window)
		viewer := ln.run(ln.join(1, 0, nil), 0)
		ln.write(64, 32<<10, time.Millisecond) // 2 MiB at 32 MiB/s over a 64 KiB/s link
		if err := <-viewer; err == nil {
			t.Error("the slow viewer's session did not end")
		}
		cancel()
		ln.finish()
		if errs := ln.served[0]; len(errs) != 1 || !errors.Is(errs[0], live.ErrSlow) {
			t.Errorf("Serve at the publisher: %v, want ErrSlow", errs)
		}
		var bytes int
		for c := range ln.stream(0).Chunks(t.Context(), 0) {
			bytes += len(c.Data)
			if c.Index == 64*2-1 {
				break
			}
		}
		if bytes > window {
			t.Errorf("the window holds %d bytes, limit %d", bytes, window)
		}
	})
}

// scriptConn receives the messages of its script, then nothing until ctx
// ends; what is sent to it is dropped.
type scriptConn struct{ msgs [][]byte }

func (c *scriptConn) Send(ctx context.Context, msg []byte) error { return nil }
func (c *scriptConn) Close() error                               { return nil }
func (c *scriptConn) Recv(ctx context.Context) ([]byte, error) {
	if len(c.msgs) == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	m := c.msgs[0]
	c.msgs = c.msgs[1:]
	return m, nil
}

// TestProtocolViolations: a message out of turn ends either side's
// session with an error that drops the peer; an unknown type is ignored.
func TestProtocolViolations(t *testing.T) {
	key := streamKey(t)
	hs := live.Handshake{Capability: live.Capability, Stream: key.Public(), MunroLog: live.DefaultMunroLog}
	msgs := func(ms ...live.Message) [][]byte {
		var out [][]byte
		for _, m := range ms {
			out = append(out, m.Append(nil))
		}
		return out
	}
	unknown := live.Unknown{MsgType: 0x70, Body: []byte{1}}
	for _, c := range []struct {
		name  string
		serve bool
		msgs  [][]byte
		want  error // nil: the session runs on until ctx ends
	}{
		{"serve: KEEPALIVE before START", true, msgs(live.Keepalive{}), live.ErrProtocol},
		{"serve: START twice", true, msgs(unknown, live.Start{From: 0}, live.Start{From: 0}), live.ErrProtocol},
		{"serve: malformed", true, [][]byte{{0x02, 0x80}}, live.ErrMalformed},
		{"serve: unknown types ignored", true, msgs(unknown, live.Start{From: live.LiveEdge}, unknown), nil},
		{"join: HANDSHAKE again", false, msgs(hs, live.Keepalive{}, hs), live.ErrProtocol},
		{"join: START from upstream", false, msgs(hs, live.Start{}), live.ErrProtocol},
		{"join: unsigned END", false, msgs(hs, live.End{Munros: 1}), live.ErrBadMunro},
		{"join: handshake for another stream", false, msgs(live.Handshake{Stream: feed.ID{1}}), live.ErrProtocol},
	} {
		// In a bubble, the session handles its script before the
		// timeout's virtual second passes.
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			conn := &scriptConn{msgs: c.msgs}
			var err error
			if c.serve {
				err = live.Serve(ctx, conn, hs, live.NewStream(live.StreamConfig{ID: key.Public(), Origin: true}), nil)
			} else {
				var u *live.Upstream
				if u, err = live.Dial(ctx, conn, live.NewStream(live.StreamConfig{ID: key.Public()}), nil); err == nil {
					err = u.Run(ctx, live.LiveEdge, time.Hour)
				}
			}
			switch {
			case c.want == nil && err != nil:
				t.Errorf("%s: %v, want nil", c.name, err)
			case c.want != nil && (!errors.Is(err, c.want) || !live.Abusive(err)):
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		})
	}
}
