package node

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/contextd/contextd/feed"
)

// udpRelay forwards UDP datagrams between clients and one server address,
// one upstream socket per client: a path to the server that the test can
// cut (every datagram dropped, both ways, nothing reported to either end,
// as when a route goes down).
type udpRelay struct {
	ln  *net.UDPConn
	to  *net.UDPAddr
	cut atomic.Bool

	mu      sync.Mutex // guards clients
	clients map[string]*net.UDPConn
	wg      sync.WaitGroup
}

// newUDPRelay relays from a new 127.0.0.1 port to the server at to until
// the test ends.
func newUDPRelay(t *testing.T, to *net.UDPAddr) *udpRelay {
	t.Helper()
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{ln: ln, to: to, clients: map[string]*net.UDPConn{}}
	r.wg.Go(r.run)
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.clients {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// run forwards the clients' datagrams upstream.
func (r *udpRelay) run() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if r.cut.Load() {
			continue
		}
		r.mu.Lock()
		up := r.clients[from.String()]
		if up == nil {
			if up, err = net.DialUDP("udp4", nil, r.to); err != nil {
				r.mu.Unlock()
				continue
			}
			r.clients[from.String()] = up
			r.wg.Go(func() { r.back(up, from) })
		}
		r.mu.Unlock()
		up.Write(buf[:n])
	}
}

// back forwards the server's datagrams to one client.
func (r *udpRelay) back(up *net.UDPConn, client *net.UDPAddr) {
	buf := make([]byte, 64<<10)
	for {
		n, err := up.Read(buf)
		if err != nil {
			return
		}
		if !r.cut.Load() {
			r.ln.WriteToUDP(buf[:n], client)
		}
	}
}

// addr is the relay's address as a dialable multiaddr of the server p.
func (r *udpRelay) addr(t *testing.T, p *Node) string {
	t.Helper()
	a, err := manet.FromNetAddr(r.ln.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s/quic-v1/p2p/%s", a, p.host.ID())
}

// udpAddrOf returns n's first listen address as a UDP address.
func udpAddrOf(t *testing.T, n *Node) *net.UDPAddr {
	t.Helper()
	ma, err := multiaddr.NewMultiaddr(addrOf(t, n))
	if err != nil {
		t.Fatal(err)
	}
	a, err := manet.ToNetAddr(ma.Decapsulate(multiaddr.StringCast("/quic-v1")))
	if err != nil {
		t.Fatal(err)
	}
	return a.(*net.UDPAddr)
}

// waitRelinks waits until the nodes count at least want relinks in all
// (either end may redial first; the other then takes its link).
func waitRelinks(t *testing.T, ctx context.Context, want float64, ns ...*Node) {
	t.Helper()
	for {
		var got float64
		for _, n := range ns {
			got += value(gather(t, n.Metrics()), "contextd_node_relinks_total")
		}
		if got >= want {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("relinked %v times, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sameFeed checks that a holds p's feed exactly as p does, up to seq.
func sameFeed(t *testing.T, a, p *Node, seq uint64) {
	t.Helper()
	got, err := a.Entries(p.ID(), 1, int(seq))
	if err != nil {
		t.Fatal(err)
	}
	want, err := p.Entries(p.ID(), 1, int(seq))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %d entries of %s, want %d", a.id.Short(), len(got), p.id.Short(), len(want))
	}
	for i := range got {
		if got[i].Seq != uint64(i+1) || got[i].ID() != want[i].ID() {
			t.Fatalf("entry %d of %s on %s: seq %d, differs from the author's", i+1, p.id.Short(), a.id.Short(), got[i].Seq)
		}
	}
}

// TestFailover: A reaches B over a relayed path; the path is cut, silently,
// while B publishes a steady stream and while A fetches an object from B.
// A finds the link dead, redials B's other addresses, and replication and
// the fetch carry on over the new link: A ends with B's feed and the
// object exactly, each entry once.
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a, b := startLogged(t, ctx, "A"), startLogged(t, ctx, "B")
	path := newUDPRelay(t, udpAddrOf(t, b))
	if _, err := a.Contact(ctx, b.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, path.addr(t, b)); err != nil {
		t.Fatal(err)
	}

	// B publishes steadily until the end; A subscribes.
	pubCtx, stopPub := context.WithCancel(ctx)
	var published atomic.Uint64
	var pubWG sync.WaitGroup
	pubWG.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tick.C:
			case <-pubCtx.Done():
				return
			}
			e, err := b.Publish(ctx, "post", fmt.Appendf(nil, "entry %d", i))
			if err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			published.Store(e.Seq)
		}
	})
	waitHead(t, ctx, a, b.ID(), 20)

	// Mid-sync and mid-fetch: cut the path once a quarter of the object
	// is in; the stream and the fetch go on over the new link (B's
	// direct address, which A learnt when it linked).
	id := putFile(t, ctx, b, 2<<20)
	data := readObject(t, ctx, b, id, nil)
	var atCut atomic.Uint64
	got := readObject(t, ctx, a, id, func(done, total int64) {
		if done >= total/4 && !path.cut.Swap(true) {
			atCut.Store(published.Load())
		}
	})
	if !bytes.Equal(got, data) {
		t.Fatalf("fetched object differs from the seeder's (%d and %d bytes)", len(got), len(data))
	}
	if atCut.Load() == 0 {
		t.Fatal("the path was never cut")
	}
	waitRelinks(t, ctx, 1, a, b)
	waitHead(t, ctx, a, b.ID(), atCut.Load()+20)

	stopPub()
	pubWG.Wait()
	last := published.Load()
	waitHead(t, ctx, a, b.ID(), last)
	sameFeed(t, a, b, last)
}

// TestRelinkAfterRestart: B stops and starts again on the same address;
// A, which dialed it, links again by itself, and replication resumes.
func TestRelinkAfterRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	a := startNode(t, ctx)
	home := t.TempDir()
	b, stopB := startNodeIn(t, ctx, home)
	listen := []string{b.host.Addrs()[0].String()}
	if _, err := b.Contact(ctx, a.ID(), feed.RelFollow); err != nil {
		t.Fatal(err)
	}
	if err := a.Connect(ctx, addrOf(t, b)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, "post", []byte("before")); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, a.ID(), 1)
	stopB()

	b, _ = startNodeWith(t, ctx, Config{Home: home, Listen: listen})
	waitRelinks(t, ctx, 1, a)
	waitLinked(t, ctx, a, b, true)
	if _, err := a.Publish(ctx, "post", []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitHead(t, ctx, b, a.ID(), 2)
	sameFeed(t, b, a, 2)
}
