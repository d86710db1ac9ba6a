package live

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/contextd/contextd/feed"
)

func testKey(t testing.TB, seed byte) feed.PrivateKey {
	t.Helper()
	k, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// held returns the munros s holds, checking each verifies.
func held(t *testing.T, s *Stream) []Munro {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Munro
	for _, h := range s.held {
		if err := h.Verify(s.ID(), s.k); err != nil {
			t.Errorf("munro %d: %v", h.Index, err)
		}
		out = append(out, h.Munro)
	}
	return out
}

func indices(ms []Munro) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Index)
	}
	return out
}

func chunkLens(m Munro) []int {
	var out []int
	for _, c := range m.Chunks {
		out = append(out, len(c))
	}
	return out
}

// TestPublisherCutsAndFlushes: full chunks are cut at MaxChunkSize, a
// full munro is signed at once, a partial one FlushDelay after its first
// byte, completed with empty chunks; Close signs END after the last munro.
func TestPublisherCutsAndFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := testKey(t, 1)
		s := NewStream(StreamConfig{ID: key.Public(), Origin: true})
		p := NewPublisher(key, s)
		if err := p.Write(make([]byte, 40<<10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(FlushDelay - time.Millisecond)
		synctest.Wait()
		if n := len(held(t, s)); n != 0 {
			t.Fatalf("%d munros before the flush", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := held(t, s)
		if len(got) != 1 || !slices.Equal(chunkLens(got[0]), []int{16 << 10, 16 << 10, 8 << 10, 0}) {
			t.Fatalf("after the flush: %d munros", len(got))
		}
		if got[0].Published != time.Now().UnixMicro() {
			t.Errorf("published %d, now %d", got[0].Published, time.Now().UnixMicro())
		}

		// A full munro goes at once; the bytes after it wait for their flush.
		if err := p.Write(make([]byte, 64<<10+3)); err != nil {
			t.Fatal(err)
		}
		if got = held(t, s); len(got) != 2 || !slices.Equal(chunkLens(got[1]), []int{16 << 10, 16 << 10, 16 << 10, 16 << 10}) {
			t.Fatalf("after a full munro: %d munros", len(got))
		}
		time.Sleep(FlushDelay)
		synctest.Wait()
		if got = held(t, s); len(got) != 3 || !slices.Equal(chunkLens(got[2]), []int{3, 0, 0, 0}) || got[2].Index != 2 {
			t.Fatalf("after the second flush: %d munros", len(got))
		}

		if err := p.Write([]byte("tail")); err != nil {
			t.Fatal(err)
		}
		p.Close()
		if got = held(t, s); len(got) != 4 || !bytes.Equal(got[3].Chunks[0], []byte("tail")) {
			t.Fatalf("Close did not flush: %d munros", len(got))
		}
		if !s.Ended() || s.end.Munros != 4 || s.end.Verify(key.Public()) != nil {
			t.Fatalf("END %+v", s.end)
		}
		if err := p.Write([]byte("x")); err == nil {
			t.Error("Write after Close succeeded")
		}
		time.Sleep(time.Second) // no timer left to fire
		synctest.Wait()
		if n := len(held(t, s)); n != 4 {
			t.Errorf("%d munros after Close", n)
		}
	})
}

// munros returns n signed munros of stream key, k=2, each of one chunk of
// size bytes.
func munros(t *testing.T, key feed.PrivateKey, first, n uint64, size int) []Munro {
	t.Helper()
	var out []Munro
	for i := first; i < first+n; i++ {
		m := Munro{Index: i, Published: int64(i), Chunks: [][]byte{bytes.Repeat([]byte{byte(i)}, size), nil, nil, nil}}
		if err := m.Sign(key, 2); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// TestStreamWindow: the window keeps at most its bytes and age, always
// the newest munro; a reader behind it jumps to the oldest held; one at
// the live edge starts at the newest.
func TestStreamWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		key := testKey(t, 2)
		s := NewStream(StreamConfig{ID: key.Public(), Origin: true, WindowBytes: 10 << 10, WindowAge: time.Minute})
		for _, m := range munros(t, key, 0, 8, 4<<10) {
			if !s.Add(m) {
				t.Fatalf("munro %d refused", m.Index)
			}
		}
		if got := held(t, s); len(got) != 2 || got[0].Index != 6 {
			t.Fatalf("window of 10 KiB holds %d munros (%v), want 6 and 7", len(got), indices(got))
		}
		if s.Add(munros(t, key, 3, 1, 1)[0]) {
			t.Error("an older munro entered the window")
		}
		ctx, cancel := context.WithCancel(t.Context())
		var idx []uint64
		for c := range s.Chunks(ctx, 4) { // munro 1 is gone: start at munro 6
			idx = append(idx, c.Index)
			if len(idx) == 2 {
				break
			}
		}
		if idx[0] != 24 || idx[1] != 28 {
			t.Errorf("reader from chunk 4 got chunks %v, want [24 28]", idx)
		}
		for c := range s.Chunks(ctx, LiveEdge) {
			if c.Index != 28 {
				t.Errorf("live edge reader starts at chunk %d, want 28", c.Index)
			}
			break
		}

		// Age: munros older than the window's age leave it as new ones come.
		time.Sleep(2 * time.Minute)
		s.Add(munros(t, key, 8, 1, 1)[0])
		if got := held(t, s); len(got) != 1 || got[0].Index != 8 {
			t.Errorf("after the window's age: %d munros", len(got))
		}

		// A reader waiting at the edge gets what comes next, then END.
		done := make(chan []Chunk)
		go func() {
			var got []Chunk
			for c := range s.Chunks(ctx, 9<<2) {
				got = append(got, c)
			}
			done <- got
		}()
		synctest.Wait()
		s.Add(munros(t, key, 9, 1, 5)[0])
		s.Finish(End{Munros: 10})
		got := <-done
		if len(got) != 2 || got[0].Index != 36 || len(got[0].Data) != 5 || !got[1].End || got[1].Index != 40 {
			t.Errorf("waiting reader got %+v", got)
		}
		cancel()
	})
}
