package p2plink

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/contextd/contextd/flitlink"
)

// BenchmarkQUICLink measures messages of a swarm DATA's size (a 16 KiB
// chunk and a 16-byte header) and of 1 MiB on one Data circuit of a flit
// link over loopback QUIC, with the bulk controller and without; compare
// with BenchmarkQUICRawStream.
func BenchmarkQUICLink(b *testing.B) {
	for _, unmanaged := range []bool{false, true} {
		for _, size := range []int{16<<10 + 16, 1 << 20} {
			b.Run(fmt.Sprintf("unmanaged=%v/%d", unmanaged, size), func(b *testing.B) {
				benchLink(b, flitlink.Config{Unmanaged: unmanaged}, size)
			})
		}
	}
}

func benchLink(b *testing.B, cfg flitlink.Config, size int) {
	ctx := context.Background()
	ha, _ := newNode(b)
	hb, idb := newNode(b)
	ta, tb := New(ha, cfg), New(hb, cfg)
	defer ta.Close()
	defer tb.Close()
	connect(b, ctx, ha, hb)
	la, err := ta.Dial(ctx, idb)
	if err != nil {
		b.Fatal(err)
	}
	defer la.Close()
	lb, err := tb.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer lb.Close()
	ca, err := la.Open(ctx, "bench", flitlink.Data)
	if err != nil {
		b.Fatal(err)
	}
	cb, err := lb.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, size)
	b.SetBytes(int64(len(msg)))
	done := make(chan error, 1)
	go func() {
		for range b.N {
			if _, err := cb.Recv(ctx); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.ResetTimer()
	for range b.N {
		if err := ca.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkQUICRawStream is the baseline: the same bytes on a bare stream.
func BenchmarkQUICRawStream(b *testing.B) {
	ctx := context.Background()
	ha, _ := newNode(b)
	hb, _ := newNode(b)
	connect(b, ctx, ha, hb)
	const size = 1 << 20
	done := make(chan error, 1)
	hb.SetStreamHandler(protocol.ID("/raw"), func(s network.Stream) {
		_, err := io.CopyN(io.Discard, s, int64(b.N)*size)
		done <- err
		s.Close()
	})
	s, err := ha.NewStream(ctx, hb.ID(), "/raw")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, size)
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		if _, err := s.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
