package flitlink

import (
	"context"
	"net"
	"testing"
)

func benchPair(b *testing.B, cfg Config) (*Circuit, *Circuit) {
	ca, cb := net.Pipe()
	la := NewLink(ca, idB, true, cfg)
	lb := NewLink(cb, idA, false, cfg)
	b.Cleanup(func() {
		la.Close()
		lb.Close()
	})
	ctx := context.Background()
	x, err := la.Open(ctx, "bench", Data)
	if err != nil {
		b.Fatal(err)
	}
	y, err := lb.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return x, y
}

// drain reads n messages in the background.
func drain(b *testing.B, c *Circuit, n int) chan error {
	done := make(chan error, 1)
	go func() {
		for range n {
			if _, err := c.Recv(context.Background()); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

func benchmarkMessages(b *testing.B, size int, cfg Config) {
	x, y := benchPair(b, cfg)
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	done := drain(b, y, b.N)
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

func BenchmarkPipe200B(b *testing.B) { benchmarkMessages(b, 200, Config{}) }
func BenchmarkPipe1MiB(b *testing.B) { benchmarkMessages(b, 1<<20, Config{}) }
func BenchmarkPipe1MiBFlit64K(b *testing.B) {
	benchmarkMessages(b, 1<<20, Config{FlitSize: 64 << 10, Window: 4 << 20})
}
