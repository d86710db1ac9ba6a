package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// runCtx measures context delivery between daemon processes and, in the
// same run, bare go-libp2p-pubsub between as many processes on the same
// graph.
func runCtx(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("ctx", flag.ContinueOnError)
	var c ctxConfig
	fs.IntVar(&c.members, "members", 10, "member processes")
	fs.Float64Var(&c.rate, "rate", 50, "messages per second, over all members")
	fs.IntVar(&c.msgs, "msgs", 1000, "messages, published round-robin by the members")
	fs.Float64Var(&c.degree, "degree", 3, "mean links per member (a random spanning tree plus random links)")
	fs.IntVar(&c.size, "size", 200, "app body bytes per message")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the graph")
	fs.DurationVar(&c.drain, "drain", 15*time.Second, "how long to wait for missing deliveries after the last publish")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "pause before the warm-up, for gossipsub to set up its streams and meshes (meshes change at heartbeats, 1 s)")
	fs.BoolVar(&c.wide, "wide", false, "create the context wide (gossip on the wide mesh of large audiences), else a room (lean mesh)")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if c.members < 2 || c.msgs < 1 || c.rate <= 0 || c.degree < 1 || c.size < probeSize || c.size > maxProbeSize || fs.NArg() > 0 {
		return "", fmt.Errorf("need --members ≥ 2, --msgs ≥ 1, --rate > 0, --degree ≥ 1, %d ≤ --size ≤ %d and no other arguments", probeSize, maxProbeSize)
	}
	c.edges = randomGraph(c.members, c.degree, rand.New(rand.NewPCG(c.seed, 0x5eed)))
	c.verbose = *verbose

	d, err := ctxDaemons(ctx, c)
	if err != nil {
		return "", err
	}
	b, err := ctxBaseline(ctx, c)
	if err != nil {
		return "", fmt.Errorf("baseline: %w", err)
	}
	return fmt.Sprintf("bench=ctx members=%d msgs=%d rate=%g p50_ms=%.1f p99_ms=%.1f delivered_pct=%.2f dup_per_msg=%.2f ebt_dup_per_msg=%.2f base_p50_ms=%.1f base_p99_ms=%.1f base_delivered_pct=%.2f base_dup_per_msg=%.2f",
		c.members, c.msgs, c.rate, ms(d.quantile(0.5)), ms(d.quantile(0.99)), d.deliveredPct(), d.dupPerMsg(), ratio(d.ebtDups, int64(d.want)),
		ms(b.quantile(0.5)), ms(b.quantile(0.99)), b.deliveredPct(), b.dupPerMsg()), nil
}

// ctxConfig is one ctx run.
type ctxConfig struct {
	members int
	rate    float64
	msgs    int
	degree  float64
	size    int
	seed    uint64
	drain   time.Duration
	settle  time.Duration
	edges   [][2]int // the graph both halves use
	wide    bool     // create the context wide (its gossip on the wide mesh)
	verbose bool
}

// ctxWarmTimeout bounds the warm-up: every member's first message must
// reach every other member within it.
const ctxWarmTimeout = time.Minute

// ctxDaemons runs the contextd half: one daemon per member, linked as
// c.edges; member 0 creates a context, the others join it, and each has a
// subscriber (the SDK's context subscription, over the daemon's
// WebSocket); warmed up with one message per member, then c.msgs messages
// at c.rate, member idx%members publishing message idx.
func ctxDaemons(ctx context.Context, c ctxConfig) (result, error) {
	ps, cleanup, err := newProcs(ctx, "ctx", c.verbose)
	if err != nil {
		return result{}, err
	}
	defer cleanup()
	ds := make([]*daemon.Daemon, c.members)
	cls := make([]*sdk.Client, c.members)
	defer func() {
		for i, d := range ds {
			if cls[i] != nil {
				cls[i].Close()
			}
			if d != nil {
				d.Stop()
			}
		}
	}()
	for i := range ds {
		home := filepath.Join(ps.dir, fmt.Sprintf("m%d", i))
		if _, err := daemon.Init(ctx, ps.bin, home); err != nil {
			return result{}, err
		}
		if ds[i], err = daemon.Start(ctx, ps.bin, home, ps.logw); err != nil {
			return result{}, err
		}
		if cls[i], err = ds[i].Client(ctx); err != nil {
			return result{}, err
		}
	}
	for _, e := range c.edges {
		if err := cls[e[0]].Connect(ctx, ds[e[1]].Addrs[0]); err != nil {
			return result{}, fmt.Errorf("member %d: connect to %d: %w", e[0], e[1], err)
		}
	}
	cx, err := cls[0].CreateContextWith(ctx, api.ContextCreateParams{Name: "cxbench", Wide: c.wide})
	if err != nil {
		return result{}, err
	}
	for i, cl := range cls[1:] {
		if _, err := cl.JoinContext(ctx, cx.ID); err != nil {
			return result{}, fmt.Errorf("member %d: join: %w", i+1, err)
		}
	}

	col := newCollector(c.members, c.msgs, c.members)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for i, cl := range cls {
		sub, err := cl.SubscribeContext(ctx, cx.ID, sdk.ContextOptions{})
		if err != nil {
			return result{}, fmt.Errorf("member %d: subscribe: %w", i, err)
		}
		defer sub.Close()
		wg.Go(func() {
			for {
				m, err := sub.Next(sctx)
				if err != nil {
					return
				}
				if idx, sent, ok := decodeProbe(m.Body); ok {
					col.delivered(idx, i, time.Since(sent))
				}
			}
		})
	}
	fmt.Fprintf(os.Stderr, "ctx: %d daemons in context %s; warming up…\n", c.members, cx.ID.Short())
	publish := func(idx int) error {
		p := idx % c.members
		col.published(idx, p)
		if _, err := cls[p].PublishContext(ctx, cx.ID, encodeProbe(idx, time.Now(), c.size)); err != nil {
			return fmt.Errorf("member %d: publish: %w", p, err)
		}
		return nil
	}
	if err := warmUp(ctx, c, col, publish); err != nil {
		return result{}, err
	}
	before, err := daemonDuplicates(ctx, cls)
	if err != nil {
		return result{}, err
	}
	links := 0
	for _, cl := range cls {
		ps, err := cl.Peers(ctx)
		if err != nil {
			return result{}, err
		}
		links += len(ps)
	}
	fmt.Fprintf(os.Stderr, "ctx: the daemons have %.1f peers each (the graph: %.1f)\n", float64(links)/float64(c.members), 2*float64(len(c.edges))/float64(c.members))
	fmt.Fprintf(os.Stderr, "ctx: publishing %d messages at %g/s…\n", c.msgs, c.rate)
	if err := paced(ctx, c.msgs, c.rate, func(i int) error { return publish(c.members + i) }); err != nil {
		return result{}, err
	}
	col.wait(ctx, c.drain)
	after, err := daemonDuplicates(ctx, cls)
	if err != nil {
		return result{}, err
	}
	r := col.result()
	r.dups = after.gossip + after.ebt - before.gossip - before.ebt
	r.ebtDups = after.ebt - before.ebt
	return r, nil
}

// copies counts payload copies of context messages the daemons received
// beyond the first, by the path that brought them.
type copies struct {
	gossip int64 // gossip duplicates (context.list's stats)
	ebt    int64 // entries EBT sessions brought that the daemon held already (ebt.peers)
}

// daemonDuplicates returns the copies the daemons received so far.
func daemonDuplicates(ctx context.Context, cls []*sdk.Client) (copies, error) {
	var sum copies
	for _, cl := range cls {
		var r api.ContextsResult
		if err := cl.Call(ctx, api.MethodContextList, nil, &r); err != nil {
			return copies{}, fmt.Errorf("context stats: %w", err)
		}
		sum.gossip += r.Stats.Duplicates
		ps, err := cl.EBTPeers(ctx)
		if err != nil {
			return copies{}, fmt.Errorf("ebt peers: %w", err)
		}
		for _, p := range ps {
			sum.ebt += p.Duplicate
		}
	}
	return sum, nil
}

// ctxBaseline runs the baseline half: one bare pubsub peer process per
// member, linked as c.edges, warmed up with one message per member, then
// c.msgs messages at c.rate.
func ctxBaseline(ctx context.Context, c ctxConfig) (result, error) {
	col := newCollector(c.members, c.msgs, c.members)
	peers := make([]*peerProc, c.members)
	defer func() {
		for _, p := range peers {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i := range peers {
		p, err := startPeer(ctx, func(idx int, lat time.Duration) { col.delivered(idx, i, lat) })
		if err != nil {
			return result{}, err
		}
		peers[i] = p
	}
	for _, e := range c.edges {
		if _, err := peers[e[0]].call(ctx, "connect %s", peers[e[1]].addr); err != nil {
			return result{}, err
		}
	}
	deg := degrees(c.members, c.edges)
	if err := waitUntil(ctx, 30*time.Second, func() (bool, error) {
		for i, p := range peers {
			n, err := p.number(ctx, "peers")
			if err != nil || n < int64(deg[i]) {
				return false, err
			}
		}
		return true, nil
	}); err != nil {
		return result{}, fmt.Errorf("waiting for the peers to see each other in the topic: %w", err)
	}
	fmt.Fprintf(os.Stderr, "ctx baseline: %d pubsub peers linked; warming up…\n", c.members)
	publish := func(idx int) error {
		p := idx % c.members
		col.published(idx, p)
		_, err := peers[p].call(ctx, "pub %d %d", idx, c.size)
		return err
	}
	if err := warmUp(ctx, c, col, publish); err != nil {
		return result{}, err
	}
	before, err := sumCopies(ctx, peers)
	if err != nil {
		return result{}, err
	}
	fmt.Fprintf(os.Stderr, "ctx baseline: publishing %d messages at %g/s…\n", c.msgs, c.rate)
	if err := paced(ctx, c.msgs, c.rate, func(i int) error { return publish(c.members + i) }); err != nil {
		return result{}, err
	}
	col.wait(ctx, c.drain)
	after, err := sumCopies(ctx, peers)
	if err != nil {
		return result{}, err
	}
	r := col.result()
	r.dups = after - before - int64(len(r.lats))
	return r, nil
}

// warmUp waits c.settle, publishes one message from each member (indices
// 0 to members-1) and waits until all of them reached everyone. (Gossipsub
// loses what is published in the first moments after its peers appear,
// before it has its streams to them.)
func warmUp(ctx context.Context, c ctxConfig, col *collector, publish func(idx int) error) error {
	select {
	case <-time.After(c.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	for i := range c.members {
		if err := publish(i); err != nil {
			return err
		}
	}
	if !col.wait(ctx, ctxWarmTimeout) {
		return fmt.Errorf("warm-up: %d of %d deliveries after %v", col.count(), c.members*(c.members-1), ctxWarmTimeout)
	}
	return nil
}

// sumCopies returns the payload copies all peers have received.
func sumCopies(ctx context.Context, peers []*peerProc) (int64, error) {
	var sum int64
	for _, p := range peers {
		n, err := p.number(ctx, "copies")
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// waitUntil polls cond every 50 ms until it holds, fails, or limit passed.
func waitUntil(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// A probe is the app body of every measured message: a magic, the
// message's index and its publisher's send time (all processes share one
// clock), padded to the message size.
const (
	probeMagic   = "cxbp"
	probeSize    = len(probeMagic) + 4 + 8
	maxProbeSize = 16000 // below api.MaxMessageBody and the default pubsub message limit
)

// encodeProbe returns message idx's body of size bytes.
func encodeProbe(idx int, sent time.Time, size int) []byte {
	b := make([]byte, size)
	copy(b, probeMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(idx))
	binary.BigEndian.PutUint64(b[8:], uint64(sent.UnixNano()))
	for i := probeSize; i < size; i++ {
		b[i] = 'x'
	}
	return b
}

// decodeProbe returns a probe's index and send time; ok is false for
// anything else.
func decodeProbe(b []byte) (idx int, sent time.Time, ok bool) {
	if len(b) < probeSize || string(b[:4]) != probeMagic {
		return 0, time.Time{}, false
	}
	return int(binary.BigEndian.Uint32(b[4:])), time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))), true
}

// collector records deliveries of messages 0..warm+msgs-1 at members
// 0..n-1; the first warm are the warm-up, left out of the result.
type collector struct {
	warm, n int
	kick    chan struct{} // capacity 1: a delivery arrived

	mu       sync.Mutex // guards the fields below
	pub      []int      // publisher of each message; -1 before it is published
	lat      []time.Duration
	got      []bool // [msg*n+member]
	want     int    // deliveries expected of the published messages
	have     int    // of them, delivered
	repeated int    // deliveries of a message a member already had
}

func newCollector(warm, msgs, n int) *collector {
	c := &collector{warm: warm, n: n, kick: make(chan struct{}, 1),
		pub: make([]int, warm+msgs), lat: make([]time.Duration, (warm+msgs)*n), got: make([]bool, (warm+msgs)*n)}
	for i := range c.pub {
		c.pub[i] = -1
	}
	return c
}

// published notes that member p publishes message idx (before it does).
func (c *collector) published(idx, p int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pub[idx] = p
	c.want += c.n - 1
}

// delivered records message idx arriving at member m after lat.
func (c *collector) delivered(idx, m int, lat time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if idx < 0 || idx >= len(c.pub) || c.pub[idx] < 0 || c.pub[idx] == m {
		return
	}
	k := idx*c.n + m
	if c.got[k] {
		c.repeated++
		return
	}
	c.got[k], c.lat[k] = true, lat
	c.have++
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.have
}

// wait waits until every published message reached every other member
// (true) or limit passed (false).
func (c *collector) wait(ctx context.Context, limit time.Duration) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		c.mu.Lock()
		done := c.have == c.want
		c.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-c.kick:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// result returns the measured messages' deliveries.
func (c *collector) result() result {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r result
	for idx := c.warm; idx < len(c.pub); idx++ {
		if c.pub[idx] < 0 {
			continue
		}
		r.want += c.n - 1
		for m := range c.n {
			if k := idx*c.n + m; c.got[k] {
				r.lats = append(r.lats, c.lat[k])
			}
		}
	}
	slices.Sort(r.lats)
	if c.repeated > 0 {
		fmt.Fprintf(os.Stderr, "warning: %d deliveries repeated a message the subscriber already had\n", c.repeated)
	}
	return r
}

// result is what one half of a run measured.
type result struct {
	lats    []time.Duration // one per delivery, sorted
	want    int             // deliveries expected: messages × (members − 1)
	dups    int64           // payload copies received beyond the first, over all members
	ebtDups int64           // the part of dups that EBT brought (daemons only)
}

func (r result) quantile(q float64) time.Duration { return quantile(r.lats, q) }

func (r result) deliveredPct() float64 { return pct(int64(len(r.lats)), int64(r.want)) }

// dupPerMsg is the payload copies a member received beyond the first, per
// member and message.
func (r result) dupPerMsg() float64 { return ratio(r.dups, int64(r.want)) }

// quantile returns the q-quantile of sorted durations (0 for none).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		d = slices.Sorted(slices.Values(d))
	}
	i := int(q*float64(len(d)) + 0.5)
	return d[min(max(i-1, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// paced calls f(0) … f(count-1), f(i) at i/rate seconds from now, each in
// its own goroutine, and waits for all of them; it returns the first
// error.
func paced(ctx context.Context, count int, rate float64, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for i := range count {
		at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			if err := f(i); err != nil && first.CompareAndSwap(nil, &err) {
				cancel()
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// randomGraph returns the links of a connected random graph on n nodes: a
// random spanning tree (each node in a random order links to one placed
// before it) plus distinct random links until the mean degree reaches
// degree (or the graph is complete).
func randomGraph(n int, degree float64, rng *rand.Rand) [][2]int {
	seen := map[[2]int]bool{}
	var edges [][2]int
	add := func(a, b int) {
		k := [2]int{min(a, b), max(a, b)}
		if a != b && !seen[k] {
			seen[k] = true
			edges = append(edges, k)
		}
	}
	perm := rng.Perm(n)
	for i := 1; i < n; i++ {
		add(perm[i], perm[rng.IntN(i)])
	}
	want := min(int(degree*float64(n)/2+0.5), n*(n-1)/2)
	for len(edges) < want {
		add(rng.IntN(n), rng.IntN(n))
	}
	return edges
}

func degrees(n int, edges [][2]int) []int {
	d := make([]int, n)
	for _, e := range edges {
		d[e[0]]++
		d[e[1]]++
	}
	return d
}

func adjacency(n int, edges [][2]int) [][]int {
	adj := make([][]int, n)
	for _, e := range edges {
		adj[e[0]] = append(adj[e[0]], e[1])
		adj[e[1]] = append(adj[e[1]], e[0])
	}
	return adj
}

// copyCounter is a pubsub RawTracer that counts the message payloads of
// one topic a peer receives, first copies and duplicates alike (also those
// gossipsub drops as already seen, or that arrive while the first copy is
// being validated).
type copyCounter struct {
	topic string
	n     atomic.Int64
}

func newCopyCounter(topic string) *copyCounter { return &copyCounter{topic: topic} }

func (c *copyCounter) load() int64 { return c.n.Load() }

func (c *copyCounter) RecvRPC(rpc *pubsub.RPC) {
	for _, m := range rpc.GetPublish() {
		if m.GetTopic() == c.topic {
			c.n.Add(1)
		}
	}
}

func (*copyCounter) OnNewOutboundStream(peer.ID, protocol.ID) {}
func (*copyCounter) OnClosedOutboundStream(peer.ID)           {}
func (*copyCounter) Join(string)                              {}
func (*copyCounter) Leave(string)                             {}
func (*copyCounter) Graft(peer.ID, string)                    {}
func (*copyCounter) Prune(peer.ID, string)                    {}
func (*copyCounter) ValidateMessage(*pubsub.Message)          {}
func (*copyCounter) DeliverMessage(*pubsub.Message)           {}
func (*copyCounter) RejectMessage(*pubsub.Message, string)    {}
func (*copyCounter) DuplicateMessage(*pubsub.Message)         {}
func (*copyCounter) ThrottlePeer(peer.ID)                     {}
func (*copyCounter) SendRPC(*pubsub.RPC, peer.ID)             {}
func (*copyCounter) DropRPC(*pubsub.RPC, peer.ID)             {}
func (*copyCounter) UndeliverableMessage(*pubsub.Message)     {}

var _ pubsub.RawTracer = (*copyCounter)(nil)

// The ctx workload's baseline peers are this executable started again with
// quicRoleEnv=pubsubRolePeer: a libp2p host over QUIC on 127.0.0.1 running
// go-libp2p-pubsub with default GossipSub options on one topic. It talks
// to its parent in lines:
//
//	parent → peer                 peer → parent
//	connect MULTIADDR             ok | err TEXT
//	peers                         peers N        (topic peers it sees)
//	pub INDEX SIZE                ok | err TEXT  (publishes a probe)
//	copies                        copies N       (payload copies received)
//	                              got INDEX LATENCY_NS   (any time)
//
// Its first line is "addr MULTIADDR". It exits when its stdin ends.
const (
	pubsubRolePeer = "pubsub-peer"
	pubsubTopic    = "/cxbench/1"
	// pubsubPeerLimit bounds a peer's life should its parent never close
	// its stdin.
	pubsubPeerLimit = 30 * time.Minute
)

func init() {
	if os.Getenv(quicRoleEnv) != pubsubRolePeer {
		return
	}
	if err := pubsubPeer(os.Stdin, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "cxbench pubsub peer:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// pubsubPeer is the baseline peer process: it serves the commands read
// from in, writing answers and deliveries to out.
func pubsubPeer(in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), pubsubPeerLimit)
	defer cancel()
	h, err := libp2p.New(
		libp2p.Transport(quic.NewTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return fmt.Errorf("start libp2p: %w", err)
	}
	defer h.Close()
	copies := newCopyCounter(pubsubTopic)
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithRawTracer(copies))
	if err != nil {
		return fmt.Errorf("gossipsub: %w", err)
	}
	topic, err := ps.Join(pubsubTopic)
	if err != nil {
		return fmt.Errorf("join %s: %w", pubsubTopic, err)
	}
	sub, err := topic.Subscribe()
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", pubsubTopic, err)
	}
	var mu sync.Mutex // serializes lines to out
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			now := time.Now()
			if msg.ReceivedFrom == h.ID() {
				continue
			}
			if idx, sent, ok := decodeProbe(msg.Data); ok {
				say("got %d %d", idx, now.Sub(sent).Nanoseconds())
			}
		}
	})
	say("addr %s/p2p/%s", h.Addrs()[0], h.ID())

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "connect":
			if err := connectAddr(ctx, h, arg); err != nil {
				say("err %v", err)
			} else {
				say("ok")
			}
		case "peers":
			say("peers %d", len(topic.ListPeers()))
		case "pub":
			var idx, size int
			if _, err := fmt.Sscan(arg, &idx, &size); err != nil {
				say("err %v", err)
			} else if err := topic.Publish(ctx, encodeProbe(idx, time.Now(), size)); err != nil {
				say("err %v", err)
			} else {
				say("ok")
			}
		case "copies":
			say("copies %d", copies.load())
		default:
			say("err unknown command %q", cmd)
		}
	}
	return sc.Err()
}

// hostConnector is the part of a libp2p host connectAddr needs.
type hostConnector interface {
	Connect(ctx context.Context, pi peer.AddrInfo) error
}

// connectAddr connects h to the peer at addr (ending in /p2p/ID).
func connectAddr(ctx context.Context, h hostConnector, addr string) error {
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return err
	}
	pi, err := peer.AddrInfoFromP2pAddr(a)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return h.Connect(ctx, *pi)
}

// peerProc is the parent's handle on one baseline peer process.
type peerProc struct {
	addr    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan string // answers to commands, in order
	exited  chan struct{}

	mu sync.Mutex // one command at a time
}

// startPeer starts a baseline peer; got is called, from one goroutine, for
// each message it delivers.
func startPeer(ctx context.Context, got func(idx int, lat time.Duration)) (*peerProc, error) {
	cmd, stdin, stdout, err := startRole(pubsubRolePeer)
	if err != nil {
		return nil, err
	}
	p := &peerProc{cmd: cmd, stdin: stdin, replies: make(chan string, 1), exited: make(chan struct{})}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "got "); ok {
				var idx int
				var ns int64
				if _, err := fmt.Sscan(rest, &idx, &ns); err == nil {
					got(idx, time.Duration(ns))
				}
				continue
			}
			p.replies <- line
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	first, err := p.reply(ctx)
	if err != nil {
		p.stop()
		return nil, err
	}
	addr, ok := strings.CutPrefix(first, "addr ")
	if !ok {
		p.stop()
		return nil, fmt.Errorf("pubsub peer said %q, want its address", first)
	}
	p.addr = addr
	return p, nil
}

func (p *peerProc) reply(ctx context.Context) (string, error) {
	select {
	case r := <-p.replies:
		return r, nil
	case <-p.exited:
		return "", errors.New("pubsub peer exited")
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(30 * time.Second):
		return "", errors.New("pubsub peer did not answer within 30s")
	}
}

// call sends one command and returns the answer; an "err" answer is an
// error.
func (p *peerProc) call(ctx context.Context, format string, args ...any) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		return "", fmt.Errorf("pubsub peer: %s: %w", line, err)
	}
	r, err := p.reply(ctx)
	if err != nil {
		return "", fmt.Errorf("pubsub peer: %s: %w", line, err)
	}
	if msg, ok := strings.CutPrefix(r, "err "); ok {
		return "", fmt.Errorf("pubsub peer: %s: %s", line, msg)
	}
	return r, nil
}

// number sends a command whose answer is "WORD N" and returns N.
func (p *peerProc) number(ctx context.Context, cmd string) (int64, error) {
	r, err := p.call(ctx, "%s", cmd)
	if err != nil {
		return 0, err
	}
	word, n, _ := strings.Cut(r, " ")
	if word != cmd {
		return 0, fmt.Errorf("pubsub peer: %s: answer %q", cmd, r)
	}
	return strconv.ParseInt(n, 10, 64)
}

// stop closes the peer's stdin and waits for it to exit (killing it after
// 5 s).
func (p *peerProc) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}
