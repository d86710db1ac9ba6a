package sdk

import (
	"bytes"
	"errors"
	"testing"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

func TestStorageCalls(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	other := rpctest.KeyFor(1).Public()
	if _, err := c.Follow(ctx, other); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Forget(ctx, other); err != nil || !r.Forgotten || r.Seq != 2 {
		t.Fatalf("Forget %+v %v", r, err)
	}
	if _, err := c.Forget(ctx, rpctest.KeyFor(0).Public()); !errors.Is(err, api.ErrInvalidParams) {
		t.Fatalf("Forget of the node's own feed: %v", err)
	}
	put, err := c.PutObject(ctx, bytes.NewReader([]byte("some bytes")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ObjectRemove(ctx, put.CID, false); !errors.Is(err, api.ErrInvalidParams) {
		t.Fatalf("ObjectRemove of a pinned object: %v", err)
	}
	if r, err := c.ObjectRemove(ctx, put.CID, true); err != nil || r.FreedBytes != put.Size {
		t.Fatalf("ObjectRemove --force %+v %v", r, err)
	}
	if _, err := c.ObjectStat(ctx, put.CID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("ObjectStat after remove: %v", err)
	}
	if s, err := c.Storage(ctx); err != nil || s.Main == 0 || s.Contexts == nil {
		t.Fatalf("Storage %+v %v", s, err)
	}
}
