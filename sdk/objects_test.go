package sdk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contextd/contextd/rpc/api"
)

func TestObjects(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	dir := t.TempDir()
	data := bytes.Repeat([]byte("contextd "), 5000) // 45 000 bytes, 3 chunks
	put, err := c.PutObject(ctx, bytes.NewReader(data))
	if err != nil || put.Size != int64(len(data)) || put.Chunks != 3 {
		t.Fatalf("put: %+v (%v)", put, err)
	}

	var calls, lastDone, lastTotal int64
	var out bytes.Buffer
	n, err := c.GetObject(ctx, put.CID, &out, func(done, total int64) {
		calls++
		lastDone, lastTotal = done, total
	})
	if err != nil || n != put.Size || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("get: %d bytes (%v), copy equal: %v", n, err, bytes.Equal(out.Bytes(), data))
	}
	if calls == 0 || lastDone != put.Size || lastTotal != put.Size {
		t.Errorf("progress: %d calls, last %d/%d, want last %d/%d", calls, lastDone, lastTotal, put.Size, put.Size)
	}
	// Without progress, through a ws:// URL with the API's path.
	c2, err := DialConfig(ctx, Config{Addr: "ws://" + e.addr + api.Path, Token: testToken, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	out.Reset()
	if n, err := c2.GetObject(ctx, put.CID, &out, nil); err != nil || n != put.Size || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("get via a ws:// URL: %d bytes (%v)", n, err)
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
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := Config{Token: "wrong"}
	bad.fill()
	wrong := &Client{cfg: bad, url: c.url}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"malformed CID", c.ObjectPin(ctx, "notacid"), api.ErrInvalidParams},
		{"missing CID", c.ObjectPin(ctx, ""), api.ErrInvalidParams},
		{"unknown CID", c.ObjectPin(ctx, unknown), api.ErrNotFound},
		{"stat unknown", func() error { _, err := c.ObjectStat(ctx, unknown); return err }(), api.ErrNotFound},
		{"get unknown", func() error { _, err := c.GetObject(ctx, unknown, io.Discard, nil); return err }(), api.ErrNotFound},
		{"get unknown with progress", func() error { _, err := c.GetObject(ctx, unknown, io.Discard, func(int64, int64) {}); return err }(), api.ErrNotFound},
		{"get malformed", func() error { _, err := c.GetObject(ctx, "notacid", io.Discard, nil); return err }(), api.ErrInvalidParams},
		{"put with a wrong token", func() error { _, err := wrong.PutObject(ctx, strings.NewReader("x")); return err }(), api.ErrUnauthorized},
		{"put by path", func() error { _, err := c.ObjectPut(ctx, in); return err }(), api.ErrNotAllowed},
		{"get to a path", func() error { _, err := c.ObjectGet(ctx, put.CID, filepath.Join(dir, "out"), nil); return err }(), api.ErrNotAllowed},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, tc.err)
		}
	}
}

// failAfter yields n bytes, then fails.
type failAfter struct{ n int }

func (r *failAfter) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk gone")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// TestPutObjectReaderFails: a reader that fails partway fails the put
// with its error, and the daemon stores nothing.
func TestPutObjectReaderFails(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	if _, err := c.PutObject(ctx, &failAfter{n: 50_000}); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("put from a failing reader: %v", err)
	}
	if objs, err := c.ObjectList(ctx); err != nil || len(objs) != 0 {
		t.Fatalf("objects after a failed put: %+v (%v)", objs, err)
	}
}
