package flitlink_test

import (
	"bytes"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
)

// sample returns the series of metric name for class c on reg: a
// counter's value, or a histogram's count and sum.
func sample(t *testing.T, reg *prometheus.Registry, name string, c flitlink.Class) (value float64, count uint64, sum float64) {
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

// TestMetrics: bytes are counted per class on both ends, length prefix
// included, and a message's queueing delay is the time from its Send until
// its first byte is written (here: while an earlier Send on the same
// circuit is blocked by the stream's flow control).
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
		ma, mb := flitlink.NewMetrics(regA), flitlink.NewMetrics(regB)
		a, b := newPair(t, memlink.Config{Latency: time.Millisecond, Buffer: 1000}, flitlink.Config{Metrics: ma}, flitlink.Config{Metrics: mb})
		bulkA, bulkB := openPair(t, a, b, "bulk", flitlink.Data)
		chatA, chatB := openPair(t, a, b, "chat", flitlink.Voice)
		ctx := testCtx(t)

		sent := make(chan error, 2)
		go func() { sent <- bulkA.Send(ctx, pattern(1, 3000)) }() // over the buffer: blocks until B reads
		synctest.Wait()
		go func() { sent <- bulkA.Send(ctx, pattern(2, 100)) }() // waits for the first
		if err := chatA.Send(ctx, pattern(3, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		for _, c := range []struct {
			circ *flitlink.Circuit
			want []byte
		}{{bulkB, pattern(1, 3000)}, {chatB, pattern(3, 100)}, {bulkB, pattern(2, 100)}} {
			if got, err := c.circ.Recv(ctx); err != nil || !bytes.Equal(got, c.want) {
				t.Fatalf("%s received %d bytes, %v", c.circ.Service(), len(got), err)
			}
		}
		for range 2 {
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
		}

		for _, c := range []struct {
			class flitlink.Class
			bytes float64
		}{{flitlink.Control, 0}, {flitlink.Voice, flitlink.LengthSize + 100}, {flitlink.Video, 0}, {flitlink.Data, 2*flitlink.LengthSize + 3100}} {
			if got, _, _ := sample(t, regA, "contextd_flitlink_bytes_sent_total", c.class); got != c.bytes {
				t.Errorf("A sent %v bytes of class %v, want %v", got, c.class, c.bytes)
			}
			if got, _, _ := sample(t, regB, "contextd_flitlink_bytes_received_total", c.class); got != c.bytes {
				t.Errorf("B received %v bytes of class %v, want %v", got, c.class, c.bytes)
			}
		}
		const delay = "contextd_flitlink_queue_delay_seconds"
		if _, n, sum := sample(t, regA, delay, flitlink.Voice); n != 1 || sum != 0 {
			t.Errorf("voice: %d delays summing to %vs, want one of 0s", n, sum)
		}
		// The second bulk message waited for the first to be written
		// (whole only once B read it, 50 ms on).
		if _, n, sum := sample(t, regA, delay, flitlink.Data); n != 2 || sum < 0.05 {
			t.Errorf("data: %d delays summing to %vs, want two, one of at least 0.05s", n, sum)
		}
	})
}
