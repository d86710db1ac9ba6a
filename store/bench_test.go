package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/object"
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

// BenchmarkBadgerChunks measures putting an object's 16 KiB chunks in
// batches of MaxPutChunks, as a fetch stores them, putting its tree hashes
// (all of them, object.MaxHashBatch at a time), and reading the chunks
// back one at a time, as a seeder serves them.
func BenchmarkBadgerChunks(b *testing.B) {
	const chunk = object.DefaultChunkSize
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	tree, err := object.Build(bytes.NewReader(data), object.Config{ChunkSize: chunk})
	if err != nil {
		b.Fatal(err)
	}
	id, info := tree.ID(), tree.Info()
	var batches [][]object.Chunk
	for i := uint64(0); i < tree.Chunks(); i += MaxPutChunks {
		var batch []object.Chunk
		for j := i; j < min(i+MaxPutChunks, tree.Chunks()); j++ {
			batch = append(batch, object.Chunk{Index: j, Data: data[j*chunk : (j+1)*chunk]})
		}
		batches = append(batches, batch)
	}
	s, err := OpenBadger(b.TempDir(), BadgerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.Run("put", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := s.PutObject(id, info); err != nil {
				b.Fatal(err)
			}
			for _, batch := range batches {
				if err := s.PutChunks(id, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if err := s.Delete(id); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("hashes", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := s.PutObject(id, info); err != nil {
				b.Fatal(err)
			}
			if err := object.PutTreeHashes(s, id, tree); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := s.Delete(id); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	if err := s.PutObject(id, info); err != nil {
		b.Fatal(err)
	}
	for _, batch := range batches {
		if err := s.PutChunks(id, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("get", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var buf []byte
		for b.Loop() {
			for i := range tree.Chunks() {
				if buf, err = s.AppendChunks(buf[:0], id, i, 1); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
