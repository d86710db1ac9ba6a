package flitlink

import (
	"bytes"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sample returns the series of metric name for class c on reg: a
// counter's value, or a histogram's count and sum.
func sample(t *testing.T, reg *prometheus.Registry, name string, c Class) (value float64, count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if l := m.GetLabel(); len(l) == 1 && l[0].GetValue() == c.String() {
				return m.GetCounter().GetValue(), m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	t.Fatalf("no series %s{class=%q}", name, c)
	return 0, 0, 0
}

// TestMetrics: bytes are counted per class on both ends, a frame's header
// included, and a message's queueing delay is the time from its Send until
// the writer takes its first frame (here: while the connection is held by
// an earlier write).
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
		ma, mb := NewMetrics(regA), NewMetrics(regB)
		tap := &tapConn{}
		a, b := newPair(t, Config{Metrics: ma}, Config{Metrics: mb}, tap)
		bulkA, bulkB := openPair(t, a, b, "bulk", Data)
		chatA, chatB := openPair(t, a, b, "chat", Voice)
		ctx := testCtx(t)

		tap.hold()
		if err := bulkA.Send(ctx, pattern(1, 3000)); err != nil { // framed at once, written when released
			t.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() { sent <- chatA.Send(ctx, pattern(2, 100)) }()
		synctest.Wait()
		time.Sleep(50 * time.Millisecond)
		tap.release()
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			circ *Circuit
			want []byte
		}{{bulkB, pattern(1, 3000)}, {chatB, pattern(2, 100)}} {
			if got, err := c.circ.Recv(ctx); err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("%s received %d bytes, %v", c.circ.Service(), len(got), err)
			}
		}

		for _, c := range []struct {
			class Class
			bytes float64
		}{{Control, 0}, {Voice, HeaderSize + 100}, {Video, 0}, {Data, HeaderSize + 3000}} {
			if got, _, _ := sample(t, regA, "contextd_flitlink_bytes_sent_total", c.class); got != c.bytes {
				t.Errorf("A sent %v bytes of class %v, want %v", got, c.class, c.bytes)
			}
			if got, _, _ := sample(t, regB, "contextd_flitlink_bytes_received_total", c.class); got != c.bytes {
				t.Errorf("B received %v bytes of class %v, want %v", got, c.class, c.bytes)
			}
		}
		const delay = "contextd_flitlink_queue_delay_seconds"
		if _, n, sum := sample(t, regA, delay, Data); n != 1 || sum != 0 {
			t.Errorf("data: %d delays summing to %vs, want one of 0s", n, sum)
		}
		if _, n, sum := sample(t, regA, delay, Voice); n != 1 || sum != 0.05 {
			t.Errorf("voice: %d delays summing to %vs, want one of 0.05s", n, sum)
		}
	})
}
