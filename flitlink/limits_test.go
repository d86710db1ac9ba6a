package flitlink

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestDiscardLimit: a peer may go on sending on a circuit this side
// closed (it may not have seen the CLOSE) at a window a second, with a
// burst of discardWindows windows; one that keeps sending past that kills
// the link with ErrProtocol.
func TestDiscardLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause time.Duration // between 1 KiB messages
		dies  bool
	}{
		{"within the rate", 250 * time.Millisecond, false}, // 4 KiB/s, the window a second
		{"flood", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx := testCtx(t)
				cfg := Config{Window: 4 << 10}
				a, b := newPair(t, cfg, cfg, nil)
				ca, cb := openPair(t, a, b, "s", Data)
				cb.Close()
				synctest.Wait()
				// 128 KiB: twice the burst.
				for i := 0; i < 128; i++ {
					if err := ca.Send(ctx, make([]byte, 1<<10)); err != nil {
						if !tc.dies {
							t.Fatalf("Send %d: %v", i, err)
						}
						break
					}
					time.Sleep(tc.pause)
				}
				synctest.Wait()
				if err := b.Err(); tc.dies != errors.Is(err, ErrProtocol) {
					t.Fatalf("the closed side's link: %v (want a violation: %v)", err, tc.dies)
				}
			})
		})
	}
}
