package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/sdk"
)

// runFlood runs a target daemon under a flood from a hostile process
// while an honest peer syncs a feed from it and a second member exchanges
// context messages with it; it reports the target's peak memory, whether
// the honest work kept going and whether the target dropped the flooder.
func runFlood(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	entries := fs.Int("entries", 10000, "entries of the target's feed the honest peer syncs")
	size := fs.Int("size", 200, "body bytes per entry")
	secs := fs.Float64("secs", 30, "seconds the flood lasts at least (longer while the honest sync runs)")
	syncLimit := fs.Duration("sync-timeout", 3*time.Minute, "how long the honest sync may take")
	rate := fs.Float64("rate", 4, "context messages per second, the two honest members in turn")
	var o floodOrder
	fs.Float64Var(&o.GossipRate, "gossip-rate", 500, "forged gossip messages per second (one in 50 of about 1 MiB)")
	fs.IntVar(&o.RPCConns, "rpc-conns", 200, "token-less RPC requests and WebSocket dials, and as many slowloris connections")
	pprof := fs.String("target-pprof", "", "host:port for the target's Go profiles (contextd run --pprof), to see where its memory goes")
	attacks := fs.String("attacks", strings.Join(floodAttacks, ","), "the attacks to run, comma-separated")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	for _, a := range strings.Split(*attacks, ",") {
		if a == "" { // --attacks "": the baseline, no flood
			continue
		}
		if !slices.Contains(floodAttacks, a) {
			return "", fmt.Errorf("--attacks: unknown attack %q (known: %s)", a, strings.Join(floodAttacks, ", "))
		}
		o.Attacks = append(o.Attacks, a)
	}
	if *entries < 1 || *size < 0 || *size > feed.MaxBodySize || *secs <= 0 || *rate <= 0 || o.GossipRate <= 0 || o.RPCConns < 0 || fs.NArg() > 0 {
		return "", fmt.Errorf("need --entries ≥ 1, 0 ≤ --size ≤ %d, --secs > 0, --rate > 0, --gossip-rate > 0, --rpc-conns ≥ 0 and no other arguments", feed.MaxBodySize)
	}
	ps, cleanup, err := newProcs(ctx, "flood", *verbose)
	if err != nil {
		return "", err
	}
	defer cleanup()
	homes := map[string]string{}
	for _, name := range []string{"target", "honest", "member"} {
		homes[name] = filepath.Join(ps.dir, name)
		if _, err := daemon.Init(ctx, ps.bin, homes[name]); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(os.Stderr, "flood: filling the target's feed with %d entries…\n", *entries)
	filled, err := fill(homes["target"], 1, *entries, *size)
	if err != nil {
		return "", err
	}
	start := func(name string) (*daemon.Daemon, *sdk.Client, error) {
		var extra []string
		if name == "target" && *pprof != "" {
			extra = []string{"--pprof", *pprof}
		}
		d, err := daemon.Start(ctx, ps.bin, homes[name], ps.logw, extra...)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		cl, err := d.Client(ctx)
		if err != nil {
			d.Stop()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return d, cl, nil
	}
	target, tcl, err := start("target")
	if err != nil {
		return "", err
	}
	defer target.Stop()
	defer tcl.Close()
	honest, hcl, err := start("honest")
	if err != nil {
		return "", err
	}
	defer honest.Stop()
	defer hcl.Close()
	member, mcl, err := start("member")
	if err != nil {
		return "", err
	}
	defer member.Stop()
	defer mcl.Close()

	if err := mcl.Connect(ctx, target.Addrs[0]); err != nil {
		return "", fmt.Errorf("member: connect: %w", err)
	}
	cx, err := tcl.CreateContext(ctx, "flood", "")
	if err != nil {
		return "", err
	}
	if _, err := mcl.JoinContext(ctx, cx.ID); err != nil {
		return "", err
	}
	talk, err := newCtxTalk(ctx, cx.ID, [2]*sdk.Client{tcl, mcl})
	if err != nil {
		return "", err
	}
	defer talk.close()

	o.Target, o.RPC, o.Context = target.Addrs[0], target.RPC, cx.ID
	hostile, err := startHostile(o)
	if err != nil {
		return "", err
	}
	defer hostile.kill()
	fmt.Fprintln(os.Stderr, "flood: the hostile process is flooding the target; honest sync and context traffic start in 3 s…")
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return "", ctx.Err()
	}

	floodStart := time.Now()
	tctx, stopTalk := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { talk.run(tctx, *rate) })
	own, err := hcl.Follow(ctx, target.ID)
	if err != nil {
		stopTalk()
		wg.Wait()
		return "", err
	}
	syncStart := time.Now()
	syncOK := false
	if err := hcl.Connect(ctx, target.Addrs[0]); err != nil {
		fmt.Fprintln(os.Stderr, "flood: honest peer: connect:", err)
	} else {
		sctx, cancel := context.WithTimeout(ctx, *syncLimit)
		err := waitProgress(sctx, hcl, int64(own.Seq)+filled.entries)
		cancel()
		if syncOK = err == nil; !syncOK {
			fmt.Fprintln(os.Stderr, "flood: honest sync:", err)
		}
	}
	syncSecs := time.Since(syncStart).Seconds()
	if rest := time.Duration(*secs*float64(time.Second)) - time.Since(floodStart); rest > 0 {
		select {
		case <-time.After(rest):
		case <-ctx.Done():
		}
	}
	stopTalk()
	wg.Wait()
	talk.drain(ctx, 10*time.Second)
	rss, rssErr := target.PeakRSS()
	rep, err := hostile.finish()
	if err != nil {
		return "", fmt.Errorf("hostile process: %w", err)
	}
	if rssErr != nil {
		return "", fmt.Errorf("the target: %w (did it die?)", rssErr)
	}
	if _, err := tcl.Info(ctx); err != nil {
		return "", fmt.Errorf("the target no longer answers: %w", err)
	}
	fmt.Fprintf(os.Stderr, "flood: hostile report: %+v\n", rep)
	return fmt.Sprintf("bench=flood attacks=%s target_rss_mb=%.0f honest_sync_s=%.1f honest_sync_ok=%t ctx_delivered_pct=%.1f flooder_dropped=%t notes_sent=%d ebt_sessions=%d chunks_sent=%d swarm_circuits=%d frames_sent=%d frames_reset=%d gossip_sent=%d gossip_huge_sent=%d rpc_refused=%d rpc_accepted=%d slowloris_open=%d/%d",
		*attacks, float64(rss)/(1<<20), syncSecs, syncOK, talk.deliveredPct(), rep.dropped(),
		rep.Notes, rep.EBTSessions, rep.Chunks, rep.SwarmCircuits, rep.Frames, rep.FramesReset, rep.Gossip, rep.GossipHuge,
		rep.RPCRefused, rep.RPCAccepted, rep.SlowlorisOpen, rep.Slowloris), nil
}

// ctxTalk has two members of a context publish probes in turn and counts
// those the other one's subscription delivers.
type ctxTalk struct {
	id   feed.ID
	cls  [2]*sdk.Client
	subs [2]*sdk.ContextSubscription
	wg   sync.WaitGroup

	mu        sync.Mutex   // guards the fields below
	published map[int]bool // probe indices whose publish call returned
	got       map[int]bool // probe indices delivered to the member that did not publish them
	kick      chan struct{}
}

func newCtxTalk(ctx context.Context, id feed.ID, cls [2]*sdk.Client) (*ctxTalk, error) {
	t := &ctxTalk{id: id, cls: cls, published: map[int]bool{}, got: map[int]bool{}, kick: make(chan struct{}, 1)}
	for i, cl := range cls {
		sub, err := cl.SubscribeContext(ctx, id, sdk.ContextOptions{})
		if err != nil {
			t.close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		t.subs[i] = sub
		t.wg.Go(func() {
			for {
				m, err := sub.Next(context.Background())
				if err != nil {
					return
				}
				// Member i gets message idx from member idx%2.
				if idx, _, ok := decodeProbe(m.Body); ok && idx%2 != i {
					t.mu.Lock()
					t.got[idx] = true
					t.mu.Unlock()
					select {
					case t.kick <- struct{}{}:
					default:
					}
				}
			}
		})
	}
	return t, nil
}

// run publishes at rate per second until ctx ends; message idx comes
// from member idx%2. A failed publish is reported and not counted.
func (t *ctxTalk) run(ctx context.Context, rate float64) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for idx := 0; ; idx++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := t.cls[idx%2].PublishContext(cctx, t.id, encodeProbe(idx, time.Now(), probeSize))
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "flood: member %d: publish: %v\n", idx%2, err)
			continue
		}
		t.mu.Lock()
		t.published[idx] = true
		t.mu.Unlock()
	}
}

// drain waits until every published probe was delivered, or limit.
func (t *ctxTalk) drain(ctx context.Context, limit time.Duration) {
	deadline := time.After(limit)
	for {
		done := t.delivered() == t.count()
		if done {
			return
		}
		select {
		case <-t.kick:
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// delivered counts the published probes the other member got; a probe
// whose publish call failed does not count, even if it went out.
func (t *ctxTalk) delivered() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for idx := range t.published {
		if t.got[idx] {
			n++
		}
	}
	return n
}

func (t *ctxTalk) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.published)
}

func (t *ctxTalk) deliveredPct() float64 {
	return pct(int64(t.delivered()), int64(t.count()))
}

func (t *ctxTalk) close() {
	for _, s := range t.subs {
		if s != nil {
			s.Close()
		}
	}
	t.wg.Wait()
}

// hostileProc is the hostile child process: it reads its floodOrder as
// one JSON line on stdin, floods until its stdin ends, then writes its
// floodReport as one JSON line on stdout and exits.
type hostileProc struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	stdout *bufio.Reader
}

// floodRoleHostile is the CXBENCH_ROLE of the hostile process.
const floodRoleHostile = "flood-hostile"

// startRole starts this executable again in role (quicRoleEnv), its
// stderr to ours, and returns its stdin and stdout.
func startRole(role string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), quicRoleEnv+"="+role)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("start %s process: %w", role, err)
	}
	return cmd, stdin, stdout, nil
}

func startHostile(o floodOrder) (*hostileProc, error) {
	cmd, stdin, stdout, err := startRole(floodRoleHostile)
	if err != nil {
		return nil, err
	}
	p := &hostileProc{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	if err := json.NewEncoder(stdin).Encode(o); err != nil {
		p.kill()
		return nil, err
	}
	// Its first line says it has started (linked, or failed to).
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("hostile process: %w", err)
	}
	if line != "flooding\n" {
		p.kill()
		return nil, fmt.Errorf("hostile process: %s", line)
	}
	return p, nil
}

// finish closes the child's stdin and reads its report.
func (p *hostileProc) finish() (floodReport, error) {
	p.stdin.Close()
	var rep floodReport
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		return rep, fmt.Errorf("reading the report: %w", err)
	}
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		return rep, fmt.Errorf("reading the report: %w", err)
	}
	return rep, p.cmd.Wait()
}

// kill ends the child if it still runs.
func (p *hostileProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// errHostileUsage is returned when the hostile role gets no order.
var errHostileUsage = errors.New("the hostile process reads a JSON order on stdin")
