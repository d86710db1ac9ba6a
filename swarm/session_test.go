package swarm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

func nodeID(i int) feed.ID { return feed.ID{byte(i >> 8), byte(i), 0x5a} }

// testObject is a test object held in full by its seeders.
type testObject struct {
	data []byte
	tree *object.Tree
	info object.Info
	id   cid.Cid
}

func newObject(t testing.TB, size, chunkSize int) testObject {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	tree, err := object.Build(bytes.NewReader(data), object.Config{ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	return testObject{data: data, tree: tree, info: tree.Info(), id: tree.ID()}
}

func (o testObject) chunk(i uint64) []byte {
	cs := uint64(o.info.ChunkSize)
	return o.data[i*cs : min(uint64(len(o.data)), (i+1)*cs)]
}

// seederStore returns a store holding the whole object and its tree.
func (o testObject) seederStore(t *testing.T) *store.Mem {
	t.Helper()
	m := store.NewMem()
	t.Cleanup(func() { m.Close() })
	if err := m.PutObject(o.id, o.info); err != nil {
		t.Fatal(err)
	}
	for i := range o.tree.Chunks() {
		if err := m.PutChunk(o.id, i, o.chunk(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := object.PutTreeHashes(m, o.id, o.tree); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkedSink is the fetcher's store: it fails the test if a chunk that
// differs from the original is ever put, and records when chunks arrive.
type checkedSink struct {
	*store.Mem
	t   *testing.T
	o   testObject
	mu  sync.Mutex
	at  []time.Time
	put func(n int) // called after the n-th chunk is stored
}

func newSink(t *testing.T, o testObject) *checkedSink {
	m := store.NewMem()
	t.Cleanup(func() { m.Close() })
	if err := m.PutObject(o.id, o.info); err != nil {
		t.Fatal(err)
	}
	return &checkedSink{Mem: m, t: t, o: o}
}

func (s *checkedSink) PutChunks(id cid.Cid, chunks []object.Chunk) error {
	for _, c := range chunks {
		if !bytes.Equal(c.Data, s.o.chunk(c.Index)) {
			s.t.Errorf("corrupt chunk %d reached the sink", c.Index)
		}
	}
	if err := s.Mem.PutChunks(id, chunks); err != nil {
		return err
	}
	for range chunks {
		s.mu.Lock()
		s.at = append(s.at, time.Now())
		n := len(s.at)
		s.mu.Unlock()
		if s.put != nil {
			s.put(n)
		}
	}
	return nil
}

func (s *checkedSink) check(t *testing.T) {
	t.Helper()
	for i := range s.o.tree.Chunks() {
		got, err := s.AppendChunks(nil, s.o.id, i, 1)
		if err != nil || !bytes.Equal(got, s.o.chunk(i)) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
}

// maxGap returns the longest time between start and the first chunk or
// between two chunks.
func (s *checkedSink) maxGap(start time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gap time.Duration
	prev := start
	for _, at := range s.at {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return gap
}

// swarmNet is a fetcher (node 0) and seeders (nodes 1…) on a memlink
// network; each seeder serves the object on the circuits it accepts.
type swarmNet struct {
	net     *memlink.Network
	serveWG sync.WaitGroup
	mu      sync.Mutex
	served  map[int]error          // seeder → what Serve returned
	grown   *swarm.Growth          // ServeConfig.Grown of the seeders connected next
	peers   func() []swarm.PexPeer // ServeConfig.Peers of the seeders connected next
}

func newSwarmNet(cfg memlink.Config) *swarmNet {
	return &swarmNet{net: memlink.NewNetwork(cfg), served: make(map[int]error)}
}

// connect dials seeder i and starts Serve on its side; wrap, if not nil,
// wraps the seeder's end of the circuit.
func (sn *swarmNet) connect(t *testing.T, ctx context.Context, i int, src swarm.ObjectSource, info object.Info, wrap func(swarm.Conn) swarm.Conn) swarm.Conn {
	t.Helper()
	ep := sn.net.Endpoint(nodeID(i))
	la, err := sn.net.Endpoint(nodeID(0)).Dial(ctx, nodeID(i))
	if err != nil {
		t.Fatal(err)
	}
	lb, err := ep.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { la.Close(); lb.Close() })
	sn.serveWG.Go(func() {
		c, err := lb.Accept(ctx)
		if err != nil {
			return
		}
		var conn swarm.Conn = c
		if wrap != nil {
			conn = wrap(c)
		}
		err = swarm.Serve(ctx, conn, src, swarm.ServeConfig{Info: info, Grown: sn.grown, Peers: sn.peers})
		sn.mu.Lock()
		sn.served[i] = err
		sn.mu.Unlock()
	})
	c, err := la.Open(ctx, swarm.Service, flitlink.Data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fetch runs a swarm of seeders (wrap[i] wraps seeder i+1's conn) and
// returns the stats and the virtual time Fetch took.
func runFetch(t *testing.T, sn *swarmNet, o testObject, sink swarm.ChunkSink, wraps []func(swarm.Conn) swarm.Conn, cfg swarm.FetchConfig) (swarm.FetchStats, time.Duration, time.Time, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	src := o.seederStore(t)
	var conns []swarm.Conn
	for i, w := range wraps {
		conns = append(conns, sn.connect(t, ctx, i+1, src, o.info, w))
	}
	start := time.Now()
	st, err := swarm.Fetch(ctx, o.info, peersOf(conns...), sink, cfg)
	took := time.Since(start)
	cancel()
	sn.serveWG.Wait()
	return st, took, start, err
}

// peersOf returns a closed channel holding conns.
func peersOf(conns ...swarm.Conn) <-chan swarm.Conn {
	ch := make(chan swarm.Conn, len(conns))
	for _, c := range conns {
		ch <- c
	}
	close(ch)
	return ch
}

func TestFetchSingleSeeder(t *testing.T) {
	for _, tc := range []struct {
		name            string
		size, chunkSize int
	}{
		{"empty", 0, 1024},
		{"one chunk", 1000, 1024},
		{"odd", 37*1024 + 5, 1024},
		{"16KiB chunks", 1 << 20, 16 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := newObject(t, tc.size, tc.chunkSize)
				sink := newSink(t, o)
				sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond})
				st, _, _, err := runFetch(t, sn, o, sink, make([]func(swarm.Conn) swarm.Conn, 1), swarm.FetchConfig{})
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				sink.check(t)
				if st.Chunks != o.tree.Chunks() || st.Bytes != int64(tc.size) || st.DupBytes != 0 {
					t.Errorf("stats %+v", st)
				}
				if err := sn.served[1]; err != nil {
					t.Errorf("Serve: %v", err)
				}
			})
		})
	}
}

func TestFetchStreaming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 64<<10, 1024)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 256 << 10})
		var order []uint64
		st, _, _, err := runFetch(t, sn, o, &orderSink{checkedSink: sink, order: &order},
			make([]func(swarm.Conn) swarm.Conn, 3), swarm.FetchConfig{Window: 8, InFlight: 2})
		if err != nil {
			t.Fatalf("Fetch: %v (%+v)", err, st)
		}
		sink.check(t)
		for k, c := range order {
			if int(c) >= k+8 {
				t.Fatalf("chunk %d stored %d-th, outside an 8-chunk window", c, k)
			}
		}
	})
}

type orderSink struct {
	*checkedSink
	order *[]uint64
}

func (s *orderSink) PutChunks(id cid.Cid, chunks []object.Chunk) error {
	for _, c := range chunks {
		*s.order = append(*s.order, c.Index)
	}
	return s.checkedSink.PutChunks(id, chunks)
}

// TestFetchThroughput is issue 4 acceptance 2: four seeders each capped at
// R, one fetcher: at least 90% of 4R, duplicates at most 5% of the object.
func TestFetchThroughput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 1 << 20 // R, bytes/s per direction of each link
		o := newObject(t, 8<<20, 16<<10)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: rate})
		st, took, _, err := runFetch(t, sn, o, sink, make([]func(swarm.Conn) swarm.Conn, 4), swarm.FetchConfig{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		sink.check(t)
		got := float64(len(o.data)) / took.Seconds()
		frac := got / (4 * rate)
		dup := float64(st.DupBytes) / float64(len(o.data))
		t.Logf("8 MiB from 4 seeders at 1 MiB/s: %v, %.0f KiB/s = %.1f%% of 4R; duplicates %d bytes = %.2f%%; timeouts %d",
			took, got/1024, 100*frac, st.DupBytes, 100*dup, st.Timeouts)
		for i, p := range st.Peers {
			t.Logf("peer %d: %d chunks, %d bytes, err %v", i+1, p.Chunks, p.Bytes, p.Err)
		}
		if frac < 0.9 {
			t.Errorf("throughput %.1f%% of 4R, want ≥ 90%%", 100*frac)
		}
		if dup > 0.05 {
			t.Errorf("duplicates %.2f%% of the object, want ≤ 5%%", 100*dup)
		}
	})
}

// tamperConn rewrites the messages a seeder sends.
type tamperConn struct {
	swarm.Conn
	edit func(m swarm.Message) []byte // nil: send as is
	hang bool                         // set by edit: block until ctx ends
}

func (c *tamperConn) Send(ctx context.Context, b []byte) error {
	m, err := swarm.Decode(b, 32)
	if err == nil {
		if nb := c.edit(m); nb != nil {
			b = nb
		}
	}
	if c.hang {
		<-ctx.Done() // silent, but the session stays open
		return ctx.Err()
	}
	return c.Conn.Send(ctx, b)
}

// TestFetchCorruptSeeder is acceptance 3: a seeder that corrupts chunks or
// hashes is dropped; nothing corrupt reaches the sink.
func TestFetchCorruptSeeder(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(m swarm.Message) []byte
	}{
		{"chunk", func(m swarm.Message) []byte {
			if c, ok := m.(swarm.Chunks); ok && c.First%3 == 1 {
				c.Data = bytes.Clone(c.Data)
				c.Data[len(c.Data)/2] ^= 1
				return c.Append(nil)
			}
			return nil
		}},
		{"hash", func(m swarm.Message) []byte {
			if c, ok := m.(swarm.Chunks); ok && len(c.Hashes) > 0 {
				c.Hashes = slices.Clone(c.Hashes)
				h := &c.Hashes[len(c.Hashes)-1]
				h.Hash = bytes.Clone(h.Hash)
				h.Hash[0] ^= 0x80
				return c.Append(nil)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := newObject(t, 1<<20, 16<<10)
				sink := newSink(t, o)
				sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
				bad := func(c swarm.Conn) swarm.Conn { return &tamperConn{Conn: c, edit: tc.edit} }
				st, _, _, err := runFetch(t, sn, o, sink, []func(swarm.Conn) swarm.Conn{bad, nil, nil}, swarm.FetchConfig{})
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				sink.check(t)
				if p := st.Peers[0]; !p.Bad || !errors.Is(p.Err, object.ErrBadChunk) {
					t.Errorf("bad seeder not dropped: %+v", p)
				}
				for _, p := range st.Peers[1:] {
					if p.Bad || p.Err != nil {
						t.Errorf("honest seeder dropped: %+v", p)
					}
				}
			})
		})
	}
}

// TestFetchSeedersDie is acceptance 4: half the seeders die mid-transfer
// (one link cut, one node gone); the fetch completes without a stall over
// 2 s of virtual time.
func TestFetchSeedersDie(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 2<<20, 16<<10)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		half := int(o.tree.Chunks()) / 2
		sink.put = func(n int) {
			if n == half {
				sn.net.Cut(nodeID(0), nodeID(1))
				sn.net.Endpoint(nodeID(2)).Close()
			}
		}
		st, took, start, err := runFetch(t, sn, o, sink, make([]func(swarm.Conn) swarm.Conn, 4), swarm.FetchConfig{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		sink.check(t)
		gap := sink.maxGap(start)
		t.Logf("took %v, longest gap %v, dup %d bytes, timeouts %d", took, gap, st.DupBytes, st.Timeouts)
		if gap > 2*time.Second {
			t.Errorf("stalled %v", gap)
		}
		for i, p := range st.Peers {
			if dead := i < 2; dead != (p.Err != nil) || p.Bad {
				t.Errorf("peer %d: %+v", i+1, p)
			}
		}
	})
}

// TestFetchSilentSeeder: a seeder that stops answering without closing is
// timed out and dropped; its chunks are asked elsewhere.
func TestFetchSilentSeeder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Large enough that the honest seeder is still sending when the
		// silent one's requests time out twice (2 s each) and it is dropped.
		o := newObject(t, 6<<20, 16<<10)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		var datas int
		silent := func(c swarm.Conn) swarm.Conn {
			tc := &tamperConn{Conn: c}
			tc.edit = func(m swarm.Message) []byte {
				if _, ok := m.(swarm.Chunks); ok {
					if datas++; datas > 5 {
						tc.hang = true
					}
				}
				return nil
			}
			return tc
		}
		st, took, start, err := runFetch(t, sn, o, sink, []func(swarm.Conn) swarm.Conn{silent, nil}, swarm.FetchConfig{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		sink.check(t)
		t.Logf("took %v, longest gap %v, timeouts %d", took, sink.maxGap(start), st.Timeouts)
		if st.Peers[0].Err == nil || st.Timeouts == 0 {
			t.Errorf("silent seeder not dropped: %+v", st)
		}
		if gap := sink.maxGap(start); gap > 2*time.Second {
			t.Errorf("stalled %v", gap)
		}
	})
}

// TestFetchMalformedPeer is acceptance 6: a malformed message ends that
// peer's session, not the fetch.
func TestFetchMalformedPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 256<<10, 16<<10)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		var datas int
		garbled := func(c swarm.Conn) swarm.Conn {
			return &tamperConn{Conn: c, edit: func(m swarm.Message) []byte {
				if _, ok := m.(swarm.Chunks); ok {
					if datas++; datas == 3 {
						return []byte{byte(swarm.TypeChunks), 0x80} // a cut uvarint
					}
				}
				return nil
			}}
		}
		st, _, _, err := runFetch(t, sn, o, sink, []func(swarm.Conn) swarm.Conn{garbled, nil}, swarm.FetchConfig{})
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		sink.check(t)
		if p := st.Peers[0]; !errors.Is(p.Err, swarm.ErrMalformed) {
			t.Errorf("malformed peer: %+v", p)
		}
		if p := st.Peers[1]; p.Err != nil {
			t.Errorf("honest peer: %+v", p)
		}
	})
}

// TestServeViolations: Serve ends the session on a malformed or
// out-of-protocol message from the client.
func TestServeViolations(t *testing.T) {
	o := newObject(t, 64<<10, 1024)
	id := o.id.Bytes()
	hs := swarm.Handshake{Capability: 1, ObjectID: id, Hash: object.SHA256, ChunkSize: 1024, Size: 64 << 10}
	for _, tc := range []struct {
		name string
		msgs [][]byte
		want error
	}{
		{"malformed", [][]byte{hs.Append(nil), {0x03, 0xff}}, swarm.ErrMalformed},
		{"request first", [][]byte{swarm.Request{Ranges: []swarm.Range{{0, 0}}}.Append(nil)}, swarm.ErrProtocol},
		{"other object", [][]byte{swarm.Handshake{Capability: 1, ObjectID: id, Hash: object.SHA256, ChunkSize: 2048, Size: 64 << 10}.Append(nil)}, swarm.ErrMismatch},
		{"past the end", [][]byte{hs.Append(nil), swarm.Request{Ranges: []swarm.Range{{60, 64}}}.Append(nil)}, swarm.ErrProtocol},
		{"too many", [][]byte{hs.Append(nil), swarm.Request{Ranges: []swarm.Range{{0, 63}}}.Append(nil)}, swarm.ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				c, done := servePair(t, ctx, o, swarm.ServeConfig{MaxRequests: 16})
				for _, m := range tc.msgs {
					if err := c.Send(ctx, m); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-done; !errors.Is(err, tc.want) {
					t.Errorf("Serve = %v, want %v", err, tc.want)
				}
			})
		})
	}
}

// TestServeCapabilities: Serve answers requested runs of a peer of
// capability 2 in CHUNKS messages, each verifying with the uncles it
// carries and those sent before; a peer of capability 1 (which knows no
// CHUNKS) gets INTEGRITY and DATA per chunk. Either way every chunk comes
// once, and verifies.
func TestServeCapabilities(t *testing.T) {
	o := newObject(t, 40<<10+5, 1024) // 41 chunks
	for _, capab := range []uint64{1, 2} {
		t.Run(fmt.Sprint("capability ", capab), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := t.Context()
				c, _ := servePair(t, ctx, o, swarm.ServeConfig{MaxRequests: 64})
				hs := swarm.Handshake{Capability: capab, ObjectID: o.id.Bytes(), Hash: object.SHA256, ChunkSize: 1024, Size: int64(len(o.data))}
				req := swarm.Request{Ranges: []swarm.Range{{First: 3, Last: 40}, {First: 0, Last: 1}}}
				for _, m := range []swarm.Message{hs, req} {
					if err := c.Send(ctx, m.Append(nil)); err != nil {
						t.Fatal(err)
					}
				}
				hashes := map[object.Bin][]byte{}
				known := func(b object.Bin) []byte { return hashes[b] }
				var got []uint64
				runs := 0
				for len(got) < 40 {
					b, err := c.RecvBuffer(ctx, nil)
					if err != nil {
						t.Fatal(err)
					}
					m, err := swarm.Decode(b, 32)
					if err != nil {
						t.Fatal(err)
					}
					var first uint64
					var data []byte
					switch m := m.(type) {
					case swarm.Integrity:
						for _, h := range m.Hashes {
							hashes[h.Bin] = h.Hash
						}
						continue
					case swarm.Data:
						first, data = uint64(m.Bin)/2, m.Data
					case swarm.Chunks:
						if capab < swarm.CapChunks {
							t.Fatal("CHUNKS sent to a peer of capability 1")
						}
						for _, h := range m.Hashes {
							hashes[h.Bin] = h.Hash
						}
						first, data = m.First, m.Data
						runs++
					default:
						continue // HANDSHAKE, HAVE, UNCHOKE
					}
					chunks, _, err := o.info.VerifyRange(first, data, known)
					if err != nil {
						t.Fatalf("chunks from %d: %v", first, err)
					}
					for k := range chunks {
						got = append(got, first+uint64(k))
					}
				}
				want := append([]uint64{}, 0, 1)
				for i := uint64(3); i <= 40; i++ {
					want = append(want, i)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("chunks %v, want %v", got, want)
				}
				if capab >= swarm.CapChunks && (runs == 0 || runs >= len(got)) {
					t.Errorf("%d CHUNKS messages for %d chunks: no runs", runs, len(got))
				}
			})
		})
	}
}

// gatedConn is a Serve end of a circuit whose Send of a CHUNKS message
// waits until gate is closed.
type gatedConn struct {
	swarm.Conn
	gate chan struct{}
}

func (c *gatedConn) Send(ctx context.Context, b []byte) error {
	if len(b) > 0 && swarm.MsgType(b[0]) == swarm.TypeChunks {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.Conn.Send(ctx, b)
}

// countedSource counts the runs read from its source.
type countedSource struct {
	swarm.ObjectSource
	runs atomic.Int32
}

func (s *countedSource) AppendChunks(dst []byte, id cid.Cid, first, count uint64) ([]byte, error) {
	s.runs.Add(1)
	return s.ObjectSource.AppendChunks(dst, id, first, count)
}

// TestServeReadsAhead: while Serve's first CHUNKS message waits to be sent,
// the next run is already read from the source, and no more than that one:
// the path need not wait for the source, and a session holds at most two
// runs.
func TestServeReadsAhead(t *testing.T) {
	o := newObject(t, 64<<10, 1024)
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		src := &countedSource{ObjectSource: o.seederStore(t)}
		gate := make(chan struct{})
		c, _ := serveWrapped(t, ctx, src, o, swarm.ServeConfig{MaxRequests: 64}, func(c swarm.Conn) swarm.Conn {
			return &gatedConn{Conn: c, gate: gate}
		})
		hs := swarm.Handshake{Capability: swarm.CapChunks, ObjectID: o.id.Bytes(), Hash: object.SHA256, ChunkSize: 1024, Size: int64(len(o.data))}
		req := swarm.Request{Ranges: []swarm.Range{{First: 0, Last: 63}}}
		for _, m := range []swarm.Message{hs, req} {
			if err := c.Send(ctx, m.Append(nil)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond) // the request arrives (the link's latency is 1 ms)
		synctest.Wait()
		if n := src.runs.Load(); n != 2 {
			t.Fatalf("%d runs read while the first waits to be sent, want 2", n)
		}
		close(gate)
		got := 0
		for got < 64 {
			b, err := c.RecvBuffer(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := swarm.Decode(b, 32); err != nil {
				t.Fatal(err)
			} else if ch, ok := m.(swarm.Chunks); ok {
				got += len(ch.Data) / 1024
			}
		}
	})
}

// TestFetchLateSeeders: Fetch starts with the one seeder at hand; when it
// dies, Fetch waits on the open peers channel instead of giving up, and a
// seeder that comes later finishes the object. Once the channel is closed
// and no session is left, Fetch returns ErrNoPeers.
func TestFetchLateSeeders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		o := newObject(t, 1<<20, 16<<10)
		sink := newSink(t, o)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		src := o.seederStore(t)
		peers := make(chan swarm.Conn)
		half := int(o.tree.Chunks()) / 2
		died := make(chan struct{})
		sink.put = func(n int) {
			if n == half {
				sn.net.Endpoint(nodeID(1)).Close()
				close(died)
			}
		}
		type result struct {
			st  swarm.FetchStats
			err error
		}
		res := make(chan result, 1)
		go func() {
			st, err := swarm.Fetch(ctx, o.info, peers, sink, swarm.FetchConfig{})
			res <- result{st, err}
		}()
		peers <- sn.connect(t, ctx, 1, src, o.info, nil)
		<-died
		time.Sleep(10 * time.Second) // virtual: far past every timeout
		synctest.Wait()
		select {
		case r := <-res:
			t.Fatalf("Fetch returned with the peers channel open: %+v, %v", r.st, r.err)
		default:
		}
		peers <- sn.connect(t, ctx, 2, src, o.info, nil)
		r := <-res
		if r.err != nil {
			t.Fatalf("Fetch: %v", r.err)
		}
		sink.check(t)
		if len(r.st.Peers) != 2 || r.st.Peers[0].Err == nil || r.st.Peers[1].Chunks == 0 {
			t.Errorf("stats %+v", r.st)
		}

		// A fetch whose only seeder is gone and whose channel closes.
		sink2 := newSink(t, o)
		peers2 := make(chan swarm.Conn, 1)
		peers2 <- sn.connect(t, ctx, 3, src, o.info, nil)
		sn.net.Endpoint(nodeID(3)).Close()
		close(peers2)
		if _, err := swarm.Fetch(ctx, o.info, peers2, sink2, swarm.FetchConfig{}); !errors.Is(err, swarm.ErrNoPeers) {
			t.Errorf("Fetch with no seeder left = %v, want ErrNoPeers", err)
		}
	})
}

// partialStore returns a store holding the object's tree and its first k
// chunks, and a function that stores chunks [from, to).
func (o testObject) partialStore(t *testing.T, k uint64) (*store.Mem, func(from, to uint64)) {
	t.Helper()
	src := store.NewMem()
	t.Cleanup(func() { src.Close() })
	if err := src.PutObject(o.id, o.info); err != nil {
		t.Fatal(err)
	}
	if err := object.PutTreeHashes(src, o.id, o.tree); err != nil {
		t.Fatal(err)
	}
	putChunks := func(from, to uint64) {
		for i := from; i < to; i++ {
			if err := src.PutChunk(o.id, i, o.chunk(i)); err != nil {
				t.Error(err)
			}
		}
	}
	putChunks(0, k)
	return src, putChunks
}

// TestFetchStalls: when the only seeder holds half the object and says
// nothing more, Fetch keeps that half and gives up after FetchConfig.Idle
// with ErrStalled instead of waiting forever.
func TestFetchStalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 1<<20, 16<<10)
		sink := newSink(t, o)
		src, _ := o.partialStore(t, o.tree.Chunks()/2)
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		start := time.Now()
		st, err := swarm.Fetch(t.Context(), o.info, peersOf(sn.connect(t, t.Context(), 1, src, o.info, nil)), sink, swarm.FetchConfig{Idle: 5 * time.Second})
		if !errors.Is(err, swarm.ErrStalled) {
			t.Fatalf("Fetch = %v, want ErrStalled", err)
		}
		if took := time.Since(start); took < 5*time.Second || took > 7*time.Second {
			t.Errorf("gave up after %v, want about 5s after the last chunk", took)
		}
		if st.Chunks != o.tree.Chunks()/2 {
			t.Errorf("%d chunks kept, want %d", st.Chunks, o.tree.Chunks()/2)
		}
	})
}

// TestServeAnnouncesGrowth: a seeder that holds half the object when the
// session starts announces the rest in later HAVEs once it has it (as a
// node does while it is still fetching), and the fetch completes from it.
func TestServeAnnouncesGrowth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		o := newObject(t, 1<<20, 16<<10)
		sink := newSink(t, o)
		n := o.tree.Chunks()
		src, putChunks := o.partialStore(t, n/2)
		grown := swarm.NewGrowth()
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond, Bandwidth: 1 << 20})
		sn.grown = grown
		sink.put = func(k int) {
			if k == int(n/2) {
				putChunks(n/2, n)
				for i := n / 2; i < n; i++ {
					grown.Add(i)
				}
			}
		}
		st, err := swarm.Fetch(ctx, o.info, peersOf(sn.connect(t, ctx, 1, src, o.info, nil)), sink, swarm.FetchConfig{})
		if err != nil {
			t.Fatalf("Fetch: %v (%+v)", err, st)
		}
		sink.check(t)
		if st.Peers[0].Chunks != n {
			t.Errorf("stats %+v", st)
		}
		cancel()
		sn.serveWG.Wait()
	})
}

// TestPex: a seeder names the other peers of the swarm in a PEX after
// UNCHOKE (ServeConfig.Peers); Fetch hands them to FetchConfig.OnPex.
func TestPex(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 64<<10, 16<<10)
		sink := newSink(t, o)
		named := []swarm.PexPeer{{ID: nodeID(7), Addr: []byte{4, 127, 0, 0, 1}}, {ID: nodeID(8)}}
		sn := newSwarmNet(memlink.Config{Latency: 5 * time.Millisecond})
		sn.peers = func() []swarm.PexPeer { return named }
		var got []swarm.PexPeer
		cfg := swarm.FetchConfig{OnPex: func(ps []swarm.PexPeer) { got = append(got, ps...) }}
		if _, _, _, err := runFetch(t, sn, o, sink, make([]func(swarm.Conn) swarm.Conn, 1), cfg); err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(got) != 2 || got[0].ID != nodeID(7) || !bytes.Equal(got[0].Addr, named[0].Addr) || got[1].ID != nodeID(8) || len(got[1].Addr) != 0 {
			t.Fatalf("OnPex got %+v, want %+v", got, named)
		}
	})
}
