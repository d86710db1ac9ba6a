package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// TestLiveRelay: publisher P is linked to viewer A, viewer B only to A. B
// watches through A and gets the bytes P writes, in order, as do A and P's
// own watcher; CloseStream ends every watch with END. The relay's counters
// show what it carried.
func TestLiveRelay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p, a, b := startNode(t, ctx), startNode(t, ctx), startNode(t, ctx)
	if err := a.Connect(ctx, addrOf(t, p)); err != nil {
		t.Fatal(err)
	}
	if err := b.Connect(ctx, addrOf(t, a)); err != nil {
		t.Fatal(err)
	}
	id, err := p.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WriteStream(ctx, id, []byte("x")); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("write to a stream another node publishes: %v, want ErrNotFound", err)
	}
	var want []byte
	write := func(i int) {
		rec := bytes.Repeat([]byte{byte(i)}, 3000)
		copy(rec, fmt.Sprintf("record %d;", i))
		if err := p.WriteStream(ctx, id, rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, rec...)
	}
	write(0)
	watches := map[string]<-chan api.StreamChunk{}
	for _, w := range []struct {
		name string
		n    *Node
	}{{"P", p}, {"A", a}, {"B", b}} {
		ch, stop, err := w.n.WatchStream(ctx, id, 0)
		if err != nil {
			t.Fatalf("%s: WatchStream: %v", w.name, err)
		}
		defer stop()
		watches[w.name] = ch
	}
	for i := 1; i < 100; i++ {
		write(i)
	}
	if err := p.CloseStream(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteStream(ctx, id, []byte("x")); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("write to a closed stream: %v, want ErrNotFound", err)
	}
	for name, ch := range watches {
		var got []byte
		var ended bool
		next := uint64(0)
		for c := range ch {
			if ended {
				t.Fatalf("%s: chunk %d after END", name, c.Index)
			}
			if c.Index < next {
				t.Fatalf("%s: chunk %d after %d", name, c.Index, next)
			}
			next, ended = c.Index+1, c.End
			got = append(got, c.Data...)
		}
		if !ended || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (want %d), END %v", name, len(got), len(want), ended)
		}
	}
	if st := a.StreamStats(); st.ReceivedBytes < uint64(len(want)) || st.SentBytes < uint64(len(want)) {
		t.Errorf("relay A's stats %+v: it received and sent the %d bytes", st, len(want))
	}
	if _, _, err := b.WatchStream(ctx, feed.ID{1}, -2); !errors.Is(err, api.ErrInvalidParams) {
		t.Errorf("watch from -2: %v, want ErrInvalidParams", err)
	}
}

// upstreamOf returns the peer n receives stream id from (zero if none).
func upstreamOf(n *Node, id feed.ID) feed.ID {
	n.liveMu.Lock()
	defer n.liveMu.Unlock()
	if c := n.streams[id]; c != nil {
		return c.upstream
	}
	return feed.ID{}
}

// TestLiveFailover: viewer B is linked to relays R1 and R2, both fed by
// publisher P; when B's upstream shuts down, B goes on from the other
// relay from the next munro it lacks, and gets every byte once, in order.
func TestLiveFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p, b := startNode(t, ctx), startNode(t, ctx)
	id, err := p.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stops := map[feed.ID]func(){}
	for range 2 {
		r, stop := startNodeIn(t, ctx, t.TempDir())
		stops[r.ID()] = stop
		if err := r.Connect(ctx, addrOf(t, p)); err != nil {
			t.Fatal(err)
		}
		if err := b.Connect(ctx, addrOf(t, r)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.WatchStream(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
	}
	var want []byte
	write := func(from, to int) {
		for i := from; i < to; i++ {
			rec := bytes.Repeat([]byte{byte(i)}, 2000)
			copy(rec, fmt.Sprintf("record %d;", i))
			if err := p.WriteStream(ctx, id, rec); err != nil {
				t.Fatal(err)
			}
			want = append(want, rec...)
		}
	}
	write(0, 50)
	ch, stop, err := b.WatchStream(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	write(50, 100)
	up := upstreamOf(b, id)
	if stops[up] == nil {
		t.Fatalf("B's upstream is %s, not a relay", up.Short())
	}
	stops[up]() // records 100 on can only come through the other relay
	write(100, 150)
	if err := p.CloseStream(ctx, id); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var ended bool
	for c := range ch {
		got, ended = append(got, c.Data...), c.End
	}
	if !ended || !bytes.Equal(got, want) {
		t.Errorf("B got %d bytes (want %d, equal prefix %v), END %v", len(got), len(want), bytes.HasPrefix(want, got), ended)
	}
}
