package swarm

import (
	"slices"
	"testing"
	"time"

	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/store"
)

// TestRunFitsTheStore: the longest run Serve reads in one call, maxRunBytes
// of the smallest chunks, is one the Badger store reads in one call.
func TestRunFitsTheStore(t *testing.T) {
	if n := maxRunBytes / object.MinChunkSize; n > store.MaxPutChunks {
		t.Errorf("a run is up to %d chunks; the store reads at most %d at once", n, store.MaxPutChunks)
	}
}

// pickFixture is a fetcher of n chunks and two live peers holding all of
// them, as the fetch loop would have it.
func pickFixture(n uint64) (*fetcher, *fpeer, *fpeer) {
	f := &fetcher{
		cfg: FetchConfig{}.fill(), n: n, missing: n,
		done: make([]bool, n), avail: make([]int, n), asked: make([]int, n),
	}
	newPeer := func() *fpeer {
		p := &fpeer{have: make([]bool, n), inflight: map[uint64]time.Time{}, timedOut: map[uint64]bool{}}
		for c := range n {
			p.have[c] = true
		}
		return p
	}
	a, b := newPeer(), newPeer()
	f.peers = []*fpeer{a, b}
	for c := range n {
		f.avail[c] = 2
	}
	return f, a, b
}

// TestPickTimedOut: a chunk that timed out at a peer is asked of that
// peer again only after every chunk that did not; one that timed out at
// every holder is still asked (it used to be excluded for good, and with
// more such chunks than the end game covers the fetch stalled).
func TestPickTimedOut(t *testing.T) {
	f, a, b := pickFixture(16)
	for c := range uint64(10) {
		a.timedOut[c], b.timedOut[c] = true, true
	}
	if got, want := f.pick(a, 8), []uint64{10, 11, 12, 13, 14, 15, 0, 1}; !slices.Equal(got, want) {
		t.Errorf("pick = %v, want the fresh chunks first, then the timed-out ones: %v", got, want)
	}
	for c := uint64(10); c < 16; c++ {
		f.done[c] = true
		f.missing--
	}
	if got, want := f.pick(b, 8), []uint64{0, 1, 2, 3, 4, 5, 6, 7}; !slices.Equal(got, want) {
		t.Errorf("pick with only chunks that timed out at both peers = %v, want %v", got, want)
	}
}

// TestPickRarestFirst: among chunks no one is asked for, the one fewest
// live peers hold comes first, then the lowest index; asked and stored
// chunks are skipped.
func TestPickRarestFirst(t *testing.T) {
	f, a, _ := pickFixture(8)
	f.avail[5], f.avail[6] = 1, 1
	f.asked[5] = 1
	f.done[0] = true
	if got, want := f.pick(a, 4), []uint64{6, 1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("pick = %v, want %v", got, want)
	}
}
