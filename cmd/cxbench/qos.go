package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// The qos workload runs in a network namespace of its own
// (runInNamespace), whose child, in role qosRoleNS, shapes its loopback
// and runs the daemons.
const (
	qosRoleNS  = "qos-ns"
	qosLinkBit = 100e6 // the shaped link's rate, bits per second
)

// qosConfig is the qos workload's flags.
type qosConfig struct {
	bytes    int64         // the object B serves A
	warm     time.Duration // bulk time left out of the control figures
	base     int           // pings measuring the base RTT
	interval time.Duration // between control pings
	size     int           // bytes per control ping
	target   time.Duration // the controller's queue target; 0: the daemon's default
	verbose  bool
}

func parseQoS(args []string) (qosConfig, error) {
	fs := flag.NewFlagSet("qos", flag.ContinueOnError)
	var c qosConfig
	fs.Int64Var(&c.bytes, "bytes", 192<<20, "size of the object A gets from B (192 MiB: about 16 s at 100 Mbit/s)")
	fs.DurationVar(&c.warm, "warm", time.Second, "start of the bulk transfer left out of the control figures")
	fs.IntVar(&c.base, "base", 200, "pings measuring the base RTT, before the transfer")
	fs.DurationVar(&c.interval, "interval", 5*time.Millisecond, "time between control pings")
	fs.IntVar(&c.size, "size", 1024, "bytes per control ping")
	fs.DurationVar(&c.target, "queue-target", 0, "the bulk controller's queue target (config flit.queue_target_ms; 0: the daemon's default)")
	fs.BoolVar(&c.verbose, "v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.bytes < 1 || c.warm < 0 || c.base < 1 || c.interval < time.Millisecond || c.size < 1 || c.size > api.MaxPingSize || c.target < 0 || fs.NArg() > 0 {
		return c, fmt.Errorf("need --bytes ≥ 1, --warm ≥ 0, --base ≥ 1, --interval ≥ 1ms, 1 ≤ --size ≤ %d, and no other arguments", api.MaxPingSize)
	}
	return c, nil
}

// runQoS measures control latency behind bulk on a shaped link: in a
// network namespace whose loopback is a 100 Mbit/s tbf with a 50 ms queue,
// daemon B holds a random object of --bytes and daemon A gets it (bulk
// B→A fills the link) while A pings B (node.ping: --size bytes every
// --interval on a control-class circuit). The base RTT is the median of
// --base pings before the transfer. It runs twice, with fresh daemons:
// first with the bulk controller off (config flit.unmanaged), printing
// that line, then on; the controlled line is the final one. bulk_mbit is
// the object's bits over the get's time; ctl_* are over the pings sent
// from --warm after the get began until it ended (a ping with no reply
// counts as the longest). Root only.
func runQoS(ctx context.Context, args []string) (string, error) {
	lines, err := qosLines(ctx, args)
	if err != nil {
		return "", err
	}
	for _, l := range lines[:len(lines)-1] {
		fmt.Println(l)
	}
	return lines[len(lines)-1], nil
}

// qosLines runs the workload in its namespace child and returns the
// child's lines, the unmanaged one first.
func qosLines(ctx context.Context, args []string) ([]string, error) {
	c, err := parseQoS(args)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("qos needs root: it builds a network namespace and shapes its loopback with tc (run it with sudo, or as root in a container)")
	}
	ps, cleanup, err := newProcs(ctx, "qos", c.verbose)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	lines, err := runInNamespace(ctx, qosRoleNS, args, ps)
	if err != nil {
		return nil, err
	}
	if len(lines) != 2 {
		return nil, fmt.Errorf("qos: namespace child printed %d lines, want 2", len(lines))
	}
	return lines, nil
}

func init() {
	if os.Getenv(quicRoleEnv) != qosRoleNS {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := qosChild(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cxbench qos:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// qosChild runs the workload inside the namespace: it shapes the
// loopback, writes the object, and prints one line per mode.
func qosChild(ctx context.Context) error {
	args, ps, err := namespaceChild()
	if err != nil {
		return err
	}
	c, err := parseQoS(args)
	if err != nil {
		return err
	}
	if c.verbose {
		ps.logw = os.Stderr
	}
	// QUIC packets fit a 1500-byte MTU; TCP (the RPC calls) is kept to
	// it too, so that no segment is larger than the bucket.
	for _, cmd := range [][]string{
		{"ip", "link", "set", "lo", "mtu", "1500"},
		{"ip", "link", "set", "lo", "up"},
		{"tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "100mbit", "burst", "16kb", "latency", "50ms"},
	} {
		if err := sh(ctx, cmd...); err != nil {
			return err
		}
	}
	in := filepath.Join(ps.dir, "in.bin")
	if _, err := writeRandom(in, c.bytes); err != nil {
		return err
	}
	for _, unmanaged := range []bool{true, false} {
		line, err := qosRun(ctx, c, ps, in, unmanaged)
		if err != nil {
			return err
		}
		fmt.Println(line)
	}
	return nil
}

// qosRun runs one mode with fresh daemons and returns its line.
func qosRun(ctx context.Context, c qosConfig, ps *procs, in string, unmanaged bool) (string, error) {
	mode := "ledbat"
	if unmanaged {
		mode = "unmanaged"
	}
	start := func(name string, extra ...string) (*daemon.Daemon, *sdk.Client, error) {
		home := filepath.Join(ps.dir, mode+"-"+name)
		if _, err := daemon.Init(ctx, ps.bin, home); err != nil {
			return nil, nil, err
		}
		if err := setFlit(home, unmanaged, c.target); err != nil {
			return nil, nil, err
		}
		d, err := daemon.Start(ctx, ps.bin, home, ps.logw, extra...)
		if err != nil {
			return nil, nil, err
		}
		cl, err := d.Client(ctx)
		if err != nil {
			d.Stop()
			return nil, nil, err
		}
		return d, cl, nil
	}
	b, cb, err := start("b")
	if err != nil {
		return "", err
	}
	defer b.Stop()
	defer cb.Close()
	a, ca, err := start("a", "--bootstrap", b.Addrs[0])
	if err != nil {
		return "", err
	}
	defer a.Stop()
	defer ca.Close()

	fmt.Fprintf(os.Stderr, "qos %s: B puts %d bytes…\n", mode, c.bytes)
	f, err := os.Open(in)
	if err != nil {
		return "", err
	}
	put, err := cb.PutObject(ctx, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("B: put: %w", err)
	}
	if err := waitProviders(ctx, ca, put.CID, 1); err != nil {
		return "", fmt.Errorf("A: %w", err)
	}
	base, err := ca.Ping(ctx, api.PingParams{Peer: b.ID, Size: c.size, Count: c.base, IntervalMs: int(c.interval.Milliseconds())})
	if err != nil {
		return "", fmt.Errorf("A: base ping: %w", err)
	}
	if base.Received == 0 {
		return "", errors.New("A: no reply to the base pings")
	}

	fmt.Fprintf(os.Stderr, "qos %s: A gets it while pinging B…\n", mode)
	stopPings := make(chan struct{})
	pings := make(chan qosPings, 1)
	go func() { pings <- pingWhile(ctx, stopPings, ca, b.ID, c) }()
	// The bulk rate is taken over the same span as the control figures,
	// from the get's progress reports.
	var mu sync.Mutex
	var marks []qosMark
	t0 := time.Now()
	_, gerr := ca.ObjectGet(ctx, put.CID, "", func(done, _ int64) {
		mu.Lock()
		marks = append(marks, qosMark{time.Now(), done})
		mu.Unlock()
	})
	t1 := time.Now()
	close(stopPings)
	got := <-pings
	if gerr != nil {
		return "", fmt.Errorf("A: get: %w", gerr)
	}
	if got.err != nil {
		return "", fmt.Errorf("A: pings: %w", got.err)
	}
	rtts := got.during(t0.Add(c.warm), t1)
	if len(rtts) == 0 {
		return "", fmt.Errorf("no control ping went out during the transfer's %v after --warm %v", t1.Sub(t0), c.warm)
	}
	slices.Sort(rtts)
	mu.Lock()
	bulk, err := bulkMbit(marks, t0.Add(c.warm), c.bytes)
	mu.Unlock()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("bench=qos mode=%s link_mbit=%.0f bulk_mbit=%.1f bulk_pct=%.1f ctl_p50_ms=%.2f ctl_p99_ms=%.2f base_rtt_ms=%.2f base_p99_ms=%.2f pings=%d",
		mode, qosLinkBit/1e6, bulk, bulk/(qosLinkBit/1e6)*100, ms(rtts[(len(rtts)-1)*50/100]), ms(rtts[(len(rtts)-1)*99/100]),
		float64(base.P50Us)/1e3, float64(base.P99Us)/1e3, len(rtts)), nil
}

// qosMark is one progress report of the get: when, and the bytes held.
type qosMark struct {
	at   time.Time
	done int64
}

// bulkMbit returns the rate of the get from the first progress report
// at or after from to the end (size bytes held), in Mbit/s.
func bulkMbit(marks []qosMark, from time.Time, size int64) (float64, error) {
	i := slices.IndexFunc(marks, func(m qosMark) bool { return !m.at.Before(from) })
	if i < 0 || len(marks)-i < 2 {
		return 0, errors.New("too few progress reports of the get after --warm to measure its rate")
	}
	first, last := marks[i], marks[len(marks)-1]
	if last.done != size {
		return 0, fmt.Errorf("the get's last progress report says %d bytes of %d", last.done, size)
	}
	return float64(last.done-first.done) * 8 / last.at.Sub(first.at).Seconds() / 1e6, nil
}

// setFlit writes config.json "flit" of the daemon at home.
func setFlit(home string, unmanaged bool, target time.Duration) error {
	path := filepath.Join(home, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	cfg["flit"] = map[string]any{"unmanaged": unmanaged, "queue_target_ms": float64(target) / 1e6}
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// qosPings are control pings: when each was sent and its round trip
// (none: no reply).
type qosPings struct {
	sent []time.Time
	rtts []time.Duration
	err  error
}

// during returns the round trips of the pings sent in [from, to); a ping
// without reply counts as an hour, worse than any reply.
func (p qosPings) during(from, to time.Time) []time.Duration {
	var out []time.Duration
	for i, t := range p.sent {
		if !t.Before(from) && t.Before(to) {
			out = append(out, p.rtts[i])
		}
	}
	return out
}

// pingWhile pings peer in calls of one second's pings until stop is
// closed (the call in progress completes) or ctx ends.
func pingWhile(ctx context.Context, stop <-chan struct{}, cl *sdk.Client, peer feed.ID, c qosConfig) qosPings {
	var p qosPings
	n := max(int(time.Second/c.interval), 1)
	for {
		select {
		case <-stop:
			return p
		default:
		}
		start := time.Now()
		r, err := cl.Ping(ctx, api.PingParams{Peer: peer, Size: c.size, Count: n, IntervalMs: int(c.interval.Milliseconds())})
		if err != nil {
			p.err = err
			return p
		}
		for i, us := range r.RTTsUs {
			d := time.Duration(us) * time.Microsecond
			if us < 0 {
				d = time.Hour // no reply: worse than any
			}
			p.sent = append(p.sent, start.Add(time.Duration(i)*c.interval))
			p.rtts = append(p.rtts, d)
		}
	}
}
