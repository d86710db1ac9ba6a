package node

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
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
	in := filepath.Join(b.TempDir(), "in")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		b.Fatal(err)
	}
	put, err := seeder.PutObject(ctx, in)
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
