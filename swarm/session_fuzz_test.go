package swarm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/swarm"
)

// scriptConn is a Conn whose peer says msgs, then closes; what is sent to
// it is dropped.
type scriptConn struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (c *scriptConn) RecvBuffer(ctx context.Context, _ []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.msgs) == 0 {
		return nil, io.EOF
	}
	m := c.msgs[0]
	c.msgs = c.msgs[1:]
	return m, nil
}

func (c *scriptConn) Send(ctx context.Context, msg []byte) error { return ctx.Err() }
func (c *scriptConn) Close() error                               { return nil }

// splitMessages cuts b into messages, each led by a 2-byte little-endian
// length.
func splitMessages(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 {
		n := min(int(binary.LittleEndian.Uint16(b)), len(b)-2)
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

func joinMessages(ms ...swarm.Message) []byte {
	var b []byte
	for _, m := range ms {
		e := m.Append(nil)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}

// TestFetchHashFlood: a seeder that sends hashes nobody needs (in the
// tree, but more than the chunks it sent could use) is dropped as
// breaking the protocol, before they grow Fetch's memory.
func TestFetchHashFlood(t *testing.T) {
	o := newObject(t, 1<<20, 1024) // 1024 chunks: 2047 bins in the tree
	hs := swarm.Handshake{Capability: swarm.Capability, ObjectID: o.id.Bytes(), Hash: o.info.Hash,
		ChunkSize: o.info.ChunkSize, Size: o.info.Size, MaxRequests: 8}
	msgs := [][]byte{hs.Append(nil), swarm.Unchoke{}.Append(nil)}
	for m := range 4 {
		var flood swarm.Integrity
		for i := range swarm.MaxUncles {
			b := object.NewBin(1, uint64(m*swarm.MaxUncles+i))
			flood.Hashes = append(flood.Hashes, object.BinHash{Bin: b, Hash: o.tree.Node(b)})
		}
		msgs = append(msgs, flood.Append(nil))
	}
	peers := make(chan swarm.Conn, 1)
	peers <- &scriptConn{msgs: msgs}
	close(peers)
	st, err := swarm.Fetch(t.Context(), o.info, peers, newSink(t, o), swarm.FetchConfig{})
	if !errors.Is(err, swarm.ErrNoPeers) || len(st.Peers) != 1 || !errors.Is(st.Peers[0].Err, swarm.ErrProtocol) {
		t.Fatalf("Fetch = %v, peer %+v; want the flooder dropped with ErrProtocol", err, st.Peers)
	}
}

// FuzzSessions feeds arbitrary message sequences to both ends of a swarm/1
// session: to Serve after a valid HANDSHAKE, and to Fetch as a seeder's
// after its HANDSHAKE. Neither may panic or hang; each ends with nil or
// one of the session errors; Fetch never stores a chunk that differs from
// the object (checkedSink) and, its only seeder gone, ends with ErrNoPeers
// unless the sequence carried the whole object.
func FuzzSessions(f *testing.F) {
	o := newObject(f, 5*1024+3, 1024)
	hs := swarm.Handshake{Capability: swarm.Capability, ObjectID: o.id.Bytes(), Hash: o.info.Hash,
		ChunkSize: o.info.ChunkSize, Size: o.info.Size, MaxRequests: 8}
	uncles := func(i uint64) []object.BinHash {
		var out []object.BinHash
		for b := object.ChunkBin(i); b.Layer() < o.info.Height(); b = b.Parent() {
			if u := b.Sibling(); u.BaseOffset() < o.tree.Chunks() {
				out = append(out, object.BinHash{Bin: u, Hash: o.tree.Node(u)})
			}
		}
		return out
	}
	f.Add(joinMessages(swarm.Request{Ranges: []swarm.Range{{First: 0, Last: 3}}}, swarm.Cancel{Ranges: []swarm.Range{{First: 1, Last: 1}}}))
	f.Add(joinMessages(swarm.Have{Ranges: []swarm.Range{{First: 0, Last: 5}}}, swarm.Unchoke{},
		swarm.Integrity{Hashes: uncles(0)}, swarm.Data{Bin: object.ChunkBin(0), Data: o.chunk(0)},
		swarm.Pex{Peers: []swarm.PexPeer{{ID: nodeID(3)}}}, swarm.Choke{}))
	f.Add(joinMessages(swarm.Have{Ranges: []swarm.Range{{First: 2, Last: 2}}}, swarm.Unchoke{},
		swarm.Integrity{Hashes: uncles(2)}, swarm.Data{Bin: object.ChunkBin(2), Data: bytes.Repeat([]byte{1}, 1024)}))
	f.Add([]byte{3, 0, 0x03, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, script []byte) {
		ctx := t.Context()
		msgs := splitMessages(script)

		src := o.seederStore(t)
		in := &scriptConn{msgs: append([][]byte{hs.Append(nil)}, msgs...)}
		err := swarm.Serve(ctx, in, src, swarm.ServeConfig{Info: o.info, MaxRequests: 8})
		if err != nil && !errors.Is(err, swarm.ErrMalformed) && !errors.Is(err, swarm.ErrProtocol) && !errors.Is(err, swarm.ErrMismatch) {
			t.Fatalf("Serve: %v", err)
		}

		sink := newSink(t, o)
		peers := make(chan swarm.Conn, 1)
		peers <- &scriptConn{msgs: append([][]byte{hs.Append(nil)}, msgs...)}
		close(peers)
		st, err := swarm.Fetch(ctx, o.info, peers, sink, swarm.FetchConfig{})
		if err != nil && !errors.Is(err, swarm.ErrNoPeers) {
			t.Fatalf("Fetch: %v", err)
		}
		if err == nil {
			sink.check(t)
		} else if st.Chunks == o.tree.Chunks() {
			t.Fatalf("Fetch = %v with every chunk stored", err)
		}
	})
}
