package node

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

// Objects: PutObject stores and pins bytes streamed by the caller
// (PutObjectFile a file inside the object directories) and provides the
// object in the DHT; OpenObject makes the node hold one, fetching it
// (fetch.go, sources.go) from the peers that provide it over swarm/1
// circuits, verifying every chunk before it is stored, then provides it
// too, and streams it out of the store; GetObject writes it to a file
// inside the object directories. Paths callers name are used only inside
// Config.ObjectDirs (objectFile).
// Pins are also leases in the node's feed; pins.go keeps them and the cache.
//
// A fetcher knows only the object's ID; it learns the size and chunk size
// from each seeder's HANDSHAKE and trusts them only when they make that very
// ID with the ID's root (swarm.Probe). Seeders look the object up by the ID
// in the fetcher's HANDSHAKE (swarm.Accept) and refuse unknown objects by
// closing the circuit.

// Object timeouts.
const (
	// dhtTimeout bounds one provide or provider lookup.
	dhtTimeout = 20 * time.Second
	// probeTimeout bounds reaching one provider: dial, link, circuit and
	// its HANDSHAKE.
	probeTimeout = 10 * time.Second
	// maxSources bounds the linked peers and, apart, the DHT providers
	// a get probes.
	maxSources = 8
	// maxSwarmSessions bounds the swarm/1 sessions one peer may have
	// with this node at once (one per object it fetches from here).
	maxSwarmSessions = 16
)

// Errors about paths callers name.
var (
	// ErrBadPath reports a file path the node cannot use.
	ErrBadPath = fmt.Errorf("%w: bad path", api.ErrInvalidParams)
	// ErrPathNotAllowed reports a path outside the object directories
	// (Config.ObjectDirs): the node reads and writes nothing there.
	ErrPathNotAllowed = fmt.Errorf("%w: path outside the object directories", api.ErrNotAllowed)
)

// Spooling a put (PutObject).
const (
	// spoolPattern names the spool files in the home (os.CreateTemp).
	spoolPattern = ".object-*.spool"
	// spoolBuffer is the write buffer in front of a spool file.
	spoolBuffer = 256 << 10
)

// joinDHT joins the DHT through the bootstrap peers, then announces the
// objects the node keeps. A failure is logged: the node works alone.
func (n *Node) joinDHT(ctx context.Context) {
	if len(n.cfg.Bootstrap) == 0 {
		return
	}
	if err := n.dht.Bootstrap(ctx); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("dht bootstrap failed; objects are found only through linked peers", "err", err)
		}
		return
	}
	n.log.Info("dht joined", "bootstrap", len(n.cfg.Bootstrap))
	ids, err := n.store.ObjectIDs()
	if err != nil {
		n.log.Warn("list objects to reprovide", "err", err)
		return
	}
	var keep []cid.Cid
	for _, id := range ids {
		if st, err := n.store.Object(id); err == nil && (st.Pinned || st.Complete()) {
			keep = append(keep, id)
		}
	}
	if len(keep) > 0 {
		if err := n.dht.Reprovide(ctx, keep); err != nil && ctx.Err() == nil {
			n.log.Info("reprovide objects", "err", err)
		}
	}
}

// provide announces id in the DHT; failing is logged, not returned (a node
// with no DHT peer yet still holds the object).
func (n *Node) provide(ctx context.Context, id cid.Cid) {
	ctx, cancel := context.WithTimeout(ctx, dhtTimeout)
	defer cancel()
	if err := n.dht.Provide(ctx, id); err != nil {
		n.log.Info("provide object", "cid", id, "err", err)
	}
}

// serveSwarm serves one swarm/1 circuit from the store.
func (n *Node) serveSwarm(ctx context.Context, c *flitlink.Circuit, p feed.ID) {
	hctx, cancel := context.WithTimeout(ctx, probeTimeout)
	var complete bool
	info, conn, err := swarm.Accept(hctx, c, func(id cid.Cid) (object.Info, error) {
		st, err := n.store.Object(id)
		if err != nil {
			return object.Info{}, fmt.Errorf("%w: %s: %w", swarm.ErrUnknownObject, id, err)
		}
		complete = st.Complete()
		return st.Info, nil
	})
	cancel()
	if err != nil {
		n.log.Debug("swarm circuit refused", "peer", p, "err", err)
		return
	}
	n.swarmPeer(info.ID(), peer.ID(p.PeerIDBytes()))
	cfg := swarm.ServeConfig{
		Info:    info,
		Peers:   func() []swarm.PexPeer { return n.pexPeers(info.ID(), p) },
		Logger:  n.log,
		Metrics: n.metrics.swarm,
		Limiter: n.swarmLim,
		Peer:    p,
	}
	if !complete {
		// Held in part: a fetch is storing the rest (or was, and a
		// later get resumes it); tell the peer of chunks as they come.
		var stop func()
		cfg.Grown, stop = n.watchGrowth(info.ID())
		defer stop()
	}
	if err := swarm.Serve(ctx, conn, n.store, cfg); err != nil && ctx.Err() == nil {
		n.log.Info("swarm session ended", "peer", p, "cid", info.ID(), "err", err)
		n.dropIfAbusive(p, err)
	}
}

// objectFile is a file a caller named, resolved inside an object
// directory: root is that directory, opened so that nothing outside it can
// be reached even if a symlink changes after the check, and name is the
// file's path relative to it.
type objectFile struct {
	root *os.Root
	name string
	path string // as the caller named it, for messages
}

// objectFile resolves path, absolute, to a file inside one of the object
// directories: for reading (put), the file itself after resolving every
// symlink and ".."; for writing (get), its directory, the file being
// created or replaced there. A path outside wraps ErrPathNotAllowed, as
// does every path when the node has no object directories. The caller
// closes the returned root.
func (n *Node) objectFile(path string, write bool) (*objectFile, error) {
	if len(n.cfg.ObjectDirs) == 0 {
		return nil, fmt.Errorf(`%w: this node reads and writes no files by path, as %s lists no "object_dirs"; `+
			`send the bytes instead (POST %s, GET %s/CID: contextd put and get do), `+
			`or list the directories the daemon may use there, e.g. "object_dirs": ["/srv/media"], and restart it`,
			ErrPathNotAllowed, filepath.Join(n.cfg.Home, configFile), api.ObjectsPath, api.ObjectsPath)
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: %q is not an absolute path", ErrBadPath, path)
	}
	target, base := filepath.Clean(path), ""
	if write {
		target, base = filepath.Dir(target), filepath.Base(target)
		if base == string(filepath.Separator) {
			return nil, fmt.Errorf("%w: %q names no file", ErrBadPath, path)
		}
	}
	dirs := n.objectDirs()
	outside := fmt.Errorf("%w: %s; the daemon reads and writes files only inside %s (object_dirs in %s)",
		ErrPathNotAllowed, path, strings.Join(n.cfg.ObjectDirs, ", "), filepath.Join(n.cfg.Home, configFile))
	resolved, err := filepath.EvalSymlinks(target)
	if err != nil {
		// Say what is wrong only about paths inside: of others, not
		// even whether they exist.
		for _, d := range slices.Concat(n.cfg.ObjectDirs, dirs) {
			if _, ok := within(filepath.Clean(d), target); ok {
				return nil, fmt.Errorf("%w: %w", ErrBadPath, err)
			}
		}
		return nil, outside
	}
	for _, d := range dirs {
		rel, ok := within(d, resolved)
		if !ok {
			continue
		}
		root, err := os.OpenRoot(d)
		if err != nil {
			return nil, fmt.Errorf("%w: object directory %s: %w", ErrBadPath, d, err)
		}
		if write {
			rel = filepath.Join(rel, base)
		}
		return &objectFile{root: root, name: rel, path: path}, nil
	}
	return nil, outside
}

// objectDirs returns Config.ObjectDirs with their symlinks resolved;
// those that do not exist or are not absolute are left out.
func (n *Node) objectDirs() []string {
	dirs := make([]string, 0, len(n.cfg.ObjectDirs))
	for _, d := range n.cfg.ObjectDirs {
		resolved, err := filepath.EvalSymlinks(d)
		if err == nil && !filepath.IsAbs(d) {
			err = errors.New("not an absolute path")
		}
		if err != nil {
			n.log.Warn("object directory unusable", "dir", d, "err", err)
			continue
		}
		dirs = append(dirs, resolved)
	}
	return dirs
}

// within returns p relative to dir if p is dir or below it (both clean
// and absolute).
func within(dir, p string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	return rel, true
}

// open opens the file for reading; it must be a regular file.
func (of *objectFile) open() (*os.File, error) {
	// Stat first: opening a FIFO would block.
	if fi, err := of.root.Stat(of.name); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPath, err)
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadPath, of.path)
	}
	f, err := of.root.Open(of.name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrBadPath, of.path)
	}
	return f, nil
}

// write writes r to the file through a temporary file in the same
// directory, renamed over it once complete.
func (of *objectFile) write(r io.Reader) (err error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(of.name), "."+filepath.Base(of.name)+"."+hex.EncodeToString(rnd[:])+".part")
	f, err := of.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			of.root.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("node: write %s: %w", of.path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("node: write %s: %w", of.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("node: write %s: %w", of.path, err)
	}
	if err := of.root.Rename(tmp, of.name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPath, err)
	}
	return nil
}

// PutObject stores the bytes r yields, to its end, as an object, pins it
// (leasing it in the node's feed) and provides it. Memory stays bounded
// whatever the size: the bytes pass through a chunk buffer into a spool
// file in the home (created 0600 and unlinked at once, so that nothing is
// left behind even by a crash) while the tree is built, and are then
// stored from there a batch at a time (see storeObject). The spool takes
// the object's size on disk until PutObject returns.
func (n *Node) PutObject(ctx context.Context, r io.Reader) (api.ObjectPutResult, error) {
	spool, err := os.CreateTemp(n.cfg.Home, spoolPattern)
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: put object: create spool file: %w", err)
	}
	defer spool.Close()
	if os.Remove(spool.Name()) != nil {
		defer os.Remove(spool.Name()) // where an open file cannot be unlinked
	}
	w := bufio.NewWriterSize(spool, spoolBuffer)
	t, err := object.Build(io.TeeReader(ctxReader{ctx, r}, w), object.Config{})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		_, err = spool.Seek(0, io.SeekStart)
	}
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: put object: %w", err)
	}
	// The spool is the node's own unlinked file: it holds what the tree
	// was built from, so its chunks are not hashed a second time.
	return n.storeObject(ctx, t, spool, "the spooled object", false)
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// PutObjectFile stores the file at path as PutObject stores bytes. path
// must be absolute and lie, once symlinks and ".." are resolved, inside
// one of Config.ObjectDirs; otherwise the error wraps ErrPathNotAllowed
// and nothing is read. The file is read twice, a chunk at a time: once to
// build the tree, once to store the chunks.
func (n *Node) PutObjectFile(ctx context.Context, path string) (api.ObjectPutResult, error) {
	of, err := n.objectFile(path, false)
	if err != nil {
		return api.ObjectPutResult{}, err
	}
	defer of.root.Close()
	f, err := of.open()
	if err != nil {
		return api.ObjectPutResult{}, err
	}
	defer f.Close()
	t, err := object.Build(f, object.Config{})
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: read %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: reread %s: %w", path, err)
	}
	return n.storeObject(ctx, t, f, path, true)
}

// storeObject stores the object of tree t, reading its bytes from r (name
// says what r is, for errors), pins and provides it. With verify, each
// chunk is verified against the tree, so that a file changed since the
// tree was built fails the put rather than storing bad chunks.
func (n *Node) storeObject(ctx context.Context, t *object.Tree, r io.Reader, name string, verify bool) (api.ObjectPutResult, error) {
	id, info := t.ID(), t.Info()
	defer n.useObject(id)() // not evicted before it is pinned
	if err := n.store.PutObject(id, info); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: put object %s: %w", id, err)
	}
	if err := object.PutTreeHashes(n.store, id, t); err != nil {
		return api.ObjectPutResult{}, err
	}
	// Chunks go in batches of store.MaxPutChunks and store.MaxPutChunkBytes
	// (one chunk may exceed the bytes alone), one transaction each.
	per := max(1, min(store.MaxPutChunks, store.MaxPutChunkBytes/info.ChunkSize))
	buf := make([]byte, per*info.ChunkSize)
	batch := make([]object.Chunk, 0, per)
	for i := range t.Chunks() {
		if err := ctx.Err(); err != nil {
			return api.ObjectPutResult{}, err
		}
		c := buf[len(batch)*info.ChunkSize:][:info.ChunkSize]
		k, err := io.ReadFull(r, c)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !(errors.Is(err, io.EOF) && info.Size == 0) {
			return api.ObjectPutResult{}, fmt.Errorf("node: reread %s: %w", name, err)
		}
		if verify {
			if err := info.VerifyChunk(i, c[:k], t.Uncles(i)); err != nil {
				return api.ObjectPutResult{}, fmt.Errorf("node: %s changed while it was stored: %w", name, err)
			}
		} else if k != info.ChunkSize && i != t.Chunks()-1 {
			return api.ObjectPutResult{}, fmt.Errorf("node: reread %s: chunk %d is short", name, i)
		}
		batch = append(batch, object.Chunk{Index: i, Data: c[:k]})
		if len(batch) == per || i == t.Chunks()-1 {
			if err := n.store.PutChunks(id, batch); err != nil {
				return api.ObjectPutResult{}, fmt.Errorf("node: store chunks %d to %d of %s: %w", batch[0].Index, i, id, err)
			}
			batch = batch[:0]
		}
	}
	if err := n.store.Pin(id); err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("node: pin %s: %w", id, err)
	}
	n.syncLease(id)
	n.provide(ctx, id)
	n.evictSoon()
	return api.ObjectPutResult{CID: id.String(), Size: info.Size, Chunks: t.Chunks()}, nil
}

// OpenObject makes the node hold object id, fetching what it lacks from
// the peers that provide it (DHT providers and linked peers), and returns
// a reader of its size bytes, which reads the store a chunk at a time. The
// object is kept from eviction until the reader is closed. A fetched
// object is then provided in the background. progress, if not nil, is
// called with the bytes held and the size as chunks arrive, from one
// goroutine at a time.
func (n *Node) OpenObject(ctx context.Context, id cid.Cid, progress func(done, total int64)) (io.ReadCloser, int64, error) {
	if _, err := object.InfoFromID(id); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", api.ErrInvalidParams, err)
	}
	inUse := n.useObject(id) // eviction spares it while it is fetched and read
	release := func() {
		inUse()
		n.evictSoon()
	}
	st, err := n.store.Object(id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		release()
		return nil, 0, err
	}
	if err != nil || !st.Complete() {
		if st, err = n.fetch(ctx, id, progress); err != nil {
			release()
			return nil, 0, err
		}
		// Announcing may take a DHT round trip per closest peer (some
		// may be gone): the caller does not wait for it.
		n.wg.Go(func() { n.provide(n.ctx, id) })
	} else if progress != nil {
		progress(st.Info.Size, st.Info.Size)
	}
	run := uint64(max(1, min(readRun/st.Info.ChunkSize, store.MaxPutChunks)))
	return &objectReader{objs: n.store, id: id, chunks: st.Info.Chunks(), run: run, release: release}, st.Info.Size, nil
}

// GetObject makes the node hold object id as OpenObject does, then writes
// it to path (none if empty) through a temporary file in the same
// directory. path must be absolute and its directory lie, once symlinks
// and ".." are resolved, inside one of Config.ObjectDirs; otherwise the
// error wraps ErrPathNotAllowed and nothing is fetched or written.
func (n *Node) GetObject(ctx context.Context, id cid.Cid, path string, progress func(done, total int64)) (api.ObjectGetResult, error) {
	var of *objectFile
	if path != "" {
		var err error
		if of, err = n.objectFile(path, true); err != nil {
			return api.ObjectGetResult{}, err
		}
		defer of.root.Close()
	}
	r, size, err := n.OpenObject(ctx, id, progress)
	if err != nil {
		return api.ObjectGetResult{}, err
	}
	defer r.Close()
	res := api.ObjectGetResult{Size: size}
	if of != nil {
		if err := of.write(r); err != nil {
			return api.ObjectGetResult{}, err
		}
		res.Path = path
	}
	return res, nil
}

// objectReader reads a held object from the store, readRun bytes of
// chunks at a time.
type objectReader struct {
	objs    store.Objects
	id      cid.Cid
	chunks  uint64
	run     uint64 // chunks per read
	next    uint64 // the next chunk to read
	buf     []byte // the chunk read last
	off     int    // buf[off:] is still to be returned
	once    sync.Once
	release func()
}

// readRun is how many bytes of chunks an objectReader reads at once.
const readRun = 256 << 10

// fill reads the next chunks into r.buf; io.EOF after the last.
func (r *objectReader) fill() error {
	if r.next == r.chunks {
		return io.EOF
	}
	k := min(r.run, r.chunks-r.next)
	b, err := r.objs.AppendChunks(r.buf[:0], r.id, r.next, k)
	if err != nil {
		return fmt.Errorf("node: read chunks %d to %d of %s: %w", r.next, r.next+k-1, r.id, err)
	}
	r.buf, r.off = b, 0
	r.next += k
	return nil
}

func (r *objectReader) Read(p []byte) (int, error) {
	for r.off == len(r.buf) {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	k := copy(p, r.buf[r.off:])
	r.off += k
	return k, nil
}

// WriteTo writes the rest of the object to w a chunk at a time, without
// another copy.
func (r *objectReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if r.off < len(r.buf) {
			k, err := w.Write(r.buf[r.off:])
			total += int64(k)
			r.off += k
			if err != nil {
				return total, err
			}
			continue
		}
		if err := r.fill(); err == io.EOF {
			return total, nil
		} else if err != nil {
			return total, err
		}
	}
}

// Close lets the object be evicted again.
func (r *objectReader) Close() error {
	r.once.Do(r.release)
	return nil
}

// object returns the store's record of id as api.ErrNotFound when absent.
func (n *Node) object(id cid.Cid) (store.ObjectStat, error) {
	st, err := n.store.Object(id)
	if errors.Is(err, store.ErrNotFound) {
		return st, fmt.Errorf("%w: object %s", api.ErrNotFound, id)
	}
	return st, err
}

// toAPIObject describes st, judging its leases at now.
func toAPIObject(id cid.Cid, st store.ObjectStat, now time.Time) api.Object {
	leases, until := latestLease(st, now)
	return api.Object{
		CID: id.String(), Size: st.Info.Size, ChunkSize: st.Info.ChunkSize,
		Chunks: st.Info.Chunks(), Held: st.Held, Pinned: st.Pinned,
		Leases: leases, LeasedUntil: until,
	}
}

// StatObject reports what the node holds of id.
func (n *Node) StatObject(id cid.Cid) (api.Object, error) {
	st, err := n.object(id)
	if err != nil {
		return api.Object{}, err
	}
	return toAPIObject(id, st, n.cfg.Now()), nil
}

// PinObject keeps id from eviction, leases it in the node's feed (renewed
// by the heartbeat while the pin lasts) and provides it.
func (n *Node) PinObject(ctx context.Context, id cid.Cid) error {
	if _, err := n.object(id); err != nil {
		return err
	}
	if err := n.store.Pin(id); err != nil {
		return fmt.Errorf("node: pin %s: %w", id, err)
	}
	n.syncLease(id)
	n.provide(ctx, id)
	return nil
}

// UnpinObject lets id be evicted again: it drops the pin and ends the
// node's lease on it. Other nodes' leases still keep it.
func (n *Node) UnpinObject(id cid.Cid) error {
	if _, err := n.object(id); err != nil {
		return err
	}
	if err := n.store.Unpin(id); err != nil {
		return fmt.Errorf("node: unpin %s: %w", id, err)
	}
	n.syncLease(id)
	n.evictSoon()
	return nil
}

// ListObjects reports every object the node holds, ordered by CID.
func (n *Node) ListObjects() ([]api.Object, error) {
	ids, err := n.store.ObjectIDs()
	if err != nil {
		return nil, err
	}
	out := make([]api.Object, 0, len(ids))
	now := n.cfg.Now()
	for _, id := range ids {
		st, err := n.store.Object(id)
		if errors.Is(err, store.ErrNotFound) {
			continue // evicted meanwhile
		} else if err != nil {
			return nil, err
		}
		out = append(out, toAPIObject(id, st, now))
	}
	slices.SortFunc(out, func(a, b api.Object) int { return strings.Compare(a.CID, b.CID) })
	return out, nil
}

// Providers returns the peers the DHT says provide id.
func (n *Node) Providers(ctx context.Context, id cid.Cid) ([]api.Provider, error) {
	ctx, cancel := context.WithTimeout(ctx, dhtTimeout)
	defer cancel()
	provs, err := n.dht.FindProviders(ctx, id, 0)
	if err != nil && len(provs) == 0 && ctx.Err() == nil {
		return nil, fmt.Errorf("%w: %w", api.ErrUnavailable, err)
	}
	out := make([]api.Provider, 0, len(provs))
	for _, ai := range provs {
		fid, err := feed.IDFromPeerIDBytes([]byte(ai.ID))
		if err != nil {
			continue
		}
		suffix, err := multiaddr.NewMultiaddr("/p2p/" + ai.ID.String())
		if err != nil {
			continue
		}
		p := api.Provider{ID: fid, Addrs: []string{}}
		for _, a := range ai.Addrs {
			p.Addrs = append(p.Addrs, a.Encapsulate(suffix).String())
		}
		out = append(out, p)
	}
	return out, nil
}
