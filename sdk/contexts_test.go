package sdk

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

func TestContextCalls(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	ctx := ctxT(t)
	room, err := c.CreateContext(ctx, "room", "talk")
	if err != nil || !room.Owner || !room.Joined || room.Name != "room" {
		t.Fatalf("CreateContext: %+v %v", room, err)
	}
	id := room.ID
	m, err := c.PublishContextText(ctx, id, "hello")
	if err != nil || m.Cursor != 1 || m.Text != "hello" || m.Author != rpctest.KeyFor(0).Public() {
		t.Fatalf("PublishContextText: %+v %v", m, err)
	}
	if m, err = c.PublishContext(ctx, id, []byte{1, 2}); err != nil || m.Cursor != 2 || string(m.Body) != "\x01\x02" {
		t.Fatalf("PublishContext: %+v %v", m, err)
	}
	h, err := c.ContextHistory(ctx, api.HistoryParams{ID: id, Order: api.OrderNewest, Limit: 1})
	if err != nil || len(h.Messages) != 1 || h.Messages[0].Cursor != 2 || !h.More {
		t.Fatalf("ContextHistory: %+v %v", h, err)
	}
	if cs, err := c.Contexts(ctx); err != nil || len(cs) != 1 || cs[0].ID != id || cs[0].Messages != 2 {
		t.Fatalf("Contexts: %+v %v", cs, err)
	}
	if ms, err := c.ContextMembers(ctx, id); err != nil || len(ms) != 1 || ms[0].Messages != 2 {
		t.Fatalf("ContextMembers: %+v %v", ms, err)
	}
	author := rpctest.KeyFor(5).Public()
	if hd, err := c.BanContext(ctx, id, author); err != nil || hd.Seq != 1 {
		t.Fatalf("BanContext: %+v %v", hd, err)
	}
	if hd, err := c.UnbanContext(ctx, id, author); err != nil || hd.Seq != 2 {
		t.Fatalf("UnbanContext: %+v %v", hd, err)
	}
	if err := c.SendContext(ctx, id, []byte("typing")); err != nil {
		t.Fatalf("SendContext: %v", err)
	}

	// Errors match their sentinels.
	other := rpctest.KeyFor(6).Public()
	if _, err := c.PublishContextText(ctx, other, "x"); !errors.Is(err, api.ErrNotJoined) {
		t.Fatalf("publish to a context not joined: %v", err)
	}
	if _, err := c.PublishContextText(ctx, id, strings.Repeat("x", api.MaxMessageBody+1)); !errors.Is(err, feed.ErrTooLarge) {
		t.Fatalf("publish too large: %v", err)
	}
	if j, err := c.JoinContext(ctx, other); err != nil || !j.Joined || j.Owner {
		t.Fatalf("JoinContext: %+v %v", j, err)
	}
	if _, err := c.BanContext(ctx, other, author); !errors.Is(err, api.ErrNotAllowed) {
		t.Fatalf("ban without the key: %v", err)
	}
	if err := c.LeaveContext(ctx, other); err != nil {
		t.Fatal(err)
	}
	if err := c.LeaveContext(ctx, other); !errors.Is(err, api.ErrNotJoined) {
		t.Fatalf("leave twice: %v", err)
	}
}

// expectMessages reads messages from s whose cursors must be want, in order.
func expectMessages(t *testing.T, s *ContextSubscription, want []uint64) {
	t.Helper()
	ctx := ctxT(t)
	for _, cur := range want {
		m, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next (want cursor %d): %v", cur, err)
		}
		if m.Cursor != cur {
			t.Fatalf("got cursor %d, want %d", m.Cursor, cur)
		}
	}
}

func cursors(from, to uint64) []uint64 {
	var out []uint64
	for c := from; c <= to; c++ {
		out = append(out, c)
	}
	return out
}

// TestContextSubscriptionResumes: a ContextSubscription gets every message
// once, in order, while its connection drops again and again and its
// buffer overflows; a new one resumes from the old one's cursor.
func TestContextSubscriptionResumes(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{SubBuffer: 4})
	room, err := c.CreateContext(ctxT(t), "room", "")
	if err != nil {
		t.Fatal(err)
	}
	id := room.ID
	add := func(n int) {
		for i := range n {
			if _, err := e.node.AddContextMessage(id, rpctest.KeyFor(byte(1+i%3)), []byte("x")); err != nil {
				t.Error(err)
			}
		}
	}
	add(10)
	s, err := c.SubscribeContext(ctxT(t), id, ContextOptions{Since: 3})
	if err != nil {
		t.Fatal(err)
	}
	expectMessages(t, s, cursors(4, 10))
	e.ln.killAll()
	add(20)
	expectMessages(t, s, cursors(11, 30))
	for i := range 5 {
		var wg sync.WaitGroup
		wg.Go(func() { add(20) })
		e.ln.killAll()
		from := uint64(31 + 20*i)
		expectMessages(t, s, cursors(from, from+19))
		wg.Wait()
	}
	if s.Cursor() != 130 || s.Context() != id {
		t.Fatalf("cursor %d", s.Cursor())
	}
	s.Close()
	if _, err := s.Next(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Close")
	}

	// Messages published meanwhile come to a subscription resuming from
	// the cursor, and the banned author's cursors are skipped.
	add(9)
	banned := rpctest.KeyFor(2).Public()
	if _, err := c.BanContext(ctxT(t), id, banned); err != nil {
		t.Fatal(err)
	}
	s, err = c.SubscribeContext(ctxT(t), id, ContextOptions{Since: 130})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := c.ContextHistory(ctxT(t), api.HistoryParams{ID: id, After: 130})
	if err != nil || len(h.Messages) != 6 {
		t.Fatalf("history after the ban: %d messages, %v", len(h.Messages), err)
	}
	var want []uint64
	for _, m := range h.Messages {
		want = append(want, m.Cursor)
	}
	expectMessages(t, s, want)
	if _, err := c.Info(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestContextSubscriptionLastAndDatagrams(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	room, err := c.CreateContext(ctxT(t), "room", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c.PublishContextText(ctxT(t), room.ID, fmt.Sprint(i))
	}
	s, err := c.SubscribeContext(ctxT(t), room.ID, ContextOptions{Last: 2, Datagrams: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	expectMessages(t, s, []uint64{9, 10})
	if err := c.SendContext(ctxT(t), room.ID, []byte("typing")); err != nil {
		t.Fatal(err)
	}
	select {
	case dg := <-s.Datagrams():
		if dg.Text != "typing" || dg.Context != room.ID {
			t.Fatalf("datagram %+v", dg)
		}
	case <-ctxT(t).Done():
		t.Fatal("no datagram")
	}
	e.ln.killAll() // resumes from cursor 10, not with the last 2 again
	if _, err := e.node.AddContextMessage(room.ID, rpctest.KeyFor(1), []byte("after")); err != nil {
		t.Fatal(err)
	}
	expectMessages(t, s, []uint64{11})
}

func TestContextSubscriptionEndedByServer(t *testing.T) {
	e := newEnv(t)
	c := e.dial(t, Config{})
	room, err := c.CreateContext(ctxT(t), "room", "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.SubscribeContext(ctxT(t), room.ID, ContextOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.PublishContextText(ctxT(t), room.ID, "a")
	expectMessages(t, s, []uint64{1})
	e.node.SetContextMessagesError(fmt.Errorf("store: %w", api.ErrUnavailable))
	c.PublishContextText(ctxT(t), room.ID, "b")
	_, err = s.Next(ctxT(t))
	var se *Error
	if !errors.As(err, &se) || se.Method != api.NotifyContextEnd || !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("Next: %v, want context.end unavailable", err)
	}
}
