package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/swarm"
)

func TestObjectLocal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)
	dir := t.TempDir()

	for _, size := range []int{0, 100, 16 << 10, 100_000} {
		data := make([]byte, size)
		rand.Read(data)
		in := filepath.Join(dir, "in")
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		put, err := n.PutObject(ctx, in)
		if err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		id, err := cid.Decode(put.CID)
		if err != nil {
			t.Fatal(err)
		}
		st, err := n.StatObject(id)
		if err != nil || !st.Pinned || !st.Complete() || st.Size != int64(size) {
			t.Fatalf("stat after put of %d bytes: %+v (%v)", size, st, err)
		}
		out := filepath.Join(dir, "out")
		var last int64 = -1
		got, err := n.GetObject(ctx, id, out, func(done, total int64) { last = done })
		if err != nil || got.Size != int64(size) || last != int64(size) {
			t.Fatalf("get %d bytes: %+v, progress %d (%v)", size, got, last, err)
		}
		if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("copy of %d bytes differs (%v)", size, err)
		}
	}
	objs, err := n.ListObjects()
	if err != nil || len(objs) != 4 {
		t.Fatalf("list: %d objects (%v)", len(objs), err)
	}
}

func TestObjectBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)
	dir := t.TempDir()
	unknown, err := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if err != nil {
		t.Fatal(err)
	}
	notObject, err := cid.Decode("bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy") // dag-cbor
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	_, err = n.PutObject(ctx, "relative")
	check("put relative path", err, api.ErrInvalidParams)
	_, err = n.PutObject(ctx, filepath.Join(dir, "missing"))
	check("put missing file", err, api.ErrInvalidParams)
	_, err = n.PutObject(ctx, dir)
	check("put directory", err, api.ErrInvalidParams)
	_, err = n.GetObject(ctx, unknown, "", nil)
	check("get unknown, no peers", err, api.ErrNotFound)
	_, err = n.GetObject(ctx, notObject, "", nil)
	check("get non-object CID", err, api.ErrInvalidParams)
	_, err = n.GetObject(ctx, unknown, filepath.Join(dir, "no", "such", "dir"), nil)
	check("get into a missing directory", err, api.ErrInvalidParams)
	_, err = n.StatObject(unknown)
	check("stat unknown", err, api.ErrNotFound)
	check("pin unknown", n.PinObject(ctx, unknown), api.ErrNotFound)
	check("unpin unknown", n.UnpinObject(unknown), api.ErrNotFound)
}

// TestServeWhileFetching: B holds half of an object, as while it is still
// fetching it; C, linked to B alone, gets that half from B, and the rest
// as soon as B stores it (B's swarm/1 session announces new chunks in
// later HAVEs), ending with every byte right.
func TestServeWhileFetching(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	b, c := startNode(t, ctx), startNode(t, ctx)
	data := make([]byte, 40*16<<10+100)
	rand.Read(data)
	tree, err := swarm.Build(bytes.NewReader(data), swarm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, info, n := tree.ID(), tree.Info(), tree.Chunks()
	chunk := func(i uint64) swarm.Chunk {
		cs := uint64(info.ChunkSize)
		return swarm.Chunk{Index: i, Data: data[i*cs : min(uint64(len(data)), (i+1)*cs)]}
	}
	store := func(from, to uint64) {
		var cs []swarm.Chunk
		for i := from; i < to; i++ {
			cs = append(cs, chunk(i))
		}
		if err := b.store.PutChunks(id, cs); err != nil {
			t.Error(err)
		}
		b.grew(id, cs)
	}
	if err := b.store.PutObject(id, info); err != nil {
		t.Fatal(err)
	}
	if err := swarm.PutTreeHashes(b.store, id, tree); err != nil {
		t.Fatal(err)
	}
	store(0, n/2)
	if err := c.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	half := int64(n/2) * int64(info.ChunkSize)
	var once sync.Once
	out := filepath.Join(t.TempDir(), "out")
	if _, err := c.GetObject(ctx, id, out, func(done, total int64) {
		if done >= half {
			once.Do(func() { store(n/2, n) }) // B's fetch goes on
		}
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("C's copy differs (%v)", err)
	}
}

// TestPexSources: a node that had a swarm/1 session about an object names
// that peer in its PEX (pexPeers); a fetch that is told of a peer by PEX
// probes it and gets a session there (D holds the object but is known to
// no one: only the PEX leads to it); once the fetch ends and its sessions
// are closed, no more results come (the results channel closes).
func TestPexSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b, c, d := startNode(t, ctx), startNode(t, ctx), startNode(t, ctx), startNode(t, ctx)
	data := make([]byte, 100_000)
	rand.Read(data)
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var id cid.Cid
	for _, n := range []*Node{a, d} {
		put, err := n.PutObject(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if id, err = cid.Decode(put.CID); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	mustGet(t, ctx, b, id) // B's session with A: A remembers B
	if named := a.pexPeers(id, c.ID()); len(named) != 1 || named[0].ID != b.ID() || len(named[0].Addr) == 0 {
		t.Fatalf("A names %+v to C, want B with an address", named)
	}
	if got := a.pexPeers(id, b.ID()); len(got) != 0 {
		t.Fatalf("A names %+v to B itself", got)
	}

	if err := c.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	fctx, fcancel := context.WithCancel(ctx)
	src := c.findSources(fctx, id)
	first := <-src.results
	if first.err != nil || first.peer != peer.ID(a.ID().PeerIDBytes()) {
		t.Fatalf("first source: %v, %v; want A", first.peer, first.err)
	}
	addr, err := multiaddr.NewMultiaddr(strings.TrimSuffix(addrOf(t, d), "/p2p/"+peer.ID(d.ID().PeerIDBytes()).String()))
	if err != nil {
		t.Fatal(err)
	}
	src.pex([]swarm.PexPeer{{ID: d.ID(), Addr: addr.Bytes()}})
	var second probed
	for second = range src.results {
		if second.peer == peer.ID(d.ID().PeerIDBytes()) {
			break
		}
		if second.conn != nil { // B, if the DHT found it meanwhile
			second.conn.Close()
		}
	}
	if second.err != nil || second.peer != peer.ID(d.ID().PeerIDBytes()) || second.info.Size != 100_000 {
		t.Fatalf("source named by PEX: %v, %+v, %v; want D's session", second.peer, second.info, second.err)
	}
	fcancel()
	first.conn.Close()
	second.conn.Close()
	for r := range src.results {
		if r.conn != nil {
			r.conn.Close()
		}
	}
}

// TestSwarmSessionLimit: a peer gets at most maxSwarmSessions swarm/1
// sessions at once; a circuit beyond them is closed unanswered.
func TestSwarmSessionLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b := startNode(t, ctx), startNode(t, ctx)
	id := putFile(t, ctx, a, 1000)
	ai, err := peer.AddrInfoFromString(addrOf(t, a))
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.link(ctx, *ai)
	if err != nil {
		t.Fatal(err)
	}
	var open []*flitlink.Circuit
	for range maxSwarmSessions + 1 {
		c, err := l.Open(ctx, swarm.Service, flitlink.Data)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	// The sessions wait for a HANDSHAKE that never comes; one more is
	// refused (closed unanswered) even for an object A holds.
	if _, _, err := swarm.Probe(ctx, open[maxSwarmSessions], id); !errors.Is(err, io.EOF) {
		t.Fatalf("session %d: %v, want refused (io.EOF)", maxSwarmSessions+1, err)
	}
	for _, c := range open[:maxSwarmSessions] {
		c.Close()
	}
}
