package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/feed"
)

// simTopic is the topic of the simulated context.
const simTopic = "/contextd/ctx/1/sim"

// gossipTuning is what sim-ctx may change in the gossipsub parameters of
// the contexts variant; zero fields keep the daemon's
// (contexts.GossipParams of the run's fanout).
type gossipTuning struct {
	d, dlo, dhi, dlazy int
	heartbeat          time.Duration
	noFlood            bool
	idontwant          int // IDONTWANT threshold in bytes
}

// params returns base changed by t, with the heartbeat slowed down by
// dilate.
func (t gossipTuning) params(base pubsub.GossipSubParams, dilate float64) pubsub.GossipSubParams {
	p := base
	defer func() {
		p.HeartbeatInterval = time.Duration(float64(p.HeartbeatInterval) * dilate)
		p.HeartbeatInitialDelay = time.Duration(float64(p.HeartbeatInitialDelay) * dilate)
	}()
	for _, f := range []struct{ dst, v *int }{{&p.D, &t.d}, {&p.Dlo, &t.dlo}, {&p.Dhi, &t.dhi}, {&p.Dlazy, &t.dlazy}, {&p.IDontWantMessageThreshold, &t.idontwant}} {
		if *f.v > 0 {
			*f.dst = *f.v
		}
	}
	if t.heartbeat > 0 {
		p.HeartbeatInterval = t.heartbeat
	}
	// Keep the invariants gossipsub checks (Dout < Dlo, Dout < D/2,
	// Dscore ≤ Dhi) for small meshes.
	p.Dout = max(0, min(p.Dout, p.Dlo-1, (p.D-1)/2))
	p.Dscore = min(p.Dscore, p.Dhi)
	return p
}

// options are the pubsub options of a member: for the contexts variant
// the daemon's (contexts.GossipOptions) with the parameters of c.tuning;
// for the baseline gossipsub's defaults. Either with the heartbeat slowed
// down by c.dilate.
func (c simConfig) options() []pubsub.Option {
	if c.bare {
		if c.dilate == 1 {
			return nil
		}
		return []pubsub.Option{pubsub.WithGossipSubParams(gossipTuning{}.params(pubsub.DefaultGossipSubParams(), c.dilate))}
	}
	return append(contexts.GossipOptions(c.fanout),
		pubsub.WithGossipSubParams(c.tuning.params(contexts.GossipParams(c.fanout), c.dilate)),
		pubsub.WithFloodPublish(!c.tuning.noFlood))
}

// simConfig is one sim-ctx run.
type simConfig struct {
	members int
	latency time.Duration
	degree  float64
	msgs    int
	rate    float64
	size    int
	seed    uint64
	drain   time.Duration
	bare    bool // default gossipsub options and raw payloads, else the contexts variant
	fanout  contexts.Fanout
	tuning  gossipTuning
	// dilate stretches time: links, heartbeats and the publish interval
	// are dilate times longer and measured latencies divided by it, so
	// that what the simulation's shared cores add per hop shrinks by it.
	dilate float64
}

// simResult is what one sim-ctx run measured.
type simResult struct {
	result
	graphP95 time.Duration // p95 over deliveries of (shortest path in links × latency)
	schedP99 time.Duration // p99 goroutine scheduling latency while publishing
	cpuBusy  float64       // cores busy on average while publishing
}

// runSimCtx simulates one context of --members members in this process:
// libp2p hosts on go-libp2p's mocknet, each link with --latency one-way
// latency (added by delayHost), in a random connected graph of mean degree
// --degree, each host running gossipsub on one topic with the contexts
// options (signed feed entries as payloads, an inline validator that
// checks them). --msgs messages are published from random members at
// --rate per second; the delivery latency is measured at every other
// member, in wall time (divided by --dilate). With --baseline the same run
// repeats with default gossipsub options and bare payloads on the same
// graph.
func runSimCtx(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("sim-ctx", flag.ContinueOnError)
	var c simConfig
	fs.IntVar(&c.members, "members", 1000, "members (in-process hosts)")
	fs.DurationVar(&c.latency, "latency", 100*time.Millisecond, "one-way latency of every link")
	fs.Float64Var(&c.degree, "degree", 8, "mean number of links per member (a random spanning tree plus random links)")
	fs.IntVar(&c.msgs, "msgs", 100, "messages, each from a random member")
	fs.Float64Var(&c.rate, "rate", 10, "messages per second")
	fs.IntVar(&c.size, "size", 200, "app body bytes per message")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the graph and the publishers")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "how long to wait for missing deliveries after the last publish")
	fs.Float64Var(&c.dilate, "dilate", 1, "run time K times slower (links, heartbeats, publish interval, drain) and divide the latencies measured by K")
	baseline := fs.Bool("baseline", true, "also run default gossipsub on the same graph (base_ fields)")
	wide := fs.Bool("wide", false, "the contexts variant on the wide mesh of a context created --wide (contexts.Wide), else a room's lean one")
	fs.IntVar(&c.tuning.d, "D", 0, "gossipsub D of the contexts variant (0: the daemon's, contexts.GossipParams)")
	fs.IntVar(&c.tuning.dlo, "Dlo", 0, "gossipsub Dlo (0: the daemon's)")
	fs.IntVar(&c.tuning.dhi, "Dhi", 0, "gossipsub Dhi (0: the daemon's)")
	fs.IntVar(&c.tuning.dlazy, "Dlazy", 0, "gossipsub Dlazy (0: the daemon's)")
	fs.DurationVar(&c.tuning.heartbeat, "heartbeat", 0, "gossipsub heartbeat interval (0: the daemon's)")
	fs.BoolVar(&c.tuning.noFlood, "no-flood-publish", false, "publish to mesh peers only")
	fs.IntVar(&c.tuning.idontwant, "idontwant", 0, "IDONTWANT threshold in bytes (0: the daemon's)")
	cpuprof := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *wide {
		c.fanout = contexts.Wide
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return "", err
		}
		defer pprof.StopCPUProfile()
	}
	if c.members < 2 || c.msgs < 1 || c.rate <= 0 || c.degree < 1 || c.size < probeSize || c.size > feed.MaxCtxBody || c.latency < 0 || c.dilate < 1 || fs.NArg() > 0 {
		return "", fmt.Errorf("need --members ≥ 2, --msgs ≥ 1, --rate > 0, --degree ≥ 1, %d ≤ --size ≤ %d, --latency ≥ 0, --dilate ≥ 1 and no other arguments", probeSize, feed.MaxCtxBody)
	}
	r, err := simulate(ctx, c)
	if err != nil {
		return "", err
	}
	line := fmt.Sprintf("bench=sim-ctx members=%d fanout=%s latency_ms=%d dilate=%g degree=%g msgs=%d p50_ms=%.1f p95_ms=%.1f delivered_pct=%.2f dup_per_msg=%.2f graph_p95_ms=%.1f sched_p99_ms=%.1f cpu_busy=%.2f",
		c.members, c.fanout, c.latency.Milliseconds(), c.dilate, c.degree, c.msgs, ms(r.quantile(0.5)), ms(r.quantile(0.95)), r.deliveredPct(), r.dupPerMsg(),
		ms(r.graphP95), ms(r.schedP99), r.cpuBusy)
	if *baseline {
		c.bare = true
		b, err := simulate(ctx, c)
		if err != nil {
			return "", fmt.Errorf("baseline: %w", err)
		}
		line += fmt.Sprintf(" base_p50_ms=%.1f base_p95_ms=%.1f base_delivered_pct=%.2f base_dup_per_msg=%.2f base_sched_p99_ms=%.1f",
			ms(b.quantile(0.5)), ms(b.quantile(0.95)), b.deliveredPct(), b.dupPerMsg(), ms(b.schedP99))
	}
	return line, nil
}

// simMember is one host of the simulation.
type simMember struct {
	id     peer.ID
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	key    feed.PrivateKey // signs its messages (contexts variant)
	copies *copyCounter

	mu   sync.Mutex // guards head
	head feed.Head  // of its feed
}

// simulate runs one variant of the simulation.
func simulate(ctx context.Context, c simConfig) (simResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rng := rand.New(rand.NewPCG(c.seed, 0x5eed))
	edges := randomGraph(c.members, c.degree, rng)
	what := "contexts options"
	if c.bare {
		what = "default gossipsub"
	}
	fmt.Fprintf(os.Stderr, "sim-ctx (%s): %d members, %d links of %v…\n", what, c.members, len(edges), c.latency)

	// The links themselves have no latency: delayHost adds it.
	mn := mocknet.New()
	defer mn.Close()
	ctxKey, err := feed.GenerateKey(nil)
	if err != nil {
		return simResult{}, err
	}
	members := make([]*simMember, c.members)
	for i := range members {
		m, err := newSimMember(ctx, mn, i, c, ctxKey.Public())
		if err != nil {
			return simResult{}, err
		}
		members[i] = m
	}
	for _, e := range edges {
		if _, err := mn.LinkPeers(members[e[0]].id, members[e[1]].id); err != nil {
			return simResult{}, err
		}
	}
	for _, e := range edges {
		if _, err := mn.ConnectPeers(members[e[0]].id, members[e[1]].id); err != nil {
			return simResult{}, err
		}
	}
	if err := waitTopicPeers(ctx, members, edges); err != nil {
		return simResult{}, err
	}
	// Meshes form at heartbeats: give them a few before measuring.
	heartbeat := c.tuning.params(contexts.GossipParams(c.fanout), c.dilate).HeartbeatInterval
	if c.bare {
		heartbeat = gossipTuning{}.params(pubsub.DefaultGossipSubParams(), c.dilate).HeartbeatInterval
	}
	select {
	case <-time.After(3 * heartbeat):
	case <-ctx.Done():
		return simResult{}, ctx.Err()
	}

	col := newCollector(0, c.msgs, c.members)
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { receive(ctx, m, i, c, col) })
	}
	defer func() { cancel(); wg.Wait() }()

	pubs := make([]int, c.msgs)
	for i := range pubs {
		pubs[i] = rng.IntN(c.members)
	}
	sched0 := schedHist()
	cpu0, err := daemon.ProcessCPU(os.Getpid())
	if err != nil {
		return simResult{}, err
	}
	t0 := time.Now()
	err = paced(ctx, c.msgs, c.rate/c.dilate, func(i int) error {
		m := members[pubs[i]]
		col.published(i, pubs[i])
		return m.publish(ctx, i, c, ctxKey.Public())
	})
	if err != nil {
		return simResult{}, err
	}
	wall := time.Since(t0)
	cpu1, err := daemon.ProcessCPU(os.Getpid())
	if err != nil {
		return simResult{}, err
	}
	sched := schedHist()
	col.wait(ctx, time.Duration(float64(c.drain)*c.dilate))

	var r simResult
	r.result = col.result()
	for _, m := range members {
		r.dups += m.copies.load()
	}
	r.dups -= int64(len(r.lats)) // every delivery took one copy
	r.graphP95 = graphQuantile(c.members, edges, pubs, 0.95) * c.latency
	r.schedP99 = schedQuantile(sched0, sched, 0.99)
	r.cpuBusy = (cpu1 - cpu0).Seconds() / wall.Seconds()
	fmt.Fprintf(os.Stderr, "sim-ctx (%s): delivered %d of %d, p50 %v p95 %v; CPU %.2f of %d cores while publishing\n",
		what, len(r.lats), r.want, r.quantile(0.5), r.quantile(0.95), r.cpuBusy, runtime.NumCPU())
	return r, nil
}

// newSimMember adds host i to mn, with gossipsub joined to simTopic.
func newSimMember(ctx context.Context, mn mocknet.Mocknet, i int, c simConfig, ctxID feed.ID) (*simMember, error) {
	key, err := feed.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(key.Ed25519())
	if err != nil {
		return nil, err
	}
	addr, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4242", i>>16&255, i>>8&255, i&255))
	if err != nil {
		return nil, err
	}
	h, err := mn.AddPeer(sk, addr)
	if err != nil {
		return nil, fmt.Errorf("sim member %d: %w", i, err)
	}
	m := &simMember{id: h.ID(), key: key, copies: newCopyCounter(simTopic)}
	opts := append([]pubsub.Option{pubsub.WithRawTracer(m.copies)}, c.options()...)
	ps, err := pubsub.NewGossipSub(ctx, delayHost{h, time.Duration(float64(c.latency) * c.dilate)}, opts...)
	if err != nil {
		return nil, fmt.Errorf("sim member %d: gossipsub: %w", i, err)
	}
	if !c.bare {
		if err := ps.RegisterTopicValidator(simTopic, entryValidator(ctxID), pubsub.WithValidatorInline(true)); err != nil {
			return nil, err
		}
	}
	if m.topic, err = ps.Join(simTopic); err != nil {
		return nil, err
	}
	if m.sub, err = m.topic.Subscribe(); err != nil {
		return nil, err
	}
	return m, nil
}

// entryValidator has the shape of a context's topic validator: the
// payload must be a feed entry of type ctx for this context, correctly
// signed. (The daemon also checks bans and blocks, which cost a map
// lookup.)
func entryValidator(ctxID feed.ID) pubsub.ValidatorEx {
	return func(_ context.Context, _ peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if _, err := decodeEntryProbe(msg.Data, ctxID); err != nil {
			return pubsub.ValidationReject
		}
		return pubsub.ValidationAccept
	}
}

// decodeEntryProbe checks a contexts-variant payload and returns its app
// body.
func decodeEntryProbe(data []byte, ctxID feed.ID) ([]byte, error) {
	e, err := feed.Decode(data)
	if err != nil {
		return nil, err
	}
	if e.Type != feed.TypeCtx {
		return nil, fmt.Errorf("entry of type %q", e.Type)
	}
	if err := e.VerifySignature(); err != nil {
		return nil, err
	}
	cb, err := feed.DecodeCtx(e.Body)
	if err != nil {
		return nil, err
	}
	if cb.Context != ctxID {
		return nil, errors.New("entry of another context")
	}
	return cb.Body, nil
}

// publish publishes message i: for the contexts variant a new ctx entry
// of m's feed, else the bare probe.
func (m *simMember) publish(ctx context.Context, i int, c simConfig, ctxID feed.ID) error {
	body := encodeProbe(i, time.Now(), c.size)
	if !c.bare {
		cb, err := feed.Ctx{Context: ctxID, Body: body}.Encode()
		if err != nil {
			return err
		}
		m.mu.Lock()
		e, err := feed.Sign(m.key, m.head, feed.TypeCtx, cb, time.Now())
		if err == nil {
			m.head = e.Next()
		}
		m.mu.Unlock()
		if err != nil {
			return err
		}
		body = e.Encode()
	}
	if err := m.topic.Publish(ctx, body); err != nil {
		return fmt.Errorf("publish message %d: %w", i, err)
	}
	return nil
}

// receive records each message member i's subscription delivers, until
// ctx ends. The validator has checked the payloads of the contexts
// variant.
func receive(ctx context.Context, m *simMember, i int, c simConfig, col *collector) {
	for {
		msg, err := m.sub.Next(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		if msg.ReceivedFrom == m.id {
			continue // its own
		}
		body := msg.Data
		if !c.bare {
			e, err := feed.Decode(body)
			if err != nil {
				continue
			}
			cb, err := feed.DecodeCtx(e.Body)
			if err != nil {
				continue
			}
			body = cb.Body
		}
		if idx, sent, ok := decodeProbe(body); ok {
			col.delivered(idx, i, time.Duration(float64(now.Sub(sent))/c.dilate))
		}
	}
}

// waitTopicPeers waits until every member sees each of its linked peers in
// the topic, or a minute passed.
func waitTopicPeers(ctx context.Context, members []*simMember, edges [][2]int) error {
	deg := degrees(len(members), edges)
	next := 0 // members before it are done
	err := waitUntil(ctx, time.Minute, func() (bool, error) {
		for next < len(members) && len(members[next].topic.ListPeers()) >= deg[next] {
			next++
		}
		return next == len(members), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for member %d to see its %d peers in the topic: %w", next, deg[next], err)
	}
	return nil
}

// graphQuantile returns the q-quantile, over every (message, other
// member) pair, of the number of links on the shortest path from the
// message's publisher: the floor of delivery latency in link latencies.
func graphQuantile(n int, edges [][2]int, pubs []int, q float64) time.Duration {
	adj := adjacency(n, edges)
	hops := map[int][]int{}
	var all []time.Duration
	for _, p := range pubs {
		d, ok := hops[p]
		if !ok {
			d = bfs(adj, p)
			hops[p] = d
		}
		for j, h := range d {
			if j != p {
				all = append(all, time.Duration(h))
			}
		}
	}
	return quantile(all, q)
}

// bfs returns the hop distance from src to every node.
func bfs(adj [][]int, src int) []int {
	d := make([]int, len(adj))
	for i := range d {
		d[i] = -1
	}
	d[src] = 0
	queue := []int{src}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, v := range adj[u] {
			if d[v] < 0 {
				d[v] = d[u] + 1
				queue = append(queue, v)
			}
		}
	}
	return d
}

// schedHist reads the runtime's histogram of goroutine scheduling
// latencies (time from runnable to running).
func schedHist() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

// schedQuantile returns the q-quantile of the scheduling latencies
// recorded between two reads of schedHist: how long runnable goroutines
// waited for a core, which is what CPU starvation adds to every hop.
func schedQuantile(a, b *metrics.Float64Histogram, q float64) time.Duration {
	var total uint64
	for i := range b.Counts {
		total += b.Counts[i] - a.Counts[i]
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var seen uint64
	for i := range b.Counts {
		seen += b.Counts[i] - a.Counts[i]
		if seen > want {
			// Bucket i spans Buckets[i]..Buckets[i+1]; report its top
			// (its bottom for the last, unbounded one).
			top := b.Buckets[i+1]
			if math.IsInf(top, 1) {
				top = b.Buckets[i]
			}
			return time.Duration(top * float64(time.Second))
		}
	}
	return 0
}

// delayHost gives every stream it opens a one-way latency: each write
// reaches the other end latency after it was made, in order, and writes
// do not wait for each other. (Gossipsub writes only on the streams it
// opens.) mocknet's own link latency cannot serve: a stream holds each
// write of 256 bytes or more until it arrived before taking the next, so
// it carries one message per latency, and it delays smaller writes for as
// long as more keep coming.
type delayHost struct {
	host.Host
	latency time.Duration
}

func (h delayHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil || h.latency <= 0 {
		return s, err
	}
	return newDelayStream(s, h.latency), nil
}

// newDelayStream wraps s; closing or resetting the result ends its
// goroutine.
func newDelayStream(s network.Stream, latency time.Duration) *delayStream {
	d := &delayStream{Stream: s, latency: latency, q: make(chan delayedWrite, delayQueue), done: make(chan struct{})}
	go d.run()
	return d
}

// delayQueue bounds the writes in flight on one delayed stream; a writer
// beyond it waits.
const delayQueue = 1024

// delayStream is a stream whose writes arrive latency late.
type delayStream struct {
	network.Stream
	latency time.Duration
	q       chan delayedWrite
	done    chan struct{} // closed by stop
	once    sync.Once
}

type delayedWrite struct {
	at time.Time
	b  []byte
}

func (s *delayStream) Write(p []byte) (int, error) {
	select {
	case s.q <- delayedWrite{at: time.Now().Add(s.latency), b: slices.Clone(p)}:
		return len(p), nil
	case <-s.done:
		return 0, network.ErrReset
	}
}

// run writes each queued write through at its time.
func (s *delayStream) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var w delayedWrite
		select {
		case w = <-s.q:
		case <-s.done:
			return
		}
		t.Reset(time.Until(w.at))
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		if _, err := s.Stream.Write(w.b); err != nil {
			s.stop()
			return
		}
	}
}

func (s *delayStream) stop() { s.once.Do(func() { close(s.done) }) }

func (s *delayStream) Close() error {
	s.stop()
	return s.Stream.Close()
}

func (s *delayStream) Reset() error {
	s.stop()
	return s.Stream.Reset()
}
