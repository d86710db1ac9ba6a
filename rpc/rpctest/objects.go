package rpctest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/swarm"
)

// MaxObjectSize caps the objects the fake holds in memory.
const MaxObjectSize = 1 << 20

// objects is the fake's object store: whole objects in memory.
type objects struct {
	mu     sync.Mutex // guards objs and onCall
	objs   map[string]*object
	onCall func(method string, ctx context.Context)
}

// OnObjectCall sets a function that PutObject, GetObject and PinObject
// call first with their name and context, so that tests can see how the
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

type object struct {
	api.Object
	data []byte
}

// AddObject stores data as an object (not pinned) and returns its ID.
func (n *Node) AddObject(data []byte) (cid.Cid, error) {
	t, err := swarm.Build(bytes.NewReader(data), swarm.Config{})
	if err != nil {
		return cid.Undef, err
	}
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	if n.objs.objs == nil {
		n.objs.objs = make(map[string]*object)
	}
	id := t.ID()
	if o := n.objs.objs[id.String()]; o != nil {
		return id, nil
	}
	n.objs.objs[id.String()] = &object{
		Object: api.Object{CID: id.String(), Size: t.Size(), ChunkSize: t.ChunkSize(), Chunks: t.Chunks(), Held: t.Chunks()},
		data:   bytes.Clone(data),
	}
	return id, nil
}

func (n *Node) object(id cid.Cid) (*object, error) {
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	o := n.objs.objs[id.String()]
	if o == nil {
		return nil, fmt.Errorf("%w: object %s", api.ErrNotFound, id)
	}
	return o, nil
}

// PutObject reads the file at path (absolute, at most MaxObjectSize bytes)
// and stores it pinned.
func (n *Node) PutObject(ctx context.Context, path string) (api.ObjectPutResult, error) {
	n.called("PutObject", ctx)
	if !filepath.IsAbs(path) {
		return api.ObjectPutResult{}, fmt.Errorf("%w: %q is not an absolute path", api.ErrInvalidParams, path)
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > MaxObjectSize {
		return api.ObjectPutResult{}, fmt.Errorf("%w: cannot read %s", api.ErrInvalidParams, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return api.ObjectPutResult{}, fmt.Errorf("%w: %w", api.ErrInvalidParams, err)
	}
	id, err := n.AddObject(data)
	if err != nil {
		return api.ObjectPutResult{}, err
	}
	o, _ := n.object(id)
	n.objs.mu.Lock()
	o.Pinned = true
	res := api.ObjectPutResult{CID: o.CID, Size: o.Size, Chunks: o.Chunks}
	n.objs.mu.Unlock()
	return res, nil
}

// GetObject writes a held object to path, reporting progress once; it
// fetches nothing.
func (n *Node) GetObject(ctx context.Context, id cid.Cid, path string, progress func(done, total int64)) (api.ObjectGetResult, error) {
	n.called("GetObject", ctx)
	if path != "" && !filepath.IsAbs(path) {
		return api.ObjectGetResult{}, fmt.Errorf("%w: %q is not an absolute path", api.ErrInvalidParams, path)
	}
	o, err := n.object(id)
	if err != nil {
		return api.ObjectGetResult{}, err
	}
	if progress != nil {
		progress(o.Size, o.Size)
	}
	if path != "" {
		if err := os.WriteFile(path, o.data, 0o644); err != nil {
			return api.ObjectGetResult{}, fmt.Errorf("%w: %w", api.ErrInvalidParams, err)
		}
	}
	return api.ObjectGetResult{Path: path, Size: o.Size}, nil
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
