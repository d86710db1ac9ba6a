package swarm_test

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/swarm"
)

// batchSink records the size of every PutChunks and checks that each
// chunk's uncles were put before it.
type batchSink struct {
	*checkedSink
	calls []int
	fail  error // returned by every PutChunks when set
}

func (s *batchSink) PutChunks(id cid.Cid, chunks []object.Chunk) error {
	if s.fail != nil {
		return s.fail
	}
	s.calls = append(s.calls, len(chunks))
	for _, c := range chunks {
		b := object.ChunkBin(c.Index)
		for b.Layer() < s.o.info.Height() {
			if u := b.Sibling(); u.BaseOffset() < s.o.info.Chunks() {
				if _, err := s.GetHash(id, u); err != nil {
					s.t.Errorf("chunk %d put before its uncle %v: %v", c.Index, u, err)
				}
			}
			b = b.Parent()
		}
	}
	return s.checkedSink.PutChunks(id, chunks)
}

func TestFetchBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 200*1024+7, 1024) // 201 chunks
		sink := &batchSink{checkedSink: newSink(t, o)}
		sn := newSwarmNet(memlink.Config{Latency: time.Millisecond})
		cfg := swarm.FetchConfig{BatchChunks: 16, BatchBytes: 10 * 1024, InFlight: 32}
		st, _, _, err := runFetch(t, sn, o, sink, make([]func(swarm.Conn) swarm.Conn, 2), cfg)
		if err != nil {
			t.Fatalf("Fetch: %v %+v", err, st)
		}
		sink.check(t)
		if st.Chunks != o.tree.Chunks() {
			t.Errorf("stats %+v", st)
		}
		total := 0
		for _, n := range sink.calls {
			if n < 1 || n > 10 { // BatchBytes allows 10 chunks of 1 KiB
				t.Errorf("a batch of %d chunks", n)
			}
			total += n
		}
		if total != int(o.tree.Chunks()) {
			t.Errorf("%d chunks put, want %d", total, o.tree.Chunks())
		}
		if len(sink.calls) >= total/2 {
			t.Errorf("%d PutChunks calls for %d chunks: not batched", len(sink.calls), total)
		}
	})
}

func TestFetchSinkFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newObject(t, 64*1024, 1024)
		boom := errors.New("disk full")
		sink := &batchSink{checkedSink: newSink(t, o), fail: boom}
		sn := newSwarmNet(memlink.Config{Latency: time.Millisecond})
		st, _, _, err := runFetch(t, sn, o, sink, make([]func(swarm.Conn) swarm.Conn, 1), swarm.FetchConfig{})
		if !errors.Is(err, boom) {
			t.Fatalf("Fetch = %v, want %v", err, boom)
		}
		if st.Chunks != 0 {
			t.Errorf("%d chunks counted stored", st.Chunks)
		}
		if have, _ := sink.Have(o.id); have[0] != 0 {
			t.Errorf("Have = %08b after a failed put", have)
		}
	})
}
