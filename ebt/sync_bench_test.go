package ebt

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
	"github.com/contextd/contextd/store"
)

// BenchmarkSync measures initial sync between two Replicators with Badger
// stores over a flitlink link in memory (memlink): the receiver follows the
// sender and fetches its feed of benchEntries entries of 200-byte bodies,
// as many as cxbench repl by default, so that the receiver's Badger flushes
// and compacts as it does there.
// It is cmd/cxbench repl without the processes, QUIC and RPC, for
// profiling (go test -bench Sync -cpuprofile).
func BenchmarkSync(b *testing.B) {
	const benchEntries = 100000
	sender := newChain(b, "bench sender")
	for range benchEntries {
		sender.next("post", make([]byte, 200))
	}
	src := openBenchStore(b, b.TempDir())
	for es := sender.entries; len(es) > 0; {
		n := min(len(es), store.MaxBatch)
		if err := src.Append(es[:n]); err != nil {
			b.Fatal(err)
		}
		es = es[n:]
	}
	head := sender.head()
	b.ReportAllocs()
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		total += syncOnce(b, src, sender.id, head)
	}
	b.ReportMetric(float64(benchEntries)*float64(b.N)/total.Seconds(), "entries/s")
}

// syncOnce runs one sync of the sender's feed into a new receiver store
// and returns how long it took from connecting to the last append.
func syncOnce(b *testing.B, src *store.Badger, senderID feed.ID, head feed.Head) time.Duration {
	b.StopTimer()
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	receiver := newChain(b, "bench receiver")
	dst := openBenchStore(b, b.TempDir())
	if err := dst.Append([]*feed.Entry{receiver.contact(senderID, feed.RelFollow)}); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	var once sync.Once
	rs, err := New(Config{Self: senderID, Store: src})
	if err != nil {
		b.Fatal(err)
	}
	rr, err := New(Config{Self: receiver.id, Store: dst, OnAppend: func(_ feed.ID, h feed.Head) {
		if h == head {
			once.Do(func() { close(done) })
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	sa, sb := memlink.NewPair(memlink.Config{}, senderID, receiver.id)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { rs.Run(ctx) })
	wg.Go(func() { rr.Run(ctx) })
	wg.Go(func() {
		l := flitlink.NewLink(sb, receiver.id, false, flitlink.Config{})
		defer l.Close()
		c, err := l.Accept(ctx)
		if err != nil {
			return
		}
		rs.Serve(ctx, c, receiver.id, true)
	})
	b.StartTimer()
	start := time.Now()
	l := flitlink.NewLink(sa, senderID, true, flitlink.Config{})
	defer l.Close()
	c, err := l.Open(ctx, Service, flitlink.Data)
	if err != nil {
		b.Fatal(err)
	}
	wg.Go(func() { rr.Serve(ctx, c, senderID, false) })
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatal("sync did not finish in a minute")
	}
	took := time.Since(start)
	b.StopTimer()
	return took
}

func openBenchStore(b *testing.B, dir string) *store.Badger {
	b.Helper()
	st, err := store.OpenBadger(dir, store.BadgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}
