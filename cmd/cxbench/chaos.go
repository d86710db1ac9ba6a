package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// runChaos runs daemon processes in a random graph under churn (kill -9
// and restart, link cuts) while they publish, then checks with the
// network quiet that every acknowledged publish reached every node that
// must hold it.
func runChaos(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	var c chaosConfig
	fs.IntVar(&c.nodes, "nodes", 10, "daemon processes")
	fs.Float64Var(&c.minutes, "minutes", 3, "minutes of publishing under churn")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the graph, the follows, the contexts and the churn")
	fs.Float64Var(&c.degree, "degree", 2.4, "mean links per node (a random spanning tree plus random links)")
	fs.IntVar(&c.contexts, "contexts", 2, "shared contexts (random members)")
	fs.Float64Var(&c.rate, "rate", 10, "publishes per second over all nodes")
	fs.DurationVar(&c.every, "every", 6*time.Second, "mean time between churn events (a kill -9 or a link cut)")
	fs.DurationVar(&c.converge, "converge", 2*time.Minute, "how long the quiet network may take to converge")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if c.nodes < 3 || c.minutes <= 0 || c.degree < 1 || c.contexts < 0 || c.rate <= 0 || c.every <= 0 || fs.NArg() > 0 {
		return "", errors.New("need --nodes ≥ 3, --minutes > 0, --degree ≥ 1, --contexts ≥ 0, --rate > 0, --every > 0 and no other arguments")
	}
	ps, cleanup, err := newProcs(ctx, "chaos", *verbose)
	if err != nil {
		return "", err
	}
	r := &chaosRun{cfg: c, ps: ps, rng: rand.New(rand.NewPCG(c.seed, 0xc4a05)), cut: map[[2]int]bool{}}
	r.plan = newChaosPlan(c.nodes, c.degree, c.contexts, r.rng)
	line, keep, err := r.run(ctx)
	if keep {
		fmt.Fprintf(os.Stderr, "chaos: kept the homes and logs (nN.log) in %s\n", ps.dir)
	} else {
		cleanup()
	}
	return line, err
}

// chaosConfig is one chaos run.
type chaosConfig struct {
	nodes    int
	minutes  float64
	seed     uint64
	degree   float64
	contexts int
	rate     float64
	every    time.Duration
	converge time.Duration
}

// Churn: a killed node stays down 1 to 5 s; a cut link stays cut 5 to
// 20 s; at most a third of the nodes are down or restarting at once.
const (
	chaosDownMin, chaosDownMax = time.Second, 5 * time.Second
	chaosCutMin, chaosCutMax   = 5 * time.Second, 20 * time.Second
	chaosCallTimeout           = 10 * time.Second
	chaosCtxShare              = 0.3 // of the publishes, context messages
)

// chaosNode is one daemon slot; its daemon changes at each restart.
type chaosNode struct {
	id  feed.ID
	log io.Writer // the node's log file (and stderr with -v)

	mu   sync.Mutex // guards the fields below
	d    *daemon.Daemon
	cl   *sdk.Client
	up   bool // d runs and cl is connected
	busy bool // an event is stopping or restarting it
}

// client returns the node's client if it is up.
func (n *chaosNode) client() (*sdk.Client, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cl, n.up
}

// chaosRun is the state of a run.
type chaosRun struct {
	cfg   chaosConfig
	ps    *procs
	plan  chaosPlan
	nodes []*chaosNode
	ctxs  []feed.ID

	rngMu sync.Mutex // guards rng
	rng   *rand.Rand // the churn's; each publisher has its own

	mu     sync.Mutex // guards the fields below
	cut    map[[2]int]bool
	acked  []ackedItem
	maxRSS int64

	kills, cuts, failedCalls atomic.Int64
}

func (r *chaosRun) float() float64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64()
}

// between returns a random duration in [lo, hi).
func (r *chaosRun) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.float()*float64(hi-lo))
}

// run sets up the nodes, runs the churn and checks; keep asks to keep the
// scratch directory (something was lost or stuck: the logs tell why).
func (r *chaosRun) run(ctx context.Context) (line string, keep bool, err error) {
	defer r.stopAll()
	if err := r.setup(ctx); err != nil {
		return "", true, err
	}
	fmt.Fprintf(os.Stderr, "chaos: %d nodes, %d links, contexts of %v members; churn for %g min…\n",
		r.cfg.nodes, len(r.plan.edges), r.contextSizes(), r.cfg.minutes)
	if err := r.churn(ctx); err != nil {
		return "", true, err
	}
	fmt.Fprintf(os.Stderr, "chaos: quiet; %d acknowledged publishes (%d calls failed); relinking and waiting for convergence…\n", len(r.acked), r.failedCalls.Load())
	start := time.Now()
	req := r.plan.required(r.acked)
	var h holdings
	missing, report := 0, time.Now()
	err = waitUntil(ctx, r.cfg.converge, func() (bool, error) {
		if time.Since(report) >= 10*time.Second && h.heads != nil {
			fmt.Fprintf(os.Stderr, "chaos: %d links missing, %d (node, author) pairs behind, %d stuck…\n", missing, behind(req, h.heads), len(r.plan.stuck(h)))
			report = time.Now()
		}
		if missing = r.mend(ctx); missing > 0 {
			return false, nil
		}
		var err error
		if h, err = r.heads(ctx); err != nil {
			return false, err
		}
		return behind(req, h.heads) == 0 && len(r.plan.stuck(h)) == 0, nil
	})
	secs := time.Since(start).Seconds()
	if err != nil && ctx.Err() != nil {
		return "", true, err
	}
	if err != nil {
		if h, err = r.heads(ctx); err != nil {
			return "", true, err
		}
		fmt.Fprintf(os.Stderr, "chaos: not converged after %v: %d links missing, %d (node, author) pairs still behind\n", r.cfg.converge, missing, behind(req, h.heads))
	}
	if err := r.read(ctx, &h); err != nil {
		return "", true, err
	}
	for i := range r.nodes { // a last sample of RSS, all nodes up
		r.sampleRSS(i)
	}
	lost, why := r.plan.lost(r.acked, h)
	stuck := r.plan.stuck(h)
	for _, w := range why {
		fmt.Fprintln(os.Stderr, "chaos: lost:", w)
	}
	for _, s := range stuck {
		a, c := s[0], s[1]
		var linked uint64
		for _, b := range r.plan.adj[a] {
			linked = max(linked, h.heads[b][c])
		}
		fmt.Fprintf(os.Stderr, "chaos: stuck: node %d holds seq %d of node %d's feed; a linked node holds %d, a peer claims %d\n", a, h.heads[a][c], c, linked, h.best[a][c])
	}
	return fmt.Sprintf("bench=chaos nodes=%d kills=%d cuts=%d acked=%d lost=%d stuck_feeds=%d max_rss_mb=%.0f seed=%d minutes=%g converge_s=%.1f",
		r.cfg.nodes, r.kills.Load(), r.cuts.Load(), len(r.acked), lost, len(stuck), float64(r.maxRSS)/(1<<20), r.cfg.seed, r.cfg.minutes, secs), lost > 0 || len(stuck) > 0, nil
}

func (r *chaosRun) contextSizes() []int {
	var out []int
	for x := range r.plan.members {
		out = append(out, len(r.plan.contextMembers(x)))
	}
	return out
}

// setup starts the daemons, links them, makes the follows and the
// contexts.
func (r *chaosRun) setup(ctx context.Context) error {
	r.nodes = make([]*chaosNode, r.cfg.nodes)
	for i := range r.nodes {
		home := r.home(i)
		id, err := daemon.Init(ctx, r.ps.bin, home)
		if err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(r.ps.dir, fmt.Sprintf("n%d.log", i)))
		if err != nil {
			return err
		}
		r.nodes[i] = &chaosNode{id: id, log: io.MultiWriter(f, r.ps.logw)}
		if err := r.start(ctx, i); err != nil {
			return err
		}
	}
	for _, e := range r.plan.edges {
		if err := r.link(ctx, e[0], e[1]); err != nil {
			return fmt.Errorf("link %d–%d: %w", e[0], e[1], err)
		}
	}
	for a, n := range r.nodes {
		for c, m := range r.nodes {
			if r.plan.follows[a][c] {
				if _, err := n.cl.Follow(ctx, m.id); err != nil {
					return fmt.Errorf("node %d: follow %d: %w", a, c, err)
				}
			}
		}
	}
	for x := range r.plan.members {
		ms := r.plan.contextMembers(x)
		cx, err := r.nodes[ms[0]].cl.CreateContext(ctx, fmt.Sprintf("chaos %d", x), "")
		if err != nil {
			return fmt.Errorf("node %d: create context: %w", ms[0], err)
		}
		for _, a := range ms[1:] {
			if _, err := r.nodes[a].cl.JoinContext(ctx, cx.ID); err != nil {
				return fmt.Errorf("node %d: join context %d: %w", a, x, err)
			}
		}
		r.ctxs = append(r.ctxs, cx.ID)
	}
	return nil
}

func (r *chaosRun) home(i int) string { return filepath.Join(r.ps.dir, fmt.Sprintf("n%d", i)) }

// start runs node i's daemon on its home and connects its client.
func (r *chaosRun) start(ctx context.Context, i int) error {
	n := r.nodes[i]
	d, err := daemon.Start(ctx, r.ps.bin, r.home(i), n.log)
	if err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	cl, err := d.Client(ctx)
	if err != nil {
		d.Stop()
		return fmt.Errorf("node %d: %w", i, err)
	}
	n.mu.Lock()
	n.d, n.cl, n.up = d, cl, true
	n.mu.Unlock()
	return nil
}

// link has node a dial node b, both up.
func (r *chaosRun) link(ctx context.Context, a, b int) error {
	cl, up := r.nodes[a].client()
	r.nodes[b].mu.Lock()
	addr, bup := r.nodes[b].d.Addrs[0], r.nodes[b].up
	r.nodes[b].mu.Unlock()
	if !up || !bup {
		return fmt.Errorf("node %d or %d is down", a, b)
	}
	cctx, cancel := context.WithTimeout(ctx, chaosCallTimeout)
	defer cancel()
	return cl.Connect(cctx, addr)
}

// relink links node i to each neighbour that is up over a link not cut;
// a neighbour going down meanwhile is no error (its restart relinks it).
func (r *chaosRun) relink(ctx context.Context, i int) {
	for _, j := range r.plan.adj[i] {
		r.mu.Lock()
		cut := r.cut[[2]int{min(i, j), max(i, j)}]
		r.mu.Unlock()
		if !cut {
			if err := r.link(ctx, i, j); err != nil && r.ps.logw != io.Discard {
				fmt.Fprintf(os.Stderr, "chaos: relink %d–%d: %v\n", i, j, err)
			}
		}
	}
}

// mendEvery is how often the churn phase looks for missing links.
const mendEvery = 2 * time.Second

// mend dials every link that should be up (both ends up and not busy, not
// cut) but that either end does not list among its peers, and returns how
// many there were. The daemon does not redial a lost peer, and it keeps a
// link to a killed peer until QUIC notices the silence (about 30 s),
// refusing the restarted peer's new link meanwhile (of two links to one
// peer it keeps the one dialed by the smaller ID, and both were dialed by
// the same side): so cxbench, like an operator's supervisor, redials.
func (r *chaosRun) mend(ctx context.Context) int {
	linked := make([]map[feed.ID]bool, len(r.nodes))
	for i, n := range r.nodes {
		n.mu.Lock()
		cl, ok := n.cl, n.up && !n.busy
		n.mu.Unlock()
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, chaosCallTimeout)
		ps, err := cl.Peers(cctx)
		cancel()
		if err != nil {
			continue
		}
		linked[i] = map[feed.ID]bool{}
		for _, p := range ps {
			linked[i][p.ID] = true
		}
	}
	missing := 0
	for _, e := range r.plan.edges {
		a, b := e[0], e[1]
		r.mu.Lock()
		cut := r.cut[e]
		r.mu.Unlock()
		if cut || linked[a] == nil || linked[b] == nil || linked[a][r.nodes[b].id] && linked[b][r.nodes[a].id] {
			continue
		}
		missing++
		r.link(ctx, a, b) // errors show as a link still missing next time
	}
	return missing
}

// sampleRSS folds node i's peak RSS so far into the maximum.
func (r *chaosRun) sampleRSS(i int) {
	n := r.nodes[i]
	n.mu.Lock()
	d := n.d
	n.mu.Unlock()
	if rss, err := d.PeakRSS(); err == nil {
		r.mu.Lock()
		r.maxRSS = max(r.maxRSS, rss)
		r.mu.Unlock()
	}
}

// churn publishes at random on every node and runs churn events for the
// configured minutes, then waits for every restart and heals every cut.
func (r *chaosRun) churn(ctx context.Context) error {
	cctx, stop := context.WithTimeout(ctx, time.Duration(r.cfg.minutes*float64(time.Minute)))
	defer stop()
	var pubs, events sync.WaitGroup
	for i := range r.nodes {
		pubs.Go(func() { r.publisher(cctx, i) })
	}
	var fatal atomic.Pointer[error]
	fail := func(err error) {
		if fatal.CompareAndSwap(nil, &err) {
			stop()
		}
	}
	pubs.Go(func() {
		for {
			select {
			case <-cctx.Done():
				return
			case <-time.After(mendEvery):
			}
			r.mend(cctx)
		}
	})
	heal := make(chan struct{}) // closed when the churn ends: heal every cut now
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	next := time.Now().Add(r.exp(r.cfg.every))
loop:
	for {
		select {
		case <-cctx.Done():
			break loop
		case <-tick.C:
		}
		for i := range r.nodes {
			r.sampleRSS(i)
		}
		if time.Now().Before(next) {
			continue
		}
		next = time.Now().Add(r.exp(r.cfg.every))
		if r.float() < 0.5 {
			events.Go(func() {
				if err := r.killOne(ctx); err != nil {
					fail(err)
				}
			})
		} else {
			events.Go(func() {
				if err := r.cutOne(ctx, heal); err != nil {
					fail(err)
				}
			})
		}
	}
	pubs.Wait()
	close(heal)
	events.Wait()
	if p := fatal.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// exp returns a random exponential duration of mean d.
func (r *chaosRun) exp(d time.Duration) time.Duration {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return time.Duration(r.rng.ExpFloat64() * float64(d))
}

// publisher publishes on node i at rate/nodes per second (exponential
// gaps) until ctx ends: a post in its feed, or a message in one of its
// contexts. A publish whose call returned is acknowledged.
func (r *chaosRun) publisher(ctx context.Context, i int) {
	ctxs := r.plan.memberOf(i)
	rng := rand.New(rand.NewPCG(r.cfg.seed, uint64(i)))
	mean := float64(r.cfg.nodes) / r.cfg.rate * float64(time.Second)
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(rng.ExpFloat64() * mean)):
		}
		cl, up := r.nodes[i].client()
		if !up {
			continue
		}
		body := fmt.Appendf(nil, "chaos node %d publish %d at %s", i, k, time.Now().Format(time.RFC3339Nano))
		cctx, cancel := context.WithTimeout(context.Background(), chaosCallTimeout)
		it := ackedItem{author: i, ctx: -1}
		var err error
		if len(ctxs) > 0 && rng.Float64() < chaosCtxShare {
			it.ctx = ctxs[rng.IntN(len(ctxs))]
			var m api.Message
			if m, err = cl.PublishContext(cctx, r.ctxs[it.ctx], body); err == nil {
				it.seq, it.id = m.Seq, m.ID
			}
		} else {
			var h api.Head
			if h, err = cl.Publish(cctx, "post", body); err == nil {
				it.seq, it.id = h.Seq, h.ID
			}
		}
		cancel()
		if err != nil {
			r.failedCalls.Add(1)
			continue
		}
		r.mu.Lock()
		r.acked = append(r.acked, it)
		r.mu.Unlock()
	}
}

// claim marks a random node that is up and not busy as busy, filtered by
// ok; false if there is none.
func (r *chaosRun) claim(ok func(i int) bool) (int, bool) {
	down := 0
	for _, n := range r.nodes {
		n.mu.Lock()
		if !n.up || n.busy {
			down++
		}
		n.mu.Unlock()
	}
	if down >= max(1, len(r.nodes)/3) {
		return 0, false
	}
	for _, i := range r.randPerm(len(r.nodes)) {
		n := r.nodes[i]
		n.mu.Lock()
		free := n.up && !n.busy
		if free && ok(i) {
			n.busy = true
			n.mu.Unlock()
			return i, true
		}
		n.mu.Unlock()
	}
	return 0, false
}

func (r *chaosRun) randPerm(n int) []int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Perm(n)
}

// killOne kills a random node with SIGKILL and restarts it on the same
// home after a random pause, then relinks it.
func (r *chaosRun) killOne(ctx context.Context) error {
	i, ok := r.claim(func(int) bool { return true })
	if !ok {
		return nil
	}
	r.kills.Add(1)
	d, cl := r.takeDown(i)
	d.Crash()
	cl.Close()
	fmt.Fprintf(os.Stderr, "chaos: kill -9 node %d\n", i)
	select {
	case <-time.After(r.between(chaosDownMin, chaosDownMax)):
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.restart(ctx, i)
}

// takeDown samples node i's RSS, marks it down and returns its daemon and
// client, for the caller to end.
func (r *chaosRun) takeDown(i int) (*daemon.Daemon, *sdk.Client) {
	r.sampleRSS(i)
	n := r.nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	n.up = false
	return n.d, n.cl
}

// restart starts node i again, relinks it and frees it.
func (r *chaosRun) restart(ctx context.Context, i int) error {
	if err := r.start(ctx, i); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	r.relink(ctx, i)
	n := r.nodes[i]
	n.mu.Lock()
	n.busy = false
	n.mu.Unlock()
	return nil
}

// cutOne cuts a random link a–b whose ends are up and not cut: the daemon
// has no call to drop one link, so a is stopped (SIGTERM) and restarted at
// once on new ports and relinked to its other neighbours; b cannot reach
// a's old address. The link is healed (a dials b) after a random time, or
// when heal is closed.
func (r *chaosRun) cutOne(ctx context.Context, heal <-chan struct{}) error {
	var b int
	a, ok := r.claim(func(a int) bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, k := range r.randPerm(len(r.plan.adj[a])) {
			j := r.plan.adj[a][k]
			if !r.cut[[2]int{min(a, j), max(a, j)}] {
				b = j
				return true
			}
		}
		return false
	})
	if !ok {
		return nil
	}
	key := [2]int{min(a, b), max(a, b)}
	r.mu.Lock()
	r.cut[key] = true
	r.mu.Unlock()
	r.cuts.Add(1)
	d, cl := r.takeDown(a)
	cl.Close()
	if err := d.Stop(); err != nil {
		return fmt.Errorf("cut %d–%d: stop node %d: %w", a, b, a, err)
	}
	fmt.Fprintf(os.Stderr, "chaos: cut link %d–%d\n", a, b)
	if err := r.restart(ctx, a); err != nil {
		return err
	}
	select {
	case <-time.After(r.between(chaosCutMin, chaosCutMax)):
	case <-heal:
	}
	r.mu.Lock()
	delete(r.cut, key)
	r.mu.Unlock()
	r.link(ctx, a, b) // either end down: its restart relinks
	return nil
}

// heads reads every node's feed list.
func (r *chaosRun) heads(ctx context.Context) (holdings, error) {
	n := r.cfg.nodes
	h := holdings{heads: make([][]uint64, n), best: make([][]uint64, n)}
	index := make(map[feed.ID]int, n)
	for i, nd := range r.nodes {
		index[nd.id] = i
	}
	for a, nd := range r.nodes {
		h.heads[a], h.best[a] = make([]uint64, n), make([]uint64, n)
		fss, err := nd.cl.Feeds(ctx)
		if err != nil {
			return h, fmt.Errorf("node %d: feed list: %w", a, err)
		}
		for _, f := range fss {
			if c, ok := index[f.ID]; ok {
				h.heads[a][c], h.best[a][c] = f.Local, f.Best
			}
		}
	}
	return h, nil
}

// read fills h's entry IDs (the feeds each node holds all of: its own and
// those it follows) and context histories.
func (r *chaosRun) read(ctx context.Context, h *holdings) error {
	n := r.cfg.nodes
	h.ids = make([][]map[uint64]feed.Hash, n)
	for a, nd := range r.nodes {
		h.ids[a] = make([]map[uint64]feed.Hash, n)
		for c, m := range r.nodes {
			h.ids[a][c] = map[uint64]feed.Hash{}
			if a != c && !r.plan.follows[a][c] {
				continue
			}
			for since := uint64(0); since < h.heads[a][c]; {
				es, err := nd.cl.Get(ctx, m.id, since, api.MaxGetLimit)
				if err != nil {
					return fmt.Errorf("node %d: get %d's feed: %w", a, c, err)
				}
				if len(es) == 0 {
					break
				}
				for _, e := range es {
					h.ids[a][c][e.Seq] = e.ID
				}
				since = es[len(es)-1].Seq
			}
		}
	}
	index := make(map[feed.ID]int, n)
	for i, nd := range r.nodes {
		index[nd.id] = i
	}
	h.msgs = make([][]map[msgKey]bool, len(r.ctxs))
	for x, id := range r.ctxs {
		h.msgs[x] = make([]map[msgKey]bool, n)
		for _, a := range r.plan.contextMembers(x) {
			h.msgs[x][a] = map[msgKey]bool{}
			for after := uint64(0); ; {
				page, err := r.nodes[a].cl.ContextHistory(ctx, api.HistoryParams{ID: id, After: after, Limit: api.MaxHistoryLimit})
				if err != nil {
					return fmt.Errorf("node %d: history of context %d: %w", a, x, err)
				}
				for _, m := range page.Messages {
					if c, ok := index[m.Author]; ok {
						h.msgs[x][a][msgKey{c, m.Seq, m.ID}] = true
					}
					after = m.Cursor
				}
				if !page.More || len(page.Messages) == 0 {
					break
				}
			}
		}
	}
	return nil
}

// stopAll stops every daemon and closes every client.
func (r *chaosRun) stopAll() {
	for _, n := range r.nodes {
		if n == nil {
			continue
		}
		n.mu.Lock()
		if n.cl != nil {
			n.cl.Close()
		}
		if n.d != nil {
			n.d.Stop()
		}
		n.mu.Unlock()
	}
}
