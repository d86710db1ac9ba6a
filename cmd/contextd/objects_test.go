package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// TestObjectsThroughDHT: A and B know only D, the DHT bootstrap peer. A
// puts a 1 MiB file; B gets it by CID, finding A through the DHT, and holds
// an identical copy.
func TestObjectsThroughDHT(t *testing.T) {
	c := newCluster(t)
	d, _ := c.start("d")
	a, _ := c.start("a", "--bootstrap", d.Addrs[0])
	b, clB := c.start("b", "--bootstrap", d.Addrs[0])

	data := make([]byte, 1<<20)
	rand.Read(data)
	in := filepath.Join(c.dir, "in.bin")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(c.cli(a, "put", in))
	t.Logf("A put %s", id)
	if objs := c.cli(a, "objects"); !strings.Contains(objs, id+" 1048576 64/64 pinned leases=1 until=") {
		t.Fatalf("A's objects:\n%s", objs)
	}

	provs, err := clB.ObjectProviders(c.ctx, id)
	if err != nil || len(provs) != 1 || provs[0].ID != a.ID {
		t.Fatalf("B finds providers %+v (%v), want A", provs, err)
	}

	out := filepath.Join(c.dir, "out.bin")
	got := c.cli(b, "get", id, "-o", out)
	if !strings.Contains(got, "wrote "+out+" (1048576 bytes)") {
		t.Errorf("get printed %q", got)
	}
	back, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatalf("B's copy differs (%d bytes, want %d)", len(back), len(data))
	}
	if objs := c.cli(b, "objects"); !strings.Contains(objs, id+" 1048576 64/64 cached") {
		t.Fatalf("B's objects:\n%s", objs)
	}
	c.cli(b, "pin", id)
	if objs := c.cli(b, "objects"); !strings.Contains(objs, id+" 1048576 64/64 pinned") {
		t.Fatalf("B's objects after pin:\n%s", objs)
	}
	c.cli(b, "unpin", id)
	st, err := clB.ObjectStat(c.ctx, id)
	if err != nil || st.Pinned || st.Leases != 0 || !st.Cached() || !st.Complete() {
		t.Fatalf("B's stat after unpin: %+v (%v)", st, err)
	}

	// A second get is served from B's own store.
	if _, err := clB.ObjectGet(c.ctx, id, "", func(done, total int64) {}); err != nil {
		t.Fatal(err)
	}

	// Bad input: a malformed CID, an object nobody has, a relative path.
	if _, err := clB.ObjectGet(c.ctx, "notacid", out, nil); !errors.Is(err, api.ErrInvalidParams) {
		t.Errorf("get of a malformed CID: %v", err)
	}
	if _, err := clB.ObjectGet(c.ctx, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", out, nil); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("get of an unknown object: %v", err)
	}
	if _, err := clB.ObjectPut(c.ctx, "relative/file"); !errors.Is(err, api.ErrInvalidParams) {
		t.Errorf("put of a relative path: %v", err)
	}
	if _, err := b.CLI(c.ctx, "put", filepath.Join(c.dir, "missing")); err == nil || !strings.Contains(err.Error(), "bad path") {
		t.Errorf("put of a missing file: %v", err)
	}
}

func TestObjectLine(t *testing.T) {
	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	base := api.Object{CID: "bafkreiabc", Size: 2048, Chunks: 2, Held: 1}
	for _, tc := range []struct {
		pinned bool
		leases int
		want   string
	}{
		{false, 0, "bafkreiabc 2048 1/2 cached"},
		{true, 0, "bafkreiabc 2048 1/2 pinned"},
		{false, 2, "bafkreiabc 2048 1/2 leased leases=2 until=2030-01-02T02:04:05Z"},
		{true, 1, "bafkreiabc 2048 1/2 pinned leases=1 until=2030-01-02T02:04:05Z"},
	} {
		o := base
		o.Pinned, o.Leases = tc.pinned, tc.leases
		if tc.leases > 0 {
			o.LeasedUntil = until
		}
		if got := objectLine(o); got != tc.want {
			t.Errorf("objectLine(pinned %v, %d leases) = %q, want %q", tc.pinned, tc.leases, got, tc.want)
		}
	}
}
