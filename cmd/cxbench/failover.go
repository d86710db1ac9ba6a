package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/sdk"
)

// The failover workload runs in a network namespace of its own
// (runInNamespace, role failoverRoleNS). The child holds daemon A; daemon
// B runs in a second, named namespace; two veth pairs are the two paths
// between them (10.77.1.0/24, 10.77.2.0/24) and a third carries only the
// bench's RPC calls to B (10.77.9.0/24).
const failoverRoleNS = "failover-ns"

// failoverConfig is one failover run.
type failoverConfig struct {
	rate    float64       // entries B publishes a second
	bytes   int64         // the object A fetches from B
	warm    time.Duration // steady stream before the first cut
	after   time.Duration // steady stream after each recovery
	limit   time.Duration // how long a recovery may take before the run fails
	verbose bool
}

// runFailover measures how links heal. Two daemons, A and B, are joined by
// two paths; B publishes a steady stream of entries that a subscriber on A
// reads. The path in use is cut (every packet dropped both ways, nothing
// reported to either end: a tbf qdisc that passes no packet) while the
// stream flows; then again while A fetches an object from B (once a
// quarter of it is in); then B is killed (SIGKILL) and started again on the
// same addresses, and A must link again by itself. gap_ms is the longest
// time without a delivery to A's subscriber around the first cut,
// fetch_gap_ms around the second (the fetch also competes for the link
// there), restart_gap_ms from B's restart to the next delivery; max_gap_ms
// is the larger of the two cuts'. sync_ok: A holds B's whole feed; dup:
// entries the subscriber saw twice; fetch_ok: the object A holds hashes
// like B's. Root only.
func runFailover(ctx context.Context, args []string) (string, error) {
	c, err := parseFailover(args)
	if err != nil {
		return "", err
	}
	if os.Geteuid() != 0 {
		return "", errors.New("failover needs root: it builds network namespaces and veth paths (run it with sudo, or as root in a container)")
	}
	ps, cleanup, err := newProcs(ctx, "failover", c.verbose)
	if err != nil {
		return "", err
	}
	defer cleanup()
	lines, err := runInNamespace(ctx, failoverRoleNS, args, ps)
	if err != nil {
		return "", err
	}
	return lines[len(lines)-1], nil
}

func parseFailover(args []string) (failoverConfig, error) {
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	var c failoverConfig
	fs.Float64Var(&c.rate, "rate", 100, "entries B publishes a second (the gap's resolution is 1/rate)")
	fs.Int64Var(&c.bytes, "bytes", 64<<20, "size of the object A fetches from B while its path is cut")
	fs.DurationVar(&c.warm, "warm", 2*time.Second, "steady stream before the first cut")
	fs.DurationVar(&c.after, "after", 2*time.Second, "steady stream after each recovery")
	fs.DurationVar(&c.limit, "limit", time.Minute, "how long each recovery may take before the run fails")
	fs.BoolVar(&c.verbose, "v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.rate <= 0 || c.rate > 1000 || c.bytes < 1 || c.warm <= 0 || c.after <= 0 || c.limit <= 0 || fs.NArg() > 0 {
		return c, errors.New("need 0 < --rate ≤ 1000, --bytes ≥ 1, positive --warm, --after and --limit, and no other arguments")
	}
	return c, nil
}

func init() {
	if os.Getenv(quicRoleEnv) != failoverRoleNS {
		return
	}
	line, err := failoverChild()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cxbench failover:", err)
		os.Exit(1)
	}
	fmt.Println(line)
	os.Exit(0)
}

// failoverChild runs the workload inside the namespace unshare made.
func failoverChild() (string, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args, ps, err := namespaceChild()
	if err != nil {
		return "", err
	}
	c, err := parseFailover(args)
	if err != nil {
		return "", err
	}
	if c.verbose {
		ps.logw = os.Stderr
	}
	ns := fmt.Sprintf("cxbench-failover-%d", os.Getpid())
	paths, err := newFailoverNet(ctx, ns)
	if err != nil {
		return "", err
	}
	defer paths.close()
	r := &failoverRun{cfg: c, ps: ps, net: paths}
	defer r.stop()
	return r.run(ctx)
}

// failoverNet is the namespaces and paths: this process's namespace is
// A's side, ns is B's. Path i (1 or 2) is the veth pair fo<i>, 10.77.i.1
// here and 10.77.i.2 in ns; foc carries the RPC calls to B.
type failoverNet struct {
	ns string
}

// failoverPaths are the paths' subnets' third octets; 9 is the control pair.
var failoverPaths = []int{1, 2}

func newFailoverNet(ctx context.Context, ns string) (*failoverNet, error) {
	if err := sh(ctx, "ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if err := sh(ctx, "ip", "netns", "add", ns); err != nil {
		return nil, err
	}
	n := &failoverNet{ns: ns}
	cmds := [][]string{{"ip", "-n", ns, "link", "set", "lo", "up"}}
	for _, i := range append(failoverPaths, 9) {
		dev := n.dev(i)
		cmds = append(cmds,
			[]string{"ip", "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", ns},
			[]string{"ip", "addr", "add", fmt.Sprintf("10.77.%d.1/24", i), "dev", dev},
			[]string{"ip", "link", "set", dev, "up"},
			[]string{"ip", "-n", ns, "addr", "add", fmt.Sprintf("10.77.%d.2/24", i), "dev", dev},
			[]string{"ip", "-n", ns, "link", "set", dev, "up"})
	}
	for _, c := range cmds {
		if err := sh(ctx, c...); err != nil {
			n.close()
			return nil, err
		}
	}
	return n, nil
}

func (n *failoverNet) dev(i int) string {
	if i == 9 {
		return "foc"
	}
	return fmt.Sprintf("fo%d", i)
}

// cut drops every packet on path i, both ways: a tbf whose bucket is
// smaller than any packet drops each one (no netem in this kernel).
func (n *failoverNet) cut(ctx context.Context, i int) error {
	for _, pre := range [][]string{{"ip", "netns", "exec", n.ns}, nil} {
		c := append(pre, "tc", "qdisc", "replace", "dev", n.dev(i), "root", "tbf", "rate", "8bit", "burst", "64", "limit", "1")
		if err := sh(ctx, c...); err != nil {
			return err
		}
	}
	return nil
}

// heal lifts the cut of path i.
func (n *failoverNet) heal(ctx context.Context, i int) error {
	for _, pre := range [][]string{{"ip", "netns", "exec", n.ns}, nil} {
		if err := sh(ctx, append(pre, "tc", "qdisc", "del", "dev", n.dev(i), "root")...); err != nil {
			return err
		}
	}
	return nil
}

// close removes B's namespace and with it the veth pairs; A's goes with
// this process.
func (n *failoverNet) close() {
	exec.Command("ip", "netns", "del", n.ns).Run()
}

// failoverRun is the state of a run.
type failoverRun struct {
	cfg    failoverConfig
	ps     *procs
	net    *failoverNet
	a, b   *daemon.Daemon
	ca, cb *sdk.Client
	bID    feed.ID
	bAddrs []string // B's listen addresses on the paths, without /p2p

	published atomic.Uint64 // B's last seq published

	mu     sync.Mutex // guards the fields below
	last   uint64     // the subscriber's cursor
	dup    int        // entries seen twice (or out of order)
	at     time.Time  // the last delivery
	gapMax time.Duration
	wake   chan struct{} // closed and replaced at each delivery
	// up is when B was last restarted, firstAfter the first delivery
	// after that.
	up, firstAfter time.Time
}

func (r *failoverRun) stop() {
	for _, c := range []*sdk.Client{r.ca, r.cb} {
		if c != nil {
			c.Close()
		}
	}
	for _, d := range []*daemon.Daemon{r.a, r.b} {
		if d != nil {
			d.Stop()
		}
	}
}

// startB starts B in its namespace, listening on the paths (on listen if
// given: a restart keeps the addresses) and serving RPC on the control
// pair.
func (r *failoverRun) startB(ctx context.Context, listen []string) (*daemon.Daemon, error) {
	wrapper := filepath.Join(r.ps.dir, "contextd-b")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", r.net.ns, r.ps.bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		return nil, err
	}
	if len(listen) == 0 {
		for _, i := range failoverPaths {
			listen = append(listen, fmt.Sprintf("/ip4/10.77.%d.2/udp/0/quic-v1", i))
		}
	}
	extra := []string{"--rpc", "10.77.9.2:0"}
	for _, l := range listen {
		extra = append(extra, "--listen", l)
	}
	return daemon.Start(ctx, wrapper, filepath.Join(r.ps.dir, "b"), r.ps.logw, extra...)
}

func (r *failoverRun) run(ctx context.Context) (string, error) {
	var err error
	var extra []string
	for _, i := range failoverPaths {
		extra = append(extra, "--listen", fmt.Sprintf("/ip4/10.77.%d.1/udp/0/quic-v1", i))
	}
	if r.a, err = daemon.Start(ctx, r.ps.bin, filepath.Join(r.ps.dir, "a"), r.ps.logw, extra...); err != nil {
		return "", err
	}
	if r.b, err = r.startB(ctx, nil); err != nil {
		return "", err
	}
	r.bID = r.b.ID
	var dial string
	for _, a := range r.b.Addrs {
		if strings.Contains(a, "/10.77.") {
			r.bAddrs = append(r.bAddrs, strings.Split(a, "/p2p/")[0])
		}
		if strings.Contains(a, "/10.77.1.2/") {
			dial = a
		}
	}
	if dial == "" || len(r.bAddrs) != len(failoverPaths) {
		return "", fmt.Errorf("B reports addresses %v, want one on each path", r.b.Addrs)
	}
	if r.ca, err = r.a.Client(ctx); err != nil {
		return "", err
	}
	if r.cb, err = r.b.Client(ctx); err != nil {
		return "", err
	}
	if _, err := r.ca.Follow(ctx, r.bID); err != nil {
		return "", err
	}
	if err := r.ca.Connect(ctx, dial); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "failover: A linked to B over path 1; B publishes %g entries/s…\n", r.cfg.rate)

	// The publisher stops before the final check, the subscriber after it.
	pubCtx, stopPub := context.WithCancel(ctx)
	subCtx, stopSub := context.WithCancel(ctx)
	var pubWG, subWG sync.WaitGroup
	defer func() {
		stopPub()
		stopSub()
		pubWG.Wait()
		subWG.Wait()
	}()
	pubWG.Go(func() { r.publish(pubCtx) })
	sub, err := r.ca.Subscribe(ctx, r.bID, 0)
	if err != nil {
		return "", err
	}
	defer sub.Close()
	r.wake = make(chan struct{})
	subWG.Go(func() { r.subscribe(subCtx, sub) })

	// Mid-sync: cut the path in use with the stream flowing.
	if err := r.steady(ctx, r.cfg.warm); err != nil {
		return "", err
	}
	cut, err := r.pathInUse(ctx)
	if err != nil {
		return "", err
	}
	r.resetGap()
	if err := r.net.cut(ctx, cut); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "failover: path %d cut mid-sync…\n", cut)
	if err := r.steady(ctx, r.cfg.after); err != nil {
		return "", fmt.Errorf("after the cut mid-sync: %w", err)
	}
	gap := r.resetGap()
	if err := r.net.heal(ctx, cut); err != nil {
		return "", err
	}

	// Mid-fetch: cut the path in use once a quarter of the object is in.
	fetchGap, fetchOK, fetchSecs, err := r.fetch(ctx)
	if err != nil {
		return "", err
	}

	// B killed and started again on the same addresses: A relinks.
	restartGap, err := r.restart(ctx)
	if err != nil {
		return "", err
	}

	stopPub()
	pubWG.Wait()
	// B's own head is the truth: a call cut short (B killed, or the
	// publisher stopped) may still have appended an entry.
	bh, err := r.cb.Head(ctx, r.bID)
	if err != nil {
		return "", fmt.Errorf("B's head: %w", err)
	}
	last := max(r.published.Load(), bh.Seq)
	// A's store holds an entry a moment before its subscriber reads it:
	// wait for both.
	syncOK := waitUntil(ctx, r.cfg.limit, func() (bool, error) {
		h, err := r.ca.Head(ctx, r.bID)
		r.mu.Lock()
		seen := r.last
		r.mu.Unlock()
		return err == nil && h.Seq >= last && seen >= last, nil
	}) == nil
	stopSub()
	subWG.Wait()
	r.mu.Lock()
	syncOK = syncOK && r.last == last
	dup := r.dup
	r.mu.Unlock()
	return fmt.Sprintf("bench=failover rate=%g bytes=%d entries=%d gap_ms=%.0f fetch_gap_ms=%.0f max_gap_ms=%.0f restart_gap_ms=%.0f fetch_secs=%.2f sync_ok=%t fetch_ok=%t dup=%d",
		r.cfg.rate, r.cfg.bytes, last, ms(gap), ms(fetchGap), ms(max(gap, fetchGap)), ms(restartGap), fetchSecs, syncOK, fetchOK, dup), nil
}

// publish makes B publish at the configured rate until ctx ends. A failed
// call (B down for its restart) is retried at the next tick.
func (r *failoverRun) publish(ctx context.Context) {
	t := time.NewTicker(time.Duration(float64(time.Second) / r.cfg.rate))
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		r.mu.Lock()
		cb := r.cb
		r.mu.Unlock()
		if cb == nil {
			continue
		}
		h, err := cb.Publish(ctx, "post", fmt.Appendf(nil, "%d", time.Now().UnixNano()))
		if err == nil {
			r.published.Store(h.Seq)
		}
	}
}

// subscribe reads A's subscription to B's feed: it counts entries seen
// twice or out of order and times the gaps between deliveries.
func (r *failoverRun) subscribe(ctx context.Context, sub *sdk.Subscription) {
	for {
		e, err := sub.Next(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		r.mu.Lock()
		if e.Seq != r.last+1 {
			r.dup++
		}
		r.last = max(r.last, e.Seq)
		if !r.at.IsZero() {
			r.gapMax = max(r.gapMax, now.Sub(r.at))
		}
		r.at = now
		if !r.up.IsZero() && r.firstAfter.Before(r.up) {
			r.firstAfter = now
		}
		close(r.wake)
		r.wake = make(chan struct{})
		r.mu.Unlock()
	}
}

// resetGap returns the longest gap since the last call and starts anew.
func (r *failoverRun) resetGap() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := max(r.gapMax, time.Since(r.at))
	r.gapMax = 0
	return g
}

// steady waits until the subscriber has had deliveries for d without a
// gap of a second, within the recovery limit.
func (r *failoverRun) steady(ctx context.Context, d time.Duration) error {
	deadline := time.NewTimer(r.cfg.limit)
	defer deadline.Stop()
	var since time.Time
	for {
		r.mu.Lock()
		wake, at := r.wake, r.at
		r.mu.Unlock()
		switch {
		case at.IsZero() || time.Since(at) > time.Second:
			since = time.Time{}
		case since.IsZero():
			since = at
		case time.Since(since) >= d:
			return nil
		}
		select {
		case <-wake:
		case <-time.After(100 * time.Millisecond):
		case <-deadline.C:
			return fmt.Errorf("no steady delivery to A's subscriber within %v", r.cfg.limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pathInUse returns the path A's link to B rides: the one whose veth
// received the most bytes over a short while (the link carries the
// stream, and the fetch if one runs; nothing else moves), or an error if
// none received any.
func (r *failoverRun) pathInUse(ctx context.Context) (int, error) {
	rx := func() ([]int64, error) {
		// /proc/net/dev is this namespace's (sysfs shows the host's).
		b, err := os.ReadFile("/proc/net/dev")
		if err != nil {
			return nil, err
		}
		var out []int64
		for _, i := range failoverPaths {
			dev, v := r.net.dev(i)+":", int64(-1)
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 1 && f[0] == dev {
					v, err = strconv.ParseInt(f[1], 10, 64)
				}
			}
			if err != nil || v < 0 {
				return nil, fmt.Errorf("read the bytes %s received from /proc/net/dev: %v", dev, err)
			}
			out = append(out, v)
		}
		return out, nil
	}
	before, err := rx()
	if err != nil {
		return 0, err
	}
	select {
	case <-time.After(100 * time.Millisecond):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	after, err := rx()
	if err != nil {
		return 0, err
	}
	best, most := 0, int64(0)
	for k, i := range failoverPaths {
		if d := after[k] - before[k]; d > most {
			best, most = i, d
		}
	}
	if best == 0 {
		return 0, errors.New("no path carries A's link to B")
	}
	return best, nil
}

// fetch has B put a random object and A get it, cutting the path in use
// once a quarter is in; it checks A's copy against B's.
func (r *failoverRun) fetch(ctx context.Context) (gap time.Duration, ok bool, secs float64, err error) {
	fmt.Fprintf(os.Stderr, "failover: B puts %d bytes; A fetches them…\n", r.cfg.bytes)
	src := io.LimitReader(rand.Reader, r.cfg.bytes)
	h := sha256.New()
	put, err := r.cb.PutObject(ctx, io.TeeReader(src, h))
	if err != nil {
		return 0, false, 0, fmt.Errorf("B puts: %w", err)
	}
	want := h.Sum(nil)
	// The progress callback runs on the SDK's reader: the cut runs apart.
	var cut int // set before cutErr is sent
	cutErr := make(chan error, 1)
	var once sync.Once
	var started atomic.Bool
	r.resetGap()
	start := time.Now()
	_, err = r.ca.ObjectGet(ctx, put.CID, "", func(done, total int64) {
		if done >= total/4 && done < total {
			once.Do(func() {
				started.Store(true)
				go func() {
					i, err := r.pathInUse(ctx)
					if err == nil {
						cut = i
						fmt.Fprintf(os.Stderr, "failover: path %d cut mid-fetch…\n", cut)
						err = r.net.cut(ctx, cut)
					}
					cutErr <- err
				}()
			})
		}
	})
	secs = time.Since(start).Seconds()
	if err != nil {
		return 0, false, secs, fmt.Errorf("A gets: %w", err)
	}
	if !started.Load() {
		return 0, false, secs, errors.New("the fetch ended before a quarter was reported: try a larger --bytes")
	}
	if err := <-cutErr; err != nil {
		return 0, false, secs, err
	}
	if err := r.steady(ctx, r.cfg.after); err != nil {
		return 0, false, secs, fmt.Errorf("after the cut mid-fetch: %w", err)
	}
	gap = r.resetGap()
	if err := r.net.heal(ctx, cut); err != nil {
		return 0, false, secs, err
	}
	h.Reset()
	if _, err := r.ca.GetObject(ctx, put.CID, h, nil); err != nil {
		return 0, false, secs, fmt.Errorf("A reads its copy: %w", err)
	}
	return gap, string(h.Sum(nil)) == string(want), secs, nil
}

// restart kills B and starts it again on the same addresses; A must link
// again by itself. It returns the time from B's restart to the next
// delivery to A's subscriber.
func (r *failoverRun) restart(ctx context.Context) (time.Duration, error) {
	fmt.Fprintln(os.Stderr, "failover: B killed (SIGKILL) and restarted on the same addresses…")
	r.mu.Lock()
	cb := r.cb
	r.cb = nil
	r.mu.Unlock()
	cb.Close()
	r.b.Crash()
	b, err := r.startB(ctx, r.bAddrs)
	if err != nil {
		return 0, fmt.Errorf("restart B: %w", err)
	}
	r.b = b
	up := time.Now()
	r.mu.Lock()
	r.up = up
	r.mu.Unlock()
	if cb, err = b.Client(ctx); err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.cb = cb
	r.mu.Unlock()
	if err := r.steady(ctx, r.cfg.after); err != nil {
		return 0, fmt.Errorf("after B's restart (A did not link again by itself): %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.firstAfter.Sub(up), nil
}
