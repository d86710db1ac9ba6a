package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// tailLine is one line of `ctx tail --json`.
type tailLine struct {
	Context   feed.ID   `json:"context"`
	Cursor    uint64    `json:"cursor"`
	Author    feed.ID   `json:"author"`
	Seq       uint64    `json:"seq"`
	ID        feed.Hash `json:"id"`
	Timestamp int64     `json:"timestamp"`
	Text      string    `json:"text"`
}

// msgKey identifies a message across nodes (cursors are per node).
type msgKey struct {
	Author feed.ID
	Seq    uint64
	ID     feed.Hash
}

func (l tailLine) key() msgKey { return msgKey{l.Author, l.Seq, l.ID} }

func lineOf(m api.Message) tailLine {
	return tailLine{Context: m.Context, Cursor: m.Cursor, Author: m.Author, Seq: m.Seq, ID: m.ID, Timestamp: m.Timestamp, Text: m.Text}
}

// checkOnce checks what one node delivered for context ctxID: cursors
// strictly ascending, no message twice, each author's seqs ascending. It
// returns the set of messages.
func checkOnce(t *testing.T, who string, ctxID feed.ID, lines []tailLine) map[msgKey]bool {
	t.Helper()
	set := map[msgKey]bool{}
	lastSeq := map[feed.ID]uint64{}
	var cursor uint64
	for _, l := range lines {
		switch {
		case l.Context != ctxID || l.Timestamp == 0 || l.ID.IsZero():
			t.Fatalf("%s: message %+v lacks its context, timestamp or id", who, l)
		case l.Cursor <= cursor:
			t.Fatalf("%s: cursor %d after %d", who, l.Cursor, cursor)
		case set[l.key()]:
			t.Fatalf("%s: %s seq %d delivered twice", who, l.Author.Short(), l.Seq)
		case l.Seq <= lastSeq[l.Author]:
			t.Fatalf("%s: %s seq %d after seq %d", who, l.Author.Short(), l.Seq, lastSeq[l.Author])
		}
		cursor, lastSeq[l.Author] = l.Cursor, l.Seq
		set[l.key()] = true
	}
	return set
}

// tail returns the messages d holds in context id, from `ctx tail --json`.
func (c *cluster) tail(d *daemon.Daemon, id feed.ID) []tailLine {
	c.t.Helper()
	var out []tailLine
	sc := bufio.NewScanner(strings.NewReader(c.cli(d, "ctx", "tail", id.String(), "--json")))
	for sc.Scan() {
		var l tailLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			c.t.Fatalf("ctx tail --json line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// collect reads n messages from s, failing on an error or the deadline.
func (c *cluster) collect(who string, s *sdk.ContextSubscription, n int) []tailLine {
	c.t.Helper()
	out := make([]tailLine, 0, n)
	for len(out) < n {
		m, err := s.Next(c.ctx)
		if err != nil {
			c.t.Fatalf("%s: subscriber got %d of %d messages: %v", who, len(out), n, err)
		}
		out = append(out, lineOf(m))
	}
	return out
}

// publishAll has each client publish n messages, all at once.
func (c *cluster) publishAll(id feed.ID, n int, names []string, cls []*sdk.Client) {
	c.t.Helper()
	var wg sync.WaitGroup
	for i, cl := range cls {
		wg.Go(func() {
			for j := range n {
				if _, err := cl.PublishContextText(c.ctx, id, fmt.Sprintf("%s %d", names[i], j)); err != nil {
					c.t.Errorf("%s publishes: %v", names[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	if c.t.Failed() {
		c.t.FailNow()
	}
}

// follower is a `ctx tail --follow --json` process.
type follower struct {
	cmd   *exec.Cmd
	lines chan tailLine // closed when its output ends
}

func (c *cluster) follow(d *daemon.Daemon, id feed.ID) *follower {
	c.t.Helper()
	cmd := exec.CommandContext(c.ctx, d.Bin, "ctx", "tail", id.String(), "--follow", "--json", "--home", d.Home)
	out, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	f := &follower{cmd: cmd, lines: make(chan tailLine, 1024)}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l tailLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				c.t.Errorf("ctx tail --follow --json line %q: %v", sc.Text(), err)
				return
			}
			f.lines <- l
		}
	}()
	c.t.Cleanup(func() {
		cmd.Process.Kill()
		for range f.lines { // the reader is done before Wait closes the pipe
		}
		cmd.Wait()
		if c.t.Failed() && stderr.Len() > 0 {
			c.t.Logf("ctx tail --follow stderr: %s", stderr.String())
		}
	})
	return f
}

// next reads n lines from the follower.
func (f *follower) next(c *cluster, n int) []tailLine {
	c.t.Helper()
	var out []tailLine
	for len(out) < n {
		select {
		case l, ok := <-f.lines:
			if !ok {
				c.t.Fatalf("ctx tail --follow ended after %d of %d lines", len(out), n)
			}
			out = append(out, l)
		case <-c.ctx.Done():
			c.t.Fatalf("ctx tail --follow printed %d of %d lines: %v", len(out), n, c.ctx.Err())
		}
	}
	return out
}

// stop interrupts the follower, which must exit cleanly and print nothing
// more.
func (f *follower) stop(c *cluster) {
	c.t.Helper()
	if err := f.cmd.Process.Signal(syscall.SIGINT); err != nil {
		c.t.Fatal(err)
	}
	for l := range f.lines {
		c.t.Fatalf("ctx tail --follow printed an extra message: %+v", l)
	}
	if err := f.cmd.Wait(); err != nil {
		c.t.Fatalf("ctx tail --follow on interrupt: %v", err)
	}
}

// TestContexts runs the contexts' end-to-end scenarios, sharing one build
// of the binary.
func TestContexts(t *testing.T) {
	c := newCluster(t)
	for _, sc := range []struct {
		name string
		run  func(c *cluster)
	}{
		{"Chain", contextChain},
		{"Loss", contextLoss},
		{"BadInput", contextBadInput},
		{"CLI", contextCLI},
	} {
		t.Run(sc.name, func(t *testing.T) {
			sc.run(&cluster{t: t, ctx: c.ctx, bin: c.bin, dir: t.TempDir()})
		})
	}
}

// contextChain is the acceptance 1: five daemons in a chain
// (each connects only to the next). A creates a context, B–D join; A–D
// publish 50 messages each at once; all four end with the same 200, each
// once, each author in seq order. E joins afterwards, follows the context
// from the start, and gets the 200 and a message A publishes right after
// the join, nothing missing or doubled at the seam.
func contextChain(c *cluster) {
	t := c.t
	names := []string{"A", "B", "C", "D", "E"}
	ds := make([]*daemon.Daemon, len(names))
	cls := make([]*sdk.Client, len(names))
	for i, n := range names {
		ds[i], cls[i] = c.start(n)
	}
	for i := range len(ds) - 1 {
		c.cli(ds[i], "connect", ds[i+1].Addrs[0])
	}
	id, err := feed.ParseID(strings.TrimSpace(c.cli(ds[0], "ctx", "create", "chain", "--description", "acceptance 1")))
	if err != nil {
		t.Fatalf("ctx create printed no ID: %v", err)
	}
	subs := make([]*sdk.ContextSubscription, 4)
	for i := range 4 {
		if i > 0 {
			if out := c.cli(ds[i], "ctx", "join", id.String()); !strings.HasPrefix(out, id.String()) {
				t.Fatalf("ctx join printed %q", out)
			}
		}
		if subs[i], err = cls[i].SubscribeContext(c.ctx, id, sdk.ContextOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	const each = 50
	c.publishAll(id, each, names[:4], cls[:4])
	var want map[msgKey]bool
	for i := range 4 {
		got := checkOnce(t, names[i]+"'s subscriber", id, c.collect(names[i], subs[i], 4*each))
		held := checkOnce(t, names[i]+"'s ctx tail", id, c.tail(ds[i], id))
		if len(held) != 4*each || !sameSet(got, held) {
			t.Fatalf("%s holds %d messages; its subscriber saw %d, not the same", names[i], len(held), len(got))
		}
		if want == nil {
			want = held
		} else if !sameSet(want, held) {
			t.Fatalf("%s holds other messages than A", names[i])
		}
	}
	authors := map[feed.ID]int{}
	for k := range want {
		authors[k.Author]++
	}
	for i := range 4 {
		if authors[ds[i].ID] != each {
			t.Fatalf("%s has %d messages in the context, want %d", names[i], authors[ds[i].ID], each)
		}
	}

	// E joins late and follows from the start; A publishes right away.
	c.cli(ds[4], "ctx", "join", id.String())
	f := c.follow(ds[4], id)
	late, err := cls[0].PublishContextText(c.ctx, id, "after E joined")
	if err != nil {
		t.Fatal(err)
	}
	got := checkOnce(t, "E's ctx tail --follow", id, f.next(c, 4*each+1))
	want[lineOf(late).key()] = true
	if !sameSet(got, want) {
		t.Fatalf("E followed %d messages, not the %d A holds", len(got), len(want))
	}
	f.stop(c)
	if held := checkOnce(t, "E's ctx tail", id, c.tail(ds[4], id)); !sameSet(held, want) {
		t.Fatalf("E holds %d messages, want %d", len(held), len(want))
	}
}

func sameSet(a, b map[msgKey]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// contextLoss is the acceptance 2: C is stopped while A and B
// publish 100 messages; once restarted it holds all of them, and its
// subscriber, resuming from its last cursor, sees each exactly once. A
// subscriber of B that closes and resumes from its cursor misses nothing.
func contextLoss(c *cluster) {
	t := c.t
	a, clA := c.start("a")
	b, clB := c.start("b")
	cc, clC := c.start("c")
	c.cli(a, "connect", b.Addrs[0])
	c.cli(b, "connect", cc.Addrs[0])
	id, err := feed.ParseID(strings.TrimSpace(c.cli(a, "ctx", "create", "loss")))
	if err != nil {
		t.Fatal(err)
	}
	c.cli(b, "ctx", "join", id.String())
	c.cli(cc, "ctx", "join", id.String())
	subB, err := clB.SubscribeContext(c.ctx, id, sdk.ContextOptions{})
	if err != nil {
		t.Fatal(err)
	}
	subC, err := clC.SubscribeContext(c.ctx, id, sdk.ContextOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pubs := []*sdk.Client{clA, clB}
	c.publishAll(id, 10, []string{"a", "b"}, pubs)
	seenC := c.collect("c", subC, 20)
	seenB := c.collect("b", subB, 20)

	// C goes away; the others publish 100 more.
	cursorC := subC.Cursor()
	clC.Close()
	if err := cc.Stop(); err != nil {
		t.Fatalf("stop C: %v", err)
	}
	c.publishAll(id, 50, []string{"a", "b"}, pubs)

	// B's subscriber closes and resumes from its cursor halfway.
	seenB = append(seenB, c.collect("b", subB, 50)...)
	subB.Close()
	subB, err = clB.SubscribeContext(c.ctx, id, sdk.ContextOptions{Since: seenB[len(seenB)-1].Cursor})
	if err != nil {
		t.Fatal(err)
	}
	seenB = append(seenB, c.collect("b", subB, 50)...)
	want := checkOnce(t, "B's subscriber", id, seenB)

	// C is back, under the same home: it links B again and its
	// subscriber resumes from the cursor it had.
	cc, clC = c.start("c")
	c.cli(cc, "connect", b.Addrs[0])
	subC, err = clC.SubscribeContext(c.ctx, id, sdk.ContextOptions{Since: cursorC})
	if err != nil {
		t.Fatal(err)
	}
	seenC = append(seenC, c.collect("c", subC, 100)...)
	if got := checkOnce(t, "C's subscriber", id, seenC); !sameSet(got, want) {
		t.Fatalf("C's subscriber saw %d messages, B's %d: not the same", len(got), len(want))
	}
	if held := checkOnce(t, "C's ctx tail", id, c.tail(cc, id)); !sameSet(held, want) {
		t.Fatalf("C holds %d messages, want %d", len(held), len(want))
	}
}

// contextBadInput is the acceptance 3 for what goes through
// the API: a body over the limit, a context not joined, unknown and
// malformed context IDs. Each is a clear error and stores nothing.
func contextBadInput(c *cluster) {
	t := c.t
	a, clA := c.start("a")
	id, err := feed.ParseID(strings.TrimSpace(c.cli(a, "ctx", "create", "room")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clA.PublishContextText(c.ctx, id, "hello"); err != nil {
		t.Fatal(err)
	}

	// A body over the limit: refused by the CLI and by the daemon.
	big := strings.Repeat("x", api.MaxMessageBody+1)
	limit := fmt.Sprint(api.MaxMessageBody)
	if _, err := daemon.RunCLI(c.ctx, c.bin, a.Home, big, "ctx", "publish", id.String(), "-"); err == nil || !strings.Contains(err.Error(), limit) {
		t.Errorf("CLI publish of %d bytes: %v", len(big), err)
	}
	if _, err := clA.PublishContextText(c.ctx, id, big); !errors.Is(err, feed.ErrTooLarge) || !strings.Contains(err.Error(), limit) {
		t.Errorf("SDK publish of %d bytes: %v, want feed.ErrTooLarge naming the limit", len(big), err)
	}
	if err := clA.SendContext(c.ctx, id, []byte(big)); !errors.Is(err, feed.ErrTooLarge) {
		t.Errorf("SDK send of %d bytes: %v, want feed.ErrTooLarge", len(big), err)
	}

	// A context not joined (an unknown one, then one left).
	other, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clA.PublishContextText(c.ctx, other.Public(), "x"); !errors.Is(err, api.ErrNotJoined) {
		t.Errorf("publish to an unknown context: %v, want not joined", err)
	}
	if _, err := a.CLI(c.ctx, "ctx", "publish", other.Public().String(), "x"); err == nil || !strings.Contains(err.Error(), "not joined") {
		t.Errorf("CLI publish to an unknown context: %v", err)
	}
	left, err := clA.CreateContext(c.ctx, "left", "")
	if err != nil {
		t.Fatal(err)
	}
	c.cli(a, "ctx", "leave", left.ID.String())
	if _, err := clA.PublishContextText(c.ctx, left.ID, "x"); !errors.Is(err, api.ErrNotJoined) {
		t.Errorf("publish to a context left: %v, want not joined", err)
	}
	if _, err := a.CLI(c.ctx, "ctx", "ban", other.Public().String(), a.ID.String()); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("ban in a context A did not create: %v", err)
	}

	// Malformed IDs: the CLI names the argument, the API the field.
	if _, err := a.CLI(c.ctx, "ctx", "publish", "12D3KooWnope", "x"); err == nil || !strings.Contains(err.Error(), "context ID: not a contextd ID") {
		t.Errorf("CLI publish to a malformed ID: %v", err)
	}
	err = clA.Call(c.ctx, api.MethodContextPublish, map[string]string{"id": "12D3KooWnope", "text": "x"}, nil)
	if se, ok := errors.AsType[*sdk.Error](err); !ok || se.Code != api.CodeInvalidParams || !strings.Contains(se.Message, `"id"`) {
		t.Errorf("publish to a malformed ID: %v, want invalid params naming the field", err)
	}

	// Nothing was stored.
	held := c.tail(a, id)
	if len(held) != 1 || held[0].Text != "hello" {
		t.Fatalf("A holds %+v, want only the first message", held)
	}
	for _, x := range []feed.ID{other.Public(), left.ID} {
		if h, err := clA.ContextHistory(c.ctx, api.HistoryParams{ID: x}); err != nil || len(h.Messages) != 0 {
			t.Fatalf("history of %s: %+v, %v; want none", x.Short(), h, err)
		}
	}
}

// contextCLI runs the ctx commands not covered above against one daemon
// and checks what they print.
func contextCLI(c *cluster) {
	t := c.t
	a, _ := c.start("a")
	id := strings.TrimSpace(c.cli(a, "ctx", "create", "room", "--description", "talk"))
	for i := range 5 {
		if out := c.cli(a, "ctx", "publish", id, fmt.Sprint("m", i+1)); !strings.HasPrefix(out, fmt.Sprint(i+1, " ")) {
			t.Fatalf("ctx publish printed %q, want cursor %d first", out, i+1)
		}
	}
	if _, err := daemon.RunCLI(c.ctx, c.bin, a.Home, "from stdin", "ctx", "publish", id, "-"); err != nil {
		t.Fatal(err)
	}
	c.cli(a, "ctx", "send", id, "typing")

	lines := func(out string) []string { return strings.Split(strings.TrimSpace(out), "\n") }
	texts := func(out string) string {
		var ts []string
		for _, l := range lines(out) {
			f := strings.Split(l, "\t")
			ts = append(ts, f[len(f)-1])
		}
		return strings.Join(ts, ",")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ctx", "tail", id}, "m1,m2,m3,m4,m5,from stdin"},
		{[]string{"ctx", "tail", id, "--since", "4"}, "m5,from stdin"},
		{[]string{"ctx", "tail", id, "--last", "2"}, "m5,from stdin"},
		{[]string{"ctx", "history", id, "--limit", "2"}, "m1,m2"},
		{[]string{"ctx", "history", id, "--newest", "--limit", "2"}, "from stdin,m5"},
	} {
		if got := texts(c.cli(a, tc.args...)); got != tc.want {
			t.Errorf("%s: got %s, want %s", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	if out := c.cli(a, "ctx", "list"); out != id+"\t6\towner\troom\n" {
		t.Errorf("ctx list printed %q", out)
	}
	if out := c.cli(a, "ctx", "members", id); out != a.ID.String()+"\t6\t6\t\n" {
		t.Errorf("ctx members printed %q", out)
	}

	other, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if out := c.cli(a, "ctx", "ban", id, other.Public().String()); !strings.HasPrefix(out, "2 ") {
		t.Errorf("ctx ban printed %q, want the context feed's seq 2 (after its meta)", out)
	}
	if out := c.cli(a, "ctx", "unban", id, other.Public().String()); !strings.HasPrefix(out, "3 ") {
		t.Errorf("ctx unban printed %q", out)
	}
	if _, err := a.CLI(c.ctx, "ctx", "ban", id, "nope"); err == nil || !strings.Contains(err.Error(), "author: not a contextd ID") {
		t.Errorf("ctx ban of a malformed author: %v", err)
	}
	if _, err := a.CLI(c.ctx, "ctx", "history", id, "--limit", "0"); err == nil || !strings.Contains(err.Error(), "--limit 0") {
		t.Errorf("ctx history --limit 0: %v", err)
	}
	c.cli(a, "ctx", "leave", id)
	if out := c.cli(a, "ctx", "list"); out != "" {
		t.Errorf("ctx list after leave printed %q", out)
	}
	if got := texts(c.cli(a, "ctx", "tail", id, "--last", "1")); got != "from stdin" {
		t.Errorf("ctx tail after leave: %s", got)
	}
}
