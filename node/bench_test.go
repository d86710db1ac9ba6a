package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/ipfs/go-cid"
)

// BenchmarkGetObject measures one node fetching a 64 MiB object from one
// linked seeder over loopback QUIC into its Badger store (no output
// file); both nodes run in this process. cxbench swarm measures the same
// between daemon processes.
func BenchmarkGetObject(b *testing.B) {
	const size = 64 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seeder := startNode(b, ctx)
	data := make([]byte, size)
	rand.Read(data)
	put, err := seeder.PutObject(ctx, bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	id, err := cid.Decode(put.CID)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		n, stop := startNodeIn(b, ctx, b.TempDir())
		if err := n.Connect(ctx, addrOf(b, seeder)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := n.GetObject(ctx, id, "", nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		stop()
		b.StartTimer()
	}
}
