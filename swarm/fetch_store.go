package swarm

import (
	"fmt"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/object"
)

// This file is how Fetch keeps what it verified: chunks and the hashes that
// proved them go to the sink in batches, written off the loop.

// data takes a run of chunks p's reader verified: fresh ones join the
// batch with the hashes that proved them, unrequested or duplicate ones
// are counted and dropped.
func (f *fetcher) data(p *fpeer, v *verified) {
	// The hashes join the batch first: a batch writes its hashes before
	// its chunks, so no chunk is stored without its uncles.
	for _, h := range v.proved {
		if !f.putBins[h.Bin] {
			f.pendingHash[h.Bin] = h.Hash
			f.putBins[h.Bin] = true
		}
	}
	kept := false
	for k, chunk := range v.chunks {
		kept = f.chunk(p, v.first+uint64(k), chunk) || kept
	}
	if v.buf != nil {
		if kept {
			f.pendingBufs = append(f.pendingBufs, v.buf)
		} else {
			f.bufs.put(v.buf)
		}
	}
	if len(f.pending) >= f.cfg.BatchChunks || f.pendingBytes >= f.cfg.BatchBytes {
		f.flush()
	}
}

// chunk takes one verified chunk c from p into the batch, unless it is
// held already, and reports whether it did.
func (f *fetcher) chunk(p *fpeer, c uint64, data []byte) bool {
	size := int64(len(data))
	st := f.pstats(p)
	st.Bytes += size
	f.cfg.Metrics.chunkIn(len(data), f.done[c])
	at, asked := p.inflight[c]
	if asked {
		delete(p.inflight, c)
		f.asked[c]-- // not back in the pool: it is done now or was before
	}
	if f.done[c] {
		f.stats.DupBytes += size // an end-game duplicate, or already stored
		return false
	}
	// A chunk that comes after its request timed out or was cancelled is
	// verified and still missing: keep it (requests for it elsewhere are
	// withdrawn below).
	p.strikes = 0
	if asked {
		f.adapt(p, time.Since(at))
	}
	if len(f.pending) > 0 && (len(f.pending) >= f.cfg.BatchChunks || f.pendingBytes+len(data) > f.cfg.BatchBytes) {
		f.flush()
	}
	if len(f.pending) == 0 {
		f.pendingSince = time.Now()
	}
	f.pending = append(f.pending, object.Chunk{Index: c, Data: data})
	f.pendingBytes += len(data)
	f.done[c] = true
	f.missing--
	if f.cfg.Window > 0 || f.missing <= uint64(max(f.cfg.EndGame, 0)) {
		f.gen++ // the window moved, or the end game may give idle peers something to ask
	}
	f.stats.Bytes += size
	st.Chunks++
	// End game: withdraw the duplicate requests.
	for _, q := range f.peers {
		if _, ok := q.inflight[c]; ok && !q.dead {
			delete(q.inflight, c)
			f.asked[c]--
			q.out.push(Cancel{Ranges: []Range{{First: c, Last: c}}})
		}
	}
	return true
}

// flush hands the batch to the writer: the hashes go first, so that a
// chunk in dst always has its uncles there.
func (f *fetcher) flush() {
	if len(f.pending) == 0 && len(f.pendingHash) == 0 {
		return
	}
	f.wr.put(batch{chunks: f.pending, hashes: f.pendingHash, bufs: f.pendingBufs})
	f.pending, f.pendingBytes, f.pendingBufs = nil, 0, nil
	f.pendingHash = make(map[object.Bin][]byte)
}

// batch is verified chunks, the new hashes they came with, and the
// received buffers the chunks alias (recycled once they are written).
type batch struct {
	chunks []object.Chunk
	hashes map[object.Bin][]byte
	bufs   []*[]byte
}

// batchWriter writes batches to the sink in order on a goroutine of its
// own, so that the sink's writes overlap the network. One batch waits
// while another is written; put blocks beyond that.
type batchWriter struct {
	dst  ChunkSink
	id   cid.Cid
	bufs bufPool // where written batches' buffers go back
	in   chan batch
	exit chan struct{} // closed when the goroutine has returned
	// failed is closed on the first failure, after err is set; the
	// writer then takes no more batches.
	failed chan struct{}
	err    error
	stored uint64 // chunks written; read after exit
}

func newBatchWriter(dst ChunkSink, id cid.Cid, bufs bufPool) *batchWriter {
	w := &batchWriter{dst: dst, id: id, bufs: bufs, in: make(chan batch, 1), exit: make(chan struct{}), failed: make(chan struct{})}
	go w.run()
	return w
}

func (w *batchWriter) run() {
	defer close(w.exit)
	for b := range w.in {
		if err := w.write(b); err != nil {
			w.err = err
			close(w.failed)
			return
		}
		for _, buf := range b.bufs {
			w.bufs.put(buf)
		}
		w.stored += uint64(len(b.chunks))
	}
}

// put queues a batch. It gives up only once the writer has failed (the
// fetch then ends with that error); otherwise every batch is written, in
// order, so that no chunk reaches the sink without the uncles an earlier
// batch carried.
func (w *batchWriter) put(b batch) {
	select {
	case w.in <- b:
	case <-w.failed:
	}
}

// close waits for the queued batches and returns the first failure.
func (w *batchWriter) close() error {
	close(w.in)
	<-w.exit
	return w.err
}

// write puts one batch's hashes, object.MaxHashBatch at a time, then its chunks.
func (w *batchWriter) write(b batch) error {
	put := make(map[object.Bin][]byte, min(len(b.hashes), object.MaxHashBatch))
	for bin, h := range b.hashes {
		put[bin] = h
		if len(put) == object.MaxHashBatch {
			if err := w.dst.PutHashes(w.id, put); err != nil {
				return fmt.Errorf("swarm: fetch: store hashes: %w", err)
			}
			clear(put)
		}
	}
	if len(put) > 0 {
		if err := w.dst.PutHashes(w.id, put); err != nil {
			return fmt.Errorf("swarm: fetch: store hashes: %w", err)
		}
	}
	if len(b.chunks) == 0 {
		return nil
	}
	if err := w.dst.PutChunks(w.id, b.chunks); err != nil {
		return fmt.Errorf("swarm: fetch: store chunks %d to %d (%d of them): %w",
			b.chunks[0].Index, b.chunks[len(b.chunks)-1].Index, len(b.chunks), err)
	}
	return nil
}
