package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/swarm"
)

// readObject reads object id out of n.
func readObject(t *testing.T, ctx context.Context, n *Node, id cid.Cid, progress func(done, total int64)) []byte {
	t.Helper()
	r, size, err := n.OpenObject(ctx, id, progress)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || int64(len(b)) != size {
		t.Fatalf("read %s: %d of %d bytes (%v)", id, len(b), size, err)
	}
	return b
}

func TestObjectLocal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)

	for _, size := range []int{0, 100, 16 << 10, 100_000} {
		data := make([]byte, size)
		rand.Read(data)
		put, err := n.PutObject(ctx, bytes.NewReader(data))
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
		var last int64 = -1
		if b := readObject(t, ctx, n, id, func(done, total int64) { last = done }); !bytes.Equal(b, data) || last != int64(size) {
			t.Fatalf("copy of %d bytes differs, progress %d", size, last)
		}
		// Read in small pieces too (Read rather than WriteTo).
		r, _, err := n.OpenObject(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(io.LimitReader(r, int64(size+1)))
		r.Close()
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("copy of %d bytes read piecewise differs (%v)", size, err)
		}
	}
	objs, err := n.ListObjects()
	if err != nil || len(objs) != 4 {
		t.Fatalf("list: %d objects (%v)", len(objs), err)
	}
	// The spool files are gone.
	if m, _ := filepath.Glob(filepath.Join(n.cfg.Home, spoolPattern)); len(m) != 0 {
		t.Fatalf("spool files left: %v", m)
	}
}

// errAfter yields n bytes, then fails.
type errAfter struct{ n int }

func (r *errAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("the caller went away")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestObjectBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)
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
	_, err = n.PutObject(ctx, &errAfter{n: 100_000})
	if err == nil || !strings.Contains(err.Error(), "the caller went away") {
		t.Errorf("put from a failing reader: %v", err)
	}
	if objs, _ := n.ListObjects(); len(objs) != 0 {
		t.Errorf("a failed put stored %+v", objs)
	}
	_, err = n.GetObject(ctx, unknown, "", nil)
	check("get unknown, no peers", err, api.ErrNotFound)
	_, _, err = n.OpenObject(ctx, unknown, nil)
	check("open unknown, no peers", err, api.ErrNotFound)
	_, err = n.GetObject(ctx, notObject, "", nil)
	check("get non-object CID", err, api.ErrInvalidParams)
	_, err = n.StatObject(unknown)
	check("stat unknown", err, api.ErrNotFound)
	check("pin unknown", n.PinObject(ctx, unknown), api.ErrNotFound)
	check("unpin unknown", n.UnpinObject(unknown), api.ErrNotFound)
}

// TestObjectPathsOff: a node without object directories refuses every
// path, saying how to allow one, and reads or writes nothing.
func TestObjectPathsOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	id, _ := n.PutObject(ctx, strings.NewReader("held"))
	held, err := cid.Decode(id.CID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.PutObjectFile(ctx, in)
	if !errors.Is(err, api.ErrNotAllowed) || !strings.Contains(err.Error(), `"object_dirs"`) {
		t.Errorf("put by path: %v, want not allowed, naming object_dirs", err)
	}
	out := filepath.Join(dir, "out")
	if _, err := n.GetObject(ctx, held, out, nil); !errors.Is(err, api.ErrNotAllowed) {
		t.Errorf("get to a path: %v, want not allowed", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("get to a path wrote it: %v", err)
	}
	if objs, _ := n.ListObjects(); len(objs) != 1 {
		t.Errorf("the node holds %d objects, want the 1 put as bytes", len(objs))
	}
}

// TestObjectPaths: with object directories, put reads and get writes only
// inside them, symlinks and ".." resolved first; outside, the call is
// refused before anything is read, fetched or written.
func TestObjectPaths(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	base := t.TempDir()
	allowed, outside := filepath.Join(base, "media"), filepath.Join(base, "private")
	for _, d := range []string{allowed, outside, filepath.Join(allowed, "sub")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// A second allowed directory named through a symlink.
	linkedDir := filepath.Join(base, "linked")
	if err := os.Symlink(filepath.Join(allowed, "sub"), linkedDir); err != nil {
		t.Fatal(err)
	}
	n, _ := startNodeWith(t, ctx, Config{ObjectDirs: []string{allowed, linkedDir}})
	write := func(path, data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(allowed, "in"), "public")
	write(filepath.Join(outside, "secret"), "secret")
	for _, link := range [][2]string{
		{filepath.Join(allowed, "to-secret"), filepath.Join(outside, "secret")}, // a file symlink out
		{filepath.Join(allowed, "to-private"), outside},                         // a directory symlink out
	} {
		if err := os.Symlink(link[1], link[0]); err != nil {
			t.Fatal(err)
		}
	}
	unknown, err := cid.Decode("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	if err != nil {
		t.Fatal(err)
	}

	// Inside: put reads, get writes (also through the symlinked dir).
	put, err := n.PutObjectFile(ctx, filepath.Join(allowed, "in"))
	if err != nil {
		t.Fatalf("put inside: %v", err)
	}
	id, err := cid.Decode(put.CID)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{filepath.Join(allowed, "out"), allowed + "/sub/../out2", filepath.Join(linkedDir, "out3")} {
		if got, err := n.GetObject(ctx, id, out, nil); err != nil || got.Path != out || got.Size != 6 {
			t.Fatalf("get to %s: %+v (%v)", out, got, err)
		}
		if b, err := os.ReadFile(out); err != nil || string(b) != "public" {
			t.Fatalf("get wrote %q to %s (%v)", b, out, err)
		}
	}

	// Outside: refused, nothing read.
	for _, path := range []string{
		filepath.Join(outside, "secret"),
		allowed + "/../private/secret",
		filepath.Join(allowed, "to-secret"),
		filepath.Join(allowed, "to-private", "secret"),
		filepath.Join(outside, "missing"), // not even whether it exists
		"/etc/passwd",
	} {
		_, err := n.PutObjectFile(ctx, path)
		if !errors.Is(err, ErrPathNotAllowed) {
			t.Errorf("put %s: %v, want not allowed", path, err)
		} else {
			t.Logf("put %s: %v", path, err)
		}
	}
	if objs, _ := n.ListObjects(); len(objs) != 1 {
		t.Errorf("refused puts stored objects: %d held, want 1", len(objs))
	}

	// Outside: refused before fetching (an unknown object would
	// otherwise fail as not found) and nothing written.
	for _, path := range []string{
		filepath.Join(outside, "out"),
		allowed + "/../private/out",
		filepath.Join(allowed, "to-private", "out"),
	} {
		for _, obj := range []cid.Cid{id, unknown} {
			if _, err := n.GetObject(ctx, obj, path, nil); !errors.Is(err, ErrPathNotAllowed) {
				t.Errorf("get %s to %s: %v, want not allowed", obj, path, err)
			}
		}
	}
	// A symlink inside named as the file is replaced, not followed.
	link := filepath.Join(allowed, "to-secret")
	if _, err := n.GetObject(ctx, id, link, nil); err != nil {
		t.Fatalf("get over a symlink inside: %v", err)
	}
	if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("get over a symlink left %v (%v), want a regular file", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "secret" {
		t.Errorf("the file outside now holds %q (%v)", b, err)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 1 {
		t.Errorf("the outside directory holds %v (%v), want only the secret", entries, err)
	}

	// Inside but unusable: bad paths.
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"put relative", func() error { _, err := n.PutObjectFile(ctx, "in"); return err }()},
		{"put missing", func() error { _, err := n.PutObjectFile(ctx, filepath.Join(allowed, "missing")); return err }()},
		{"put directory", func() error { _, err := n.PutObjectFile(ctx, filepath.Join(allowed, "sub")); return err }()},
		{"get into a missing directory", func() error {
			_, err := n.GetObject(ctx, id, filepath.Join(allowed, "no", "such", "dir"), nil)
			return err
		}()},
		{"get over a directory", func() error { _, err := n.GetObject(ctx, id, filepath.Join(allowed, "sub"), nil); return err }()},
	} {
		if !errors.Is(tc.err, ErrBadPath) {
			t.Errorf("%s: %v, want bad path", tc.name, tc.err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(allowed, ".*.part")); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
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
	tree, err := object.Build(bytes.NewReader(data), object.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, info, n := tree.ID(), tree.Info(), tree.Chunks()
	chunk := func(i uint64) object.Chunk {
		cs := uint64(info.ChunkSize)
		return object.Chunk{Index: i, Data: data[i*cs : min(uint64(len(data)), (i+1)*cs)]}
	}
	store := func(from, to uint64) {
		var cs []object.Chunk
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
	if err := object.PutTreeHashes(b.store, id, tree); err != nil {
		t.Fatal(err)
	}
	store(0, n/2)
	if err := c.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	half := int64(n/2) * int64(info.ChunkSize)
	var once sync.Once
	got := readObject(t, ctx, c, id, func(done, total int64) {
		if done >= half {
			once.Do(func() { store(n/2, n) }) // B's fetch goes on
		}
	})
	if !bytes.Equal(got, data) {
		t.Fatal("C's copy differs")
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
	var id cid.Cid
	for _, n := range []*Node{a, d} {
		put, err := n.PutObject(ctx, bytes.NewReader(data))
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
	// Each session is answered (so A holds it in a slot) before the next
	// opens: circuits' streams may reach A in any order.
	var open []swarm.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range maxSwarmSessions + 1 {
		c, err := l.Open(ctx, swarm.Service, flitlink.Data)
		if err != nil {
			t.Fatal(err)
		}
		_, conn, err := swarm.Probe(ctx, c, id)
		if i == maxSwarmSessions {
			// One more is refused (closed unanswered), though A holds
			// the object.
			if !errors.Is(err, io.EOF) {
				t.Fatalf("session %d: %v, want refused (io.EOF)", i+1, err)
			}
			break
		}
		if err != nil {
			t.Fatalf("session %d: %v", i+1, err)
		}
		open = append(open, conn)
	}
}

// TestObjectDirsConfig: config.json's object_dirs must be absolute.
func TestObjectDirsConfig(t *testing.T) {
	home := t.TempDir()
	if _, err := Init(home); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dirs string
		ok   bool
	}{
		{`["/srv/media", "/tmp"]`, true},
		{`["media"]`, false},
	} {
		cfg := `{"version": 1, "object_dirs": ` + tc.dirs + `}`
		if err := os.WriteFile(filepath.Join(home, configFile), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		fc, err := LoadFileConfig(home)
		if (err == nil) != tc.ok {
			t.Errorf("object_dirs %s: %v, want ok %v", tc.dirs, err, tc.ok)
		} else if tc.ok && len(fc.ObjectDirs) != 2 {
			t.Errorf("object_dirs %s read as %q", tc.dirs, fc.ObjectDirs)
		}
	}
}

// TestTryDoesNotWaitForProbe: a source that never answers (a UDP socket
// that swallows the QUIC handshake) is probed in the background. try is
// called from the fetch loop when a PEX names peers, and once waited for
// the dial, stalling the fetch for the dial timeout per dead peer named.
func TestTryDoesNotWaitForProbe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	n := startNode(t, ctx)
	hole, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := multiaddr.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", hole.LocalAddr().(*net.UDPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := object.Build(strings.NewReader("nobody has this"), object.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := tree.ID()
	fctx, stop := context.WithCancel(ctx)
	s := n.findSources(fctx, id)
	s.try(peer.AddrInfo{ID: peer.ID(key.Public().PeerIDBytes()), Addrs: []multiaddr.Multiaddr{addr}})
	// try returned with the dial still pending: ending the fetch ends
	// the probe, which reports the cancellation, not a dial timeout.
	stop()
	for r := range s.results {
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("probe of %s: %v, want context.Canceled", r.peer, r.err)
		}
	}
}
