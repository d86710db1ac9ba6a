package sdk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// nextChunk returns the next chunk of s, failing the test on an error.
func nextChunk(t *testing.T, s *StreamSubscription) api.StreamChunk {
	t.Helper()
	ch, err := s.Next(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// TestStreams: bytes published through a pipe and written in calls reach
// a byte watch and a chunk subscription in order, both of which end
// cleanly when the stream is closed.
func TestStreams(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	id, err := c.OpenStream(ctx)
	if err != nil || id.IsZero() {
		t.Fatalf("open: %s %v", id, err)
	}
	sub, err := c.SubscribeStream(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.WatchStream(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()

	pr, pw := io.Pipe()
	published := make(chan error, 1)
	go func() { published <- c.PublishStream(ctx, id, pr) }()
	pw.Write([]byte("piped "))
	if ch := nextChunk(t, sub); ch.Index != 0 || string(ch.Data) != "piped " {
		t.Fatalf("chunk %+v while the pipe is open", ch)
	}
	pw.Close()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if err := c.WriteStream(ctx, id, []byte("written")); err != nil {
		t.Fatal(err)
	}
	if ch := nextChunk(t, sub); ch.Index != 1 || string(ch.Data) != "written" {
		t.Fatalf("chunk %+v", ch)
	}
	if err := c.CloseStream(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ch, err := sub.Next(ctx); err != io.EOF {
		t.Fatalf("after close: %+v %v, want io.EOF", ch, err)
	}
	if _, err := sub.Next(ctx); err != io.EOF {
		t.Fatalf("Next again: %v, want io.EOF", err)
	}
	if b, err := io.ReadAll(body); err != nil || string(b) != "piped written" {
		t.Fatalf("watched %q, %v", b, err)
	}
	if err := c.WriteStream(ctx, id, []byte("late")); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("write after close: %v, want api.ErrNotFound", err)
	}
	st, err := c.StreamStats(ctx)
	if err != nil || st.ReceivedBytes != uint64(len("piped written")) {
		t.Fatalf("stats %+v %v", st, err)
	}
}

// TestStreamSubscriptionResumes: a chunk subscription goes on across
// dropped connections from the next chunk it lacks,
// without duplicates, and a slow reader sees the chunks it lost as a jump
// in Index.
func TestStreamSubscriptionResumes(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{SubBuffer: 4})
	ctx := ctxT(t)
	id, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	write := func(i int) {
		t.Helper()
		if err := e.node.WriteStream(ctx, id, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	sub, err := c.SubscribeStream(ctx, id, api.StreamLiveEdge)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	write(1)
	if ch := nextChunk(t, sub); ch.Index != 1 {
		t.Fatalf("first chunk at the live edge: %d, want 1", ch.Index)
	}
	for i := 2; i <= 30; i++ {
		write(i)
		if i%10 == 0 {
			e.ln.killAll()
		}
	}
	for i := uint64(2); i <= 30; i++ {
		if ch := nextChunk(t, sub); ch.Index != i || string(ch.Data) != fmt.Sprint(i) {
			t.Fatalf("chunk %d %q, want %d", ch.Index, ch.Data, i)
		}
	}
	// Far behind: the fake keeps StreamWindow chunks.
	for i := 31; i <= 31+2*rpctest.StreamWindow; i++ {
		write(i)
	}
	last := uint64(30)
	jumped := false
	for last < uint64(31+2*rpctest.StreamWindow) {
		ch := nextChunk(t, sub)
		if ch.Index <= last {
			t.Fatalf("chunk %d after %d", ch.Index, last)
		}
		jumped = jumped || ch.Index > last+1
		last = ch.Index
	}
	if !jumped {
		t.Fatalf("no jump in Index although the reader lagged by %d chunks", 2*rpctest.StreamWindow)
	}
}

// TestStreamErrors: refusals and broken watches come back as errors that
// match the api sentinels.
func TestStreamErrors(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	unknown := rpctest.KeyFor(9).Public()
	if _, err := c.WatchStream(ctx, unknown, api.StreamLiveEdge); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("watch of an unknown stream: %v, want api.ErrUnavailable", err)
	}
	if err := c.PublishStream(ctx, unknown, bytes.NewReader([]byte("x"))); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("publish to an unknown stream: %v, want api.ErrNotFound", err)
	}
	if err := c.CloseStream(ctx, unknown); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("close of an unknown stream: %v, want api.ErrNotFound", err)
	}
	if _, err := c.SubscribeStream(ctx, unknown, -2); !errors.Is(err, api.ErrInvalidParams) {
		t.Errorf("subscribe from -2: %v, want api.ErrInvalidParams", err)
	}

	id, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.SubscribeStream(ctx, id, api.StreamLiveEdge)
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.WatchStream(ctx, id, api.StreamLiveEdge)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if err := c.WriteStream(ctx, id, []byte("only")); err != nil {
		t.Fatal(err)
	}
	nextChunk(t, sub)
	got := make([]byte, 4)
	if _, err := io.ReadFull(body, got); err != nil {
		t.Fatal(err)
	}
	e.node.DropStream(id)
	if _, err := sub.Next(ctx); !errors.Is(err, api.ErrUnavailable) {
		t.Errorf("Next after the daemon lost the stream: %v, want api.ErrUnavailable", err)
	}
	if _, err := io.ReadAll(body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading after the daemon lost the stream: %v, want io.ErrUnexpectedEOF", err)
	}
}
