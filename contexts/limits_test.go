package contexts

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
)

// dropRecorder records the peers a Manager drops.
type dropRecorder struct {
	mu      sync.Mutex
	dropped []feed.ID
	reasons []error
}

func (d *dropRecorder) drop(p feed.ID, reason error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dropped = append(d.dropped, p)
	d.reasons = append(d.reasons, reason)
}

func (d *dropRecorder) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dropped)
}

// guardedValidator returns the validator of room as Join registers it,
// of a Manager under l whose drops d records.
func guardedValidator(t *testing.T, l Limits, d *dropRecorder, room feed.ID) pubsub.ValidatorEx {
	m := newManager(Config{Node: &memNode{feeds: map[feed.ID][]*feed.Entry{}}, Limits: l, Drop: d.drop})
	t.Cleanup(func() { m.cancel(); m.wg.Wait() })
	return m.guarded(m.validator(room))
}

func gossipOf(e *feed.Entry) *pubsub.Message {
	return &pubsub.Message{Message: &pb.Message{Data: encodeEntry(e)}}
}

var testPolicy = limit.Policy{Strikes: 3, Forgive: 10 * time.Second, Cooldown: time.Minute}

// TestGossipBadSignaturesDrop: a peer relaying badly signed messages is
// dropped after its strikes, once.
func TestGossipBadSignaturesDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, author, relay := testKey(t, 1).Public(), testKey(t, 2), testKey(t, 3).Public()
		var d dropRecorder
		v := guardedValidator(t, Limits{Policy: testPolicy}, &d, room)
		forged := *ctxEntry(t, author, feed.Head{}, room, "hi")
		forged.Sig[0] ^= 1
		from := peer.ID(relay.PeerIDBytes())
		for i := range testPolicy.Strikes + 1 {
			if got := v(t.Context(), from, gossipOf(&forged)); got != pubsub.ValidationReject {
				t.Fatalf("message %d: %v, want reject", i, got)
			}
			if want := max(0, i+1-testPolicy.Strikes); d.count() != want {
				t.Fatalf("after %d bad messages: %d drops, want %d", i+1, d.count(), want)
			}
		}
		if d.dropped[0] != relay || !errors.Is(d.reasons[0], ErrAbuse) {
			t.Fatalf("dropped %v (%v), want %v for ErrAbuse", d.dropped[0], d.reasons[0], relay)
		}
		t.Logf("dropped: %v", d.reasons[0])
	})
}

// TestGossipRate: a peer over its rate has its excess ignored unchecked,
// each a strike; one within it is never struck.
func TestGossipRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		room, author := testKey(t, 1).Public(), testKey(t, 2)
		es := chainOf(t, author, room, 200)
		var d dropRecorder
		v := guardedValidator(t, Limits{GossipPerSec: 10, Policy: testPolicy}, &d, room)

		// Honest: 10 a second for 20 s, the last 100 in a burst.
		honest := peer.ID(testKey(t, 3).Public().PeerIDBytes())
		for i, e := range es {
			if got := v(t.Context(), honest, gossipOf(e)); got != pubsub.ValidationAccept {
				t.Fatalf("honest message %d: %v", i, got)
			}
			if i < 100 {
				time.Sleep(100 * time.Millisecond)
			}
		}
		// A flood: the burst passes, the excess is ignored and struck.
		flood := peer.ID(testKey(t, 4).Public().PeerIDBytes())
		ignored := 0
		for _, e := range es {
			if v(t.Context(), flood, gossipOf(e)) == pubsub.ValidationIgnore {
				ignored++
			}
		}
		if ignored != 100 {
			t.Errorf("%d of 200 messages at once ignored, want 100 (over a burst of 100)", ignored)
		}
		// Each strike past the policy's drops it again (the node refuses
		// it once and logs that once).
		if d.count() != 100/(testPolicy.Strikes+1) {
			t.Errorf("dropped %d times, want %d", d.count(), 100/(testPolicy.Strikes+1))
		}
		for _, p := range d.dropped {
			if p != testKey(t, 4).Public() {
				t.Fatalf("dropped %v, want the flooder alone", p)
			}
		}
	})
}
