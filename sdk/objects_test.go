package sdk

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/contextd/contextd/rpc/api"
)

func TestObjects(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	dir := t.TempDir()
	data := bytes.Repeat([]byte("contextd "), 5000) // 45 000 bytes, 3 chunks
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	put, err := c.ObjectPut(ctx, in)
	if err != nil || put.Size != int64(len(data)) || put.Chunks != 3 {
		t.Fatalf("put: %+v (%v)", put, err)
	}

	var calls, lastDone, lastTotal int64
	out := filepath.Join(dir, "out")
	got, err := c.ObjectGet(ctx, put.CID, out, func(done, total int64) {
		calls++
		lastDone, lastTotal = done, total
	})
	if err != nil || got.Size != put.Size || got.Path != out {
		t.Fatalf("get: %+v (%v)", got, err)
	}
	if calls == 0 || lastDone != put.Size || lastTotal != put.Size {
		t.Errorf("progress: %d calls, last %d/%d, want last %d/%d", calls, lastDone, lastTotal, put.Size, put.Size)
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("written copy differs (%v)", err)
	}

	if err := c.ObjectUnpin(ctx, put.CID); err != nil {
		t.Fatal(err)
	}
	st, err := c.ObjectStat(ctx, put.CID)
	if err != nil || st.Pinned || !st.Complete() {
		t.Fatalf("stat: %+v (%v)", st, err)
	}
	if err := c.ObjectPin(ctx, put.CID); err != nil {
		t.Fatal(err)
	}
	objs, err := c.ObjectList(ctx)
	if err != nil || len(objs) != 1 || objs[0].CID != put.CID || !objs[0].Pinned {
		t.Fatalf("list: %+v (%v)", objs, err)
	}
	if ps, err := c.ObjectProviders(ctx, put.CID); err != nil || ps == nil || len(ps) != 0 {
		t.Fatalf("providers: %+v (%v), want []", ps, err)
	}

	const unknown = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"malformed CID", c.ObjectPin(ctx, "notacid"), api.ErrInvalidParams},
		{"missing CID", c.ObjectPin(ctx, ""), api.ErrInvalidParams},
		{"unknown CID", c.ObjectPin(ctx, unknown), api.ErrNotFound},
		{"stat unknown", func() error { _, err := c.ObjectStat(ctx, unknown); return err }(), api.ErrNotFound},
		{"get unknown", func() error { _, err := c.ObjectGet(ctx, unknown, out, nil); return err }(), api.ErrNotFound},
		{"put relative", func() error { _, err := c.ObjectPut(ctx, "in"); return err }(), api.ErrInvalidParams},
		{"put missing", func() error { _, err := c.ObjectPut(ctx, filepath.Join(dir, "nope")); return err }(), api.ErrInvalidParams},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}
