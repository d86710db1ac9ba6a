package store

import (
	"fmt"
	"testing"

	"github.com/contextd/contextd/feed"
)

// unsignedRun returns n linked entries with 200-byte bodies that continue
// head; Append does not check signatures, so they are left zero.
func unsignedRun(author feed.ID, head feed.Head, n int) []*feed.Entry {
	es := make([]*feed.Entry, n)
	for i := range es {
		e := &feed.Entry{Author: author, Seq: head.Seq + 1, Prev: head.ID, Timestamp: int64(head.Seq), Type: "post", Body: make([]byte, 200)}
		es[i] = e
		head = e.Next()
	}
	return es
}

// BenchmarkBadgerAppend measures appends of batches of 200-byte entries to
// one feed, as replication does them (unsynced), and single appends each
// followed by a Sync, as the node writes its own entries.
func BenchmarkBadgerAppend(b *testing.B) {
	for _, c := range []struct {
		batch int
		sync  bool
	}{{1, false}, {64, false}, {1024, false}, {MaxBatch, false}, {1, true}} {
		batch := c.batch
		b.Run(fmt.Sprintf("batch=%d/sync=%t", batch, c.sync), func(b *testing.B) {
			s, err := OpenBadger(b.TempDir(), BadgerOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			author := newAuthor(b, 1).id
			var head feed.Head
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				es := unsignedRun(author, head, batch)
				head = es[len(es)-1].Next()
				b.StartTimer()
				if err := s.Append(es); err != nil {
					b.Fatal(err)
				}
				if c.sync {
					if err := s.Sync(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
