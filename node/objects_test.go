package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/rpc/api"
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
