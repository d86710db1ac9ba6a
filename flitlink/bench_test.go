package flitlink_test

import (
	"context"
	"testing"

	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/memlink"
)

// benchPair returns a circuit between two links over memlink (no latency,
// no bandwidth limit).
func benchPair(b *testing.B) (*flitlink.Circuit, *flitlink.Circuit) {
	la, lb := newPair(b, memlink.Config{}, flitlink.Config{}, flitlink.Config{})
	ctx := context.Background()
	x, err := la.Open(ctx, "bench", flitlink.Data)
	if err != nil {
		b.Fatal(err)
	}
	y, err := lb.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return x, y
}

func benchmarkMessages(b *testing.B, size int) {
	x, y := benchPair(b)
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	done := make(chan error, 1)
	go func() {
		for range b.N {
			if _, err := y.Recv(context.Background()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	for range b.N {
		if err := x.Send(context.Background(), msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkMem200B(b *testing.B)  { benchmarkMessages(b, 200) }
func BenchmarkMem16KiB(b *testing.B) { benchmarkMessages(b, 16<<10+16) }
func BenchmarkMem1MiB(b *testing.B)  { benchmarkMessages(b, 1<<20) }
