package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// fakeHome is a home whose rpc.addr and rpc.token lead to an RPC server
// over the fake node.
func fakeHome(t *testing.T) (string, *rpctest.Node) {
	t.Helper()
	home := t.TempDir()
	tok, err := node.Token(home)
	if err != nil {
		t.Fatal(err)
	}
	n := rpctest.NewNode()
	srv := rpc.New(rpc.Config{Node: n, Token: tok})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	if err := node.WriteRPCAddr(home, strings.TrimPrefix(ts.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	return home, n
}

// runCLI runs contextd with args on home, stdin as standard input, and
// returns standard output, standard error and the error.
func runCLI(t *testing.T, home string, stdin []byte, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRoot()
	cmd.SetArgs(append([]string{"--home", home}, args...))
	cmd.SetIn(bytes.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// TestStreamCLI: open, publish (kept open, then closed), watch from the
// start, and publish to a new stream, through the CLI.
func TestStreamCLI(t *testing.T) {
	home, n := fakeHome(t)
	out, _, err := runCLI(t, home, nil, "stream", "open")
	if err != nil {
		t.Fatal(err)
	}
	id, err := feed.ParseID(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("stream open printed %q: %v", out, err)
	}

	type result struct {
		out string
		err error
	}
	watched := make(chan result, 1)
	go func() {
		out, _, err := runCLI(t, home, nil, "stream", "watch", id.String(), "--from", "0")
		watched <- result{out, err}
	}()
	first := bytes.Repeat([]byte("first "), 5000)
	if _, _, err := runCLI(t, home, first, "stream", "publish", id.String(), "--keep-open"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, home, []byte("second"), "stream", "publish", id.String()); err != nil {
		t.Fatal(err)
	}
	r := <-watched
	if r.err != nil || r.out != string(first)+"second" {
		t.Fatalf("watch: %d bytes, %v; want %d bytes", len(r.out), r.err, len(first)+len("second"))
	}
	if err := n.WriteStream(t.Context(), id, []byte("x")); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("the stream is open after publish without --keep-open: %v", err)
	}

	out, errOut, err := runCLI(t, home, []byte("new stream"), "stream", "publish")
	if err != nil || out != "" {
		t.Fatalf("publish to a new stream: %q %v", out, err)
	}
	newID, err := feed.ParseID(strings.TrimSpace(errOut))
	if err != nil {
		t.Fatalf("publish printed %q on standard error: %v", errOut, err)
	}
	if out, _, err := runCLI(t, home, nil, "stream", "watch", newID.String(), "--from", "0"); err != nil || out != "new stream" {
		t.Fatalf("watch of the new, closed stream: %q %v", out, err)
	}
}

// TestStreamCLIErrors: bad arguments and refusals fail with messages that
// say what is wrong.
func TestStreamCLIErrors(t *testing.T) {
	home, _ := fakeHome(t)
	unknown := rpctest.KeyFor(5).Public().String()
	for _, tc := range []struct {
		args   []string
		msgHas string
	}{
		{[]string{"stream", "watch", "nope"}, "stream ID: not a contextd ID"},
		{[]string{"stream", "close", unknown}, "not published here"},
		{[]string{"stream", "publish", unknown}, "not published here"},
		{[]string{"stream", "watch", unknown}, "no carrier"},
		{[]string{"stream", "watch", unknown, "--from", "-2"}, `"from"`},
	} {
		if _, _, err := runCLI(t, home, []byte("x"), tc.args...); err == nil || !strings.Contains(err.Error(), tc.msgHas) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.msgHas)
		}
	}
}

// TestStreamTwoDaemons: a file piped into a stream on daemon A with `stream
// publish` comes out of `stream watch` on daemon B, linked to A, byte for
// byte, and the watch ends when A closes the stream.
func TestStreamTwoDaemons(t *testing.T) {
	c := newCluster(t)
	a, _ := c.start("a")
	b, clB := c.start("b")
	if err := clB.Connect(c.ctx, a.Addrs[0]); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(c.cli(a, "stream", "open"))
	data := make([]byte, 200_000)
	rand.Read(data)
	if _, err := daemon.RunCLI(c.ctx, a.Bin, a.Home, string(data), "stream", "publish", id, "--keep-open"); err != nil {
		t.Fatal(err)
	}

	type result struct {
		out string
		err error
	}
	watched := make(chan result, 1)
	go func() {
		out, err := b.CLI(c.ctx, "stream", "watch", id, "--from", "0")
		watched <- result{out, err}
	}()
	// B has joined and holds every byte once it received them (with
	// the framing on top).
	for {
		st, err := clB.StreamStats(c.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.ReceivedBytes >= uint64(len(data)) {
			break
		}
		select {
		case r := <-watched:
			t.Fatalf("watch ended early: %d bytes, %v", len(r.out), r.err)
		case <-c.ctx.Done():
			t.Fatalf("B received %d bytes of %d", st.ReceivedBytes, len(data))
		case <-time.After(10 * time.Millisecond):
		}
	}
	c.cli(a, "stream", "close", id)
	r := <-watched
	if r.err != nil || r.out != string(data) {
		t.Fatalf("B watched %d bytes (%v), want the %d published", len(r.out), r.err, len(data))
	}
}
