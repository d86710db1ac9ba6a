package flitlink

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestDeadlinerLateTrip: a context that ends just as its call ends does
// not interrupt the next call, even when its AfterFunc runs only after the
// next call began.
func TestDeadlinerLateTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var set []time.Time
		d := deadliner{set: func(dl time.Time) error { set = append(set, dl); return nil }}
		first, cancel := context.WithCancel(t.Context())
		if !d.begin(first) {
			t.Fatal("begin refused")
		}
		cancel() // its AfterFunc starts, but has not run yet, when the call ends
		d.end()
		if !d.begin(t.Context()) {
			t.Fatal("begin refused")
		}
		synctest.Wait() // the first call's AfterFunc has run
		if d.end() {
			t.Errorf("the second call was interrupted by the first call's context (deadlines set: %v)", set)
		}
		d.close()
		if d.begin(t.Context()) {
			t.Error("begin after close accepted")
		}
	})
}
