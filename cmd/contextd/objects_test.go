package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"maps"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
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

	// Bad input: a malformed CID, an object nobody has, a missing file.
	if _, err := b.CLI(c.ctx, "get", "notacid", "-o", out); err == nil || !strings.Contains(err.Error(), "is not a CID") {
		t.Errorf("get of a malformed CID: %v", err)
	}
	if _, err := b.CLI(c.ctx, "get", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "-o", out); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("get of an unknown object: %v", err)
	}
	if _, err := b.CLI(c.ctx, "put", filepath.Join(c.dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("put of a missing file: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(c.dir, ".*.part")); len(m) != 0 {
		t.Errorf("failed gets left %v", m)
	}

	// Standard input and output.
	id2, err := daemon.RunCLI(c.ctx, c.bin, a.Home, "piped", "put", "-")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.CLI(c.ctx, "get", strings.TrimSpace(id2), "-o", "-"); err != nil || got != "piped" {
		t.Errorf("get -o - printed %q (%v)", got, err)
	}
}

// setObjectDirs writes object_dirs into the config of a new home.
func setObjectDirs(t *testing.T, home string, dirs ...string) {
	t.Helper()
	if _, err := node.Init(home); err != nil {
		t.Fatal(err)
	}
	fc, err := node.LoadFileConfig(home)
	if err != nil {
		t.Fatal(err)
	}
	fc.ObjectDirs = dirs
	b, _ := json.MarshalIndent(fc, "", "  ")
	if err := os.WriteFile(filepath.Join(home, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestObjectPathsRefused: object.put and object.get naming a path outside
// the directories config.json allows are refused with a clear error and
// read or write nothing: on a daemon with no object_dirs (the default),
// every path; on one with object_dirs, paths outside them, however named
// (.., symlinks); inside them, both work.
func TestObjectPathsRefused(t *testing.T) {
	c := newCluster(t)
	allowed, outside := filepath.Join(c.dir, "media"), filepath.Join(c.dir, "private")
	for _, d := range []string{allowed, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(allowed, "out")); err != nil {
		t.Fatal(err)
	}
	setObjectDirs(t, filepath.Join(c.dir, "b"), allowed)
	_, clA := c.start("a") // no object_dirs
	_, clB := c.start("b")
	held, err := clA.PutObject(c.ctx, strings.NewReader("held"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clB.PutObject(c.ctx, strings.NewReader("held")); err != nil {
		t.Fatal(err)
	}

	// Default: every path refused, saying how to allow one.
	if _, err := clA.ObjectPut(c.ctx, secret); !errors.Is(err, api.ErrNotAllowed) || !strings.Contains(err.Error(), `"object_dirs"`) {
		t.Errorf("put by path on a default daemon: %v", err)
	}
	if _, err := clA.ObjectGet(c.ctx, held.CID, filepath.Join(allowed, "x"), nil); !errors.Is(err, api.ErrNotAllowed) {
		t.Errorf("get to a path on a default daemon: %v", err)
	}

	// Outside object_dirs: refused.
	for _, path := range []string{secret, allowed + "/../private/secret", filepath.Join(allowed, "out", "secret")} {
		if _, err := clB.ObjectPut(c.ctx, path); !errors.Is(err, api.ErrNotAllowed) {
			t.Errorf("put %s: %v, want not allowed", path, err)
		} else {
			t.Logf("put %s: %v", path, err)
		}
	}
	for _, path := range []string{filepath.Join(outside, "x"), allowed + "/../private/x", filepath.Join(allowed, "out", "x")} {
		if _, err := clB.ObjectGet(c.ctx, held.CID, path, nil); !errors.Is(err, api.ErrNotAllowed) {
			t.Errorf("get to %s: %v, want not allowed", path, err)
		}
	}
	for name, cl := range map[string]*sdk.Client{"a": clA, "b": clB} {
		if objs, err := cl.ObjectList(c.ctx); err != nil || len(objs) != 1 {
			t.Errorf("%s holds %d objects (%v), want only the one put as bytes", name, len(objs), err)
		}
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 1 {
		t.Errorf("%s holds %v (%v), want only the secret", outside, entries, err)
	}

	// Inside: allowed.
	in, out := filepath.Join(allowed, "in"), filepath.Join(allowed, "copy")
	if err := os.WriteFile(in, []byte("public"), 0o600); err != nil {
		t.Fatal(err)
	}
	put, err := clB.ObjectPut(c.ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clB.ObjectGet(c.ctx, put.CID, out, nil); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "public" {
		t.Fatalf("get wrote %q (%v)", b, err)
	}
}

// objectStreamSize is the object TestObjectStreamMemory moves each way.
const objectStreamSize = 1 << 30

// memStatus is what /proc/PID/status says of a process's memory, in
// bytes.
type memStatus struct{ hwm, rss, anon, file int64 }

// procMem reads process pid's memory from /proc/PID/status.
func procMem(pid int) (memStatus, error) {
	var m memStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, err
	}
	fields := map[string]*int64{"VmHWM:": &m.hwm, "VmRSS:": &m.rss, "RssAnon:": &m.anon, "RssFile:": &m.file}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" && fields[f[0]] != nil {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return m, fmt.Errorf("/proc/%d/status: %q: %w", pid, line, err)
			}
			*fields[f[0]] = kb << 10
			delete(fields, f[0])
		}
	}
	if len(fields) != 0 {
		return m, fmt.Errorf("/proc/%d/status lacks %v", pid, slices.Sorted(maps.Keys(fields)))
	}
	return m, nil
}

func (m memStatus) String() string {
	return fmt.Sprintf("VmHWM %d MiB, VmRSS %d MiB (anon %d MiB, file %d MiB)", m.hwm>>20, m.rss>>20, m.anon>>20, m.file>>20)
}

// roundTrip puts size bytes of the stream seeded with seed into cl's
// daemon and gets them back, checking they hash the same.
func roundTrip(t *testing.T, ctx context.Context, cl *sdk.Client, size int64, seed byte) {
	t.Helper()
	hseed := maphash.MakeSeed()
	var in, out maphash.Hash
	in.SetSeed(hseed)
	out.SetSeed(hseed)
	src := io.TeeReader(io.LimitReader(mathrand.NewChaCha8([32]byte{seed}), size), &in)
	put, err := cl.PutObject(ctx, src)
	if err != nil || put.Size != size {
		t.Fatalf("put %d bytes: %+v (%v)", size, put, err)
	}
	n, err := cl.GetObject(ctx, put.CID, &out, nil)
	if err != nil || n != size {
		t.Fatalf("get %s: %d of %d bytes (%v)", put.CID, n, size, err)
	}
	if in.Sum64() != out.Sum64() {
		t.Fatalf("the %d bytes got back differ from those put", size)
	}
}

// TestObjectStreamMemory: a 1 GiB object goes into a fresh daemon and back
// out through the API (POST /objects, GET /objects/CID, as contextd put
// and get use them) without the daemon holding it in memory: its resident
// memory (VmRSS: anonymous memory, the Go heap and stacks, plus resident
// file pages, the mapped files of its store) peaks less than 64 MiB above
// where it was before. The store keeps chunk bytes in plain files, read and
// written without mapping them, so the object's bytes pass through the
// page cache, not the daemon. The daemon has put one tiny object first,
// so that its listeners and store are open. The peak is the kernel's
// (VmHWM, reset at the start); RssAnon and RssFile are sampled every few
// milliseconds and logged.
func TestObjectStreamMemory(t *testing.T) {
	const bound = 64 << 20
	c := newCluster(t)
	d, cl := c.start("a")
	if _, err := cl.PutObject(c.ctx, strings.NewReader("tiny")); err != nil {
		t.Fatal(err)
	}
	// Writing 5 to clear_refs resets VmHWM to the current VmRSS.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", d.Pid()), []byte("5"), 0); err != nil {
		t.Fatalf("reset the daemon's VmHWM: %v", err)
	}
	base, err := procMem(d.Pid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh: %v", base)
	cpu0, err := d.CPU()
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	peak := make(chan memStatus, 1)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		most := base
		for {
			select {
			case <-stop:
				peak <- most
				return
			case <-tick.C:
				if m, err := procMem(d.Pid()); err == nil {
					most.rss, most.anon, most.file = max(most.rss, m.rss), max(most.anon, m.anon), max(most.file, m.file)
				}
			}
		}
	}()
	start := time.Now()
	roundTrip(t, c.ctx, cl, objectStreamSize, 2)
	close(stop)
	most := <-peak
	end, err := procMem(d.Pid())
	if err != nil {
		t.Fatal(err)
	}
	cpu1, err := d.CPU()
	if err != nil {
		t.Fatal(err)
	}
	grew := max(end.hwm, most.rss) - base.rss
	t.Logf("1 GiB put and got back in %v (daemon CPU %v); after: %v; sampled peaks: RssAnon %d MiB (+%d), RssFile %d MiB (+%d); VmRSS peak +%d MiB",
		time.Since(start).Round(time.Millisecond), cpu1-cpu0, end, most.anon>>20, (most.anon-base.anon)>>20,
		most.file>>20, (most.file-base.file)>>20, grew>>20)
	if grew >= bound {
		t.Fatalf("the daemon's resident memory (VmRSS) grew by %d MiB moving a 1 GiB object, want < %d MiB", grew>>20, bound>>20)
	}
	if m, _ := filepath.Glob(filepath.Join(d.Home, ".object-*")); len(m) != 0 {
		t.Fatalf("spool files left in the home: %v", m)
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
