package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// e2eTimeout bounds a whole scenario so that a hang fails instead of
// blocking CI; nothing here depends on how fast the machine is.
const e2eTimeout = 4 * time.Minute

// logBuffer collects a daemon's log and shows it if the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// cluster builds the binary once per test and starts daemons in temp homes.
type cluster struct {
	t   *testing.T
	ctx context.Context
	bin string
	dir string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eTimeout)
	t.Cleanup(cancel)
	dir := t.TempDir()
	bin, err := daemon.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, ctx: ctx, bin: bin, dir: dir}
}

// start runs a daemon named name with extra `contextd run` flags; it is stopped (and must exit cleanly)
// when the test ends.
func (c *cluster) start(name string, extra ...string) (*daemon.Daemon, *sdk.Client) {
	c.t.Helper()
	logs := &logBuffer{}
	d, err := daemon.Start(c.ctx, c.bin, filepath.Join(c.dir, name), logs, extra...)
	if err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	cl, err := d.Client(c.ctx)
	if err != nil {
		c.t.Fatalf("client %s: %v", name, err)
	}
	c.t.Cleanup(func() {
		cl.Close()
		if err := d.Stop(); err != nil {
			c.t.Errorf("daemon %s did not exit cleanly: %v", name, err)
		}
		if c.t.Failed() {
			logs.mu.Lock()
			c.t.Logf("log of %s (%s):\n%s", name, d.ID, logs.buf.String())
			logs.mu.Unlock()
		}
	})
	c.t.Logf("%s is %s at %s", name, d.ID, d.Addrs[0])
	return d, cl
}

func (c *cluster) cli(d *daemon.Daemon, args ...string) string {
	c.t.Helper()
	out, err := d.CLI(c.ctx, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// waitSeq waits until cl's node holds id's feed up to seq.
func (c *cluster) waitSeq(cl *sdk.Client, id feed.ID, seq uint64) {
	c.t.Helper()
	sub, err := cl.Subscribe(c.ctx, id, seq-1)
	if err != nil {
		c.t.Fatal(err)
	}
	defer sub.Close()
	e, err := sub.Next(c.ctx)
	if err != nil {
		c.t.Fatalf("waiting for %s seq %d: %v", id.Short(), seq, err)
	}
	if e.Seq != seq {
		c.t.Fatalf("subscription from %d delivered seq %d", seq-1, e.Seq)
	}
}

// feedIDs returns the entry IDs of a feed as `contextd feed --json` prints them.
func (c *cluster) feedIDs(d *daemon.Daemon, id feed.ID) []string {
	c.t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(c.cli(d, "feed", id.String(), "--json")))
	for sc.Scan() {
		var e struct {
			Seq    uint64  `json:"seq"`
			ID     string  `json:"id"`
			Author feed.ID `json:"author"`
			Type   string  `json:"type"`
			Body   []byte  `json:"body"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			c.t.Fatalf("feed --json line %q: %v", sc.Text(), err)
		}
		if e.Seq != uint64(len(ids)+1) || e.Author != id || e.Type == "" {
			c.t.Fatalf("feed --json line %d is %+v", len(ids)+1, e)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// TestThreeDaemonsReplicateWithBlocks is the walking skeleton's end-to-end
// scenario: A publishes; B follows A and connects to A; C follows A and
// connects only to B, and gets A's feed through B. Then A blocks C: B
// gets A's next entries, C none of them.
func TestThreeDaemonsReplicateWithBlocks(t *testing.T) {
	c := newCluster(t)
	a, clA := c.start("a")
	b, clB := c.start("b")
	cc, clC := c.start("c")

	for i := range 100 {
		if _, err := clA.Publish(c.ctx, "post", fmt.Appendf(nil, "post %d from A", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	c.cli(b, "follow", a.ID.String())
	c.cli(b, "connect", a.Addrs[0])
	c.cli(cc, "follow", a.ID.String())
	c.cli(cc, "follow", b.ID.String())
	c.cli(cc, "connect", b.Addrs[0])

	c.waitSeq(clC, a.ID, 100)
	want := c.feedIDs(a, a.ID)
	got := c.feedIDs(cc, a.ID)
	if len(want) != 100 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("C holds %d entries of A's feed, A %d, or their IDs differ", len(got), len(want))
	}
	peers, err := clC.Peers(c.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.ID == a.ID {
			t.Fatalf("C is linked to A directly")
		}
	}
	if st := c.cli(cc, "status"); !strings.Contains(st, a.ID.String()) {
		t.Fatalf("C's status does not show A's feed:\n%s", st)
	}

	c.cli(a, "block", cc.ID.String()) // A's seq 101
	for i := range 10 {
		if _, err := clA.Publish(c.ctx, "post", fmt.Appendf(nil, "after the block %d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	c.waitSeq(clB, a.ID, 111)

	// Barrier: B publishes after it holds all of A's entries; once C has
	// that, anything B would have relayed of A's feed was sent before it.
	// Stopping B then ends anything still in flight.
	marker, err := clB.Publish(c.ctx, "post", []byte("marker"))
	if err != nil {
		t.Fatal(err)
	}
	c.waitSeq(clC, b.ID, marker.Seq)
	head, err := clC.Head(c.ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if head.Seq > 101 {
		t.Fatalf("C got A's entries up to %d through B after A blocked C", head.Seq)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("stop B: %v", err)
	}
	if head, err := clC.Head(c.ctx, a.ID); err != nil || head.Seq > 101 {
		t.Fatalf("after B stopped, C holds A's feed to %d (%v)", head.Seq, err)
	}
}

// TestBadInputChangesNothing sends a daemon what it must refuse, and checks
// each gets a clear error while nothing changes and the daemon keeps serving.
func TestBadInputChangesNothing(t *testing.T) {
	c := newCluster(t)
	a, clA := c.start("a")
	first, err := clA.Publish(c.ctx, "post", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}

	// A 20 KiB publish: refused by the CLI and by the daemon itself.
	big := strings.Repeat("x", 20<<10)
	if _, err := daemon.RunCLI(c.ctx, c.bin, a.Home, big, "publish", "-"); err == nil || !strings.Contains(err.Error(), "at most 16384") {
		t.Errorf("CLI publish of 20 KiB: %v", err)
	}
	_, err = clA.Publish(c.ctx, "post", []byte(big))
	if !errors.Is(err, feed.ErrTooLarge) {
		t.Errorf("SDK publish of 20 KiB: %v, want feed.ErrTooLarge", err)
	}

	// Unknown and malformed feed IDs.
	other, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CLI(c.ctx, "feed", other.Public().String()); err == nil || !strings.Contains(err.Error(), "unknown feed") {
		t.Errorf("feed of an unknown ID: %v", err)
	}
	if _, err := a.CLI(c.ctx, "feed", "12D3KooWnotanid"); err == nil || !strings.Contains(err.Error(), "not a contextd ID") {
		t.Errorf("feed of a malformed ID: %v", err)
	}

	// No token: HTTP 401.
	url := "http://" + a.RPC + api.Path
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"node.info"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("call without token: HTTP %d, want 401", resp.StatusCode)
	}

	// Malformed JSON: a parse error, and the daemon keeps serving.
	tok, err := node.ReadToken(a.Home)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var r api.Response
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(body, &r); err != nil || r.Error == nil || r.Error.Code != api.CodeParseError {
		t.Errorf("malformed JSON got %s (%v), want code %d", body, err, api.CodeParseError)
	}
	if _, err := clA.Info(c.ctx); err != nil {
		t.Errorf("daemon stopped serving after bad input: %v", err)
	}

	head, err := clA.Head(c.ctx, a.ID)
	if err != nil || head.Seq != first.Seq || head.ID != first.ID {
		t.Fatalf("feed changed by rejected input: head %+v (%v), want %+v", head, err, first)
	}
}

// TestSyncWait runs `contextd sync --wait` on B, which follows A, before B
// has any peer: it must wait for B to connect to A and fetch all of A's
// entries, and exit 0 only then. Plain `sync` without peers returns at once.
func TestSyncWait(t *testing.T) {
	c := newCluster(t)
	a, clA := c.start("a")
	b, clB := c.start("b")
	for i := range 300 {
		if _, err := clA.Publish(c.ctx, "post", fmt.Appendf(nil, "post %d from A", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	headA, err := clA.Head(c.ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	c.cli(b, "follow", a.ID.String())
	if out := c.cli(b, "sync"); !strings.Contains(out, "caught up (no peer connected)") {
		t.Fatalf("sync without peers printed %q", out)
	}

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := b.CLI(c.ctx, "sync", "--wait")
		done <- result{out, err}
	}()
	c.cli(b, "connect", a.Addrs[0])
	r := <-done
	if r.err != nil {
		t.Fatalf("sync --wait: %v\n%s", r.err, r.out)
	}
	t.Logf("sync --wait printed:\n%s", r.out)
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "synced ") || !strings.Contains(last, "caught up with 1 peer") {
		t.Errorf("last line of sync --wait is %q", last)
	}
	if strings.Contains(r.out, "\r") {
		t.Errorf("sync --wait drew a bar into a pipe: %q", r.out)
	}
	head, err := clB.Head(c.ctx, a.ID)
	if err != nil || head != headA {
		t.Fatalf("after sync --wait, B holds A's feed to %+v (%v), A's head is %+v", head, err, headA)
	}
}
