package rpctest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/rpc/api"
)

// MaxObjectSize caps the objects the fake holds in memory.
const MaxObjectSize = 1 << 20

// objects is the fake's object store: whole objects in memory.
type objects struct {
	mu     sync.Mutex // guards objs and onCall
	objs   map[string]*heldObject
	onCall func(method string, ctx context.Context)
}

// OnObjectCall sets a function that PutObject, PutObjectFile, OpenObject,
// GetObject and PinObject call first with their name and context, so that tests can see how the
// server bounds the call.
func (n *Node) OnObjectCall(f func(method string, ctx context.Context)) {
	n.objs.mu.Lock()
	n.objs.onCall = f
	n.objs.mu.Unlock()
}

func (n *Node) called(method string, ctx context.Context) {
	n.objs.mu.Lock()
	f := n.objs.onCall
	n.objs.mu.Unlock()
	if f != nil {
		f(method, ctx)
	}
}

type heldObject struct {
	api.Object
	data []byte
}

// AddObject stores data as an object (not pinned) and returns its ID.
func (n *Node) AddObject(data []byte) (cid.Cid, error) {
	t, err := object.Build(bytes.NewReader(data), object.Config{})
	if err != nil {
		return cid.Undef, err
	}
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	if n.objs.objs == nil {
		n.objs.objs = make(map[string]*heldObject)
	}
	id := t.ID()
	if o := n.objs.objs[id.String()]; o != nil {
		return id, nil
	}
	n.objs.objs[id.String()] = &heldObject{
		Object: api.Object{CID: id.String(), Size: t.Size(), ChunkSize: t.ChunkSize(), Chunks: t.Chunks(), Held: t.Chunks()},
		data:   bytes.Clone(data),
	}
	return id, nil
}

func (n *Node) object(id cid.Cid) (*heldObject, error) {
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	o := n.objs.objs[id.String()]
	if o == nil {
		return nil, fmt.Errorf("%w: object %s", api.ErrNotFound, id)
	}
	return o, nil
}

// PutObject stores the bytes r yields (at most MaxObjectSize) as a
// pinned object.
func (n *Node) PutObject(ctx context.Context, r io.Reader) (api.ObjectPutResult, error) {
	n.called("PutObject", ctx)
	data, err := io.ReadAll(io.LimitReader(r, MaxObjectSize+1))
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("rpctest: put object: %w", err)
	}
	if len(data) > MaxObjectSize {
		return api.ObjectPutResult{}, fmt.Errorf("%w: the fake holds objects of at most %d bytes", feed.ErrTooLarge, MaxObjectSize)
	}
	id, err := n.AddObject(data)
	if err != nil {
		return api.ObjectPutResult{}, err
	}
	o, _ := n.object(id)
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	o.Pinned = true
	return api.ObjectPutResult{CID: o.CID, Size: o.Size, Chunks: o.Chunks}, nil
}

// errNoPaths refuses every path, as a node with no object directories
// does.
var errNoPaths = fmt.Errorf("%w: the fake node reads and writes no files by path", api.ErrNotAllowed)

// PutObjectFile refuses every path.
func (n *Node) PutObjectFile(ctx context.Context, path string) (api.ObjectPutResult, error) {
	n.called("PutObjectFile", ctx)
	return api.ObjectPutResult{}, errNoPaths
}

// OpenObject returns a reader of a held object, reporting progress once;
// it fetches nothing.
func (n *Node) OpenObject(ctx context.Context, id cid.Cid, progress func(done, total int64)) (io.ReadCloser, int64, error) {
	n.called("OpenObject", ctx)
	o, err := n.object(id)
	if err != nil {
		return nil, 0, err
	}
	if progress != nil {
		progress(o.Size, o.Size)
	}
	return io.NopCloser(bytes.NewReader(o.data)), o.Size, nil
}

// GetObject reports a held object (progress once); it fetches nothing and
// refuses every path.
func (n *Node) GetObject(ctx context.Context, id cid.Cid, path string, progress func(done, total int64)) (api.ObjectGetResult, error) {
	n.called("GetObject", ctx)
	if path != "" {
		return api.ObjectGetResult{}, errNoPaths
	}
	o, err := n.object(id)
	if err != nil {
		return api.ObjectGetResult{}, err
	}
	if progress != nil {
		progress(o.Size, o.Size)
	}
	return api.ObjectGetResult{Size: o.Size}, nil
}

// StatObject reports a held object.
func (n *Node) StatObject(id cid.Cid) (api.Object, error) {
	o, err := n.object(id)
	if err != nil {
		return api.Object{}, err
	}
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	return o.Object, nil
}

// PinObject pins a held object.
func (n *Node) PinObject(ctx context.Context, id cid.Cid) error {
	n.called("PinObject", ctx)
	return n.setPin(id, true)
}

// UnpinObject unpins a held object.
func (n *Node) UnpinObject(id cid.Cid) error { return n.setPin(id, false) }

func (n *Node) setPin(id cid.Cid, pinned bool) error {
	o, err := n.object(id)
	if err != nil {
		return err
	}
	n.objs.mu.Lock()
	o.Pinned = pinned
	n.objs.mu.Unlock()
	return nil
}

// ListObjects reports the held objects by CID.
func (n *Node) ListObjects() ([]api.Object, error) {
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	out := make([]api.Object, 0, len(n.objs.objs))
	for _, o := range n.objs.objs {
		out = append(out, o.Object)
	}
	slices.SortFunc(out, func(a, b api.Object) int { return strings.Compare(a.CID, b.CID) })
	return out, nil
}

// Providers knows no DHT: it returns none.
func (n *Node) Providers(ctx context.Context, id cid.Cid) ([]api.Provider, error) {
	return nil, nil
}
