package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// runLive measures a live stream between daemon processes on loopback: one
// publisher and --viewers viewers. The publisher is linked to the first
// --publisher-links viewers; every other viewer to two earlier viewers
// (chosen with --seed), not to the publisher, so most viewers get the
// stream through relays. The publisher opens a stream and pipes records
// into it (POST /streams/ID) at --rate-kbps: each record carries its
// index and write time and ends with a CRC, so that a viewer joining at
// the live edge, mid-record, finds the next one. The viewers then start
// watching one by one at the live edge (GET /streams/ID, through the SDK),
// each after the one before it was served; once all watch, the stream
// runs --seconds more, then the publisher closes it and every viewer
// reads on to its end.
//
// p50_ms and p99_ms are receive time − write time of the records written
// once every viewer watched, over all viewers; stalls counts gaps over
// liveStall between consecutive records at a viewer, lost the records a
// viewer lacks after its first; publisher_upload_pct is 100 × the live
// bytes the publisher sent / those the viewers received (stream.stats).
func runLive(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("live", flag.ContinueOnError)
	var c liveConfig
	fs.IntVar(&c.viewers, "viewers", 10, "viewer daemons")
	fs.Float64Var(&c.rateKbps, "rate-kbps", 4000, "stream rate, kilobits per second")
	fs.Float64Var(&c.seconds, "seconds", 20, "how long the stream runs once every viewer watches")
	fs.IntVar(&c.record, "record", 1000, "bytes per record")
	fs.IntVar(&c.pubLinks, "publisher-links", 3, "viewers linked to the publisher")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the links between viewers")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if c.viewers < 1 || c.rateKbps <= 0 || c.seconds <= 0 || c.record < liveRecordMin || c.record > maxProbeSize || c.pubLinks < 1 || fs.NArg() > 0 {
		return "", fmt.Errorf("need --viewers ≥ 1, --rate-kbps > 0, --seconds > 0, %d ≤ --record ≤ %d, --publisher-links ≥ 1 and no other arguments", liveRecordMin, maxProbeSize)
	}
	ps, cleanup, err := newProcs(ctx, "live", *verbose)
	if err != nil {
		return "", err
	}
	defer cleanup()
	return c.run(ctx, ps)
}

// liveConfig is one live run.
type liveConfig struct {
	viewers  int
	rateKbps float64
	seconds  float64
	record   int
	pubLinks int
	seed     uint64
}

const (
	// liveStall is the longest gap between two records at a viewer that
	// is not a stall.
	liveStall = time.Second
	// liveDrain bounds the wait for every viewer to reach the stream's
	// end after the publisher closed it.
	liveDrain = 15 * time.Second
	// liveRecordMin is a probe and its CRC.
	liveRecordMin = probeSize + crc32.Size
)

// liveLinks returns the links of a run: node 0 is the publisher, linked to
// viewers 1..pubLinks; each later viewer links to two earlier viewers
// (one if there is only one).
func liveLinks(viewers, pubLinks int, rng *rand.Rand) [][2]int {
	var links [][2]int
	for j := 1; j <= viewers; j++ {
		if j <= pubLinks {
			links = append(links, [2]int{0, j})
			continue
		}
		perm := rng.Perm(j - 1)
		for _, k := range perm[:min(2, len(perm))] {
			links = append(links, [2]int{k + 1, j})
		}
	}
	return links
}

func (c liveConfig) run(ctx context.Context, ps *procs) (string, error) {
	n := c.viewers + 1
	ds := make([]*daemon.Daemon, n)
	cls := make([]*sdk.Client, n)
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
	fmt.Fprintf(os.Stderr, "starting the publisher and %d viewers…\n", c.viewers)
	for i := range ds {
		home := filepath.Join(ps.dir, fmt.Sprintf("n%d", i))
		var err error
		if _, err = daemon.Init(ctx, ps.bin, home); err != nil {
			return "", err
		}
		if ds[i], err = daemon.Start(ctx, ps.bin, home, ps.logw); err != nil {
			return "", err
		}
		if cls[i], err = ds[i].Client(ctx); err != nil {
			return "", err
		}
	}
	links := liveLinks(c.viewers, c.pubLinks, rand.New(rand.NewPCG(c.seed, 0x11fe)))
	for _, l := range links {
		if err := cls[l[1]].Connect(ctx, ds[l[0]].Addrs[0]); err != nil {
			return "", fmt.Errorf("node %d: connect to %d: %w", l[1], l[0], err)
		}
	}
	id, err := cls[0].OpenStream(ctx)
	if err != nil {
		return "", fmt.Errorf("publisher: open: %w", err)
	}
	fmt.Fprintf(os.Stderr, "stream %s: publishing %g kbit/s in records of %d bytes…\n", id, c.rateKbps, c.record)

	pub := newLivePublisher(c)
	pubDone := make(chan error, 1)
	go func() { pubDone <- cls[0].PublishStream(ctx, id, pub.pr) }()
	go pub.run()
	defer pub.abort()

	var wg sync.WaitGroup
	defer wg.Wait()
	vctx, cancelViewers := context.WithCancel(ctx)
	defer cancelViewers() // before wg.Wait
	vs := make([]*liveViewer, c.viewers)
	for j := range vs {
		body, err := cls[j+1].WatchStream(vctx, id, api.StreamLiveEdge)
		if err != nil {
			return "", fmt.Errorf("viewer %d: watch: %w", j+1, err)
		}
		vs[j] = &liveViewer{}
		wg.Go(func() { vs[j].read(body, c.record) })
		fmt.Fprintf(os.Stderr, "viewer %d watches\n", j+1)
	}
	measured := pub.written.Load() // records from here on count for latency
	fmt.Fprintf(os.Stderr, "all %d viewers watch; running %gs…\n", c.viewers, c.seconds)
	if err := c.progress(ctx, pub, vs); err != nil {
		return "", err
	}
	pub.finish()
	if err := <-pubDone; err != nil {
		return "", fmt.Errorf("publisher: %w", err)
	}
	if err := cls[0].CloseStream(ctx, id); err != nil {
		return "", fmt.Errorf("publisher: close: %w", err)
	}
	total := pub.written.Load()
	fmt.Fprintf(os.Stderr, "closed after %d records; waiting for the viewers to reach the end…\n", total)
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(liveDrain):
		cancelViewers()
		<-ended
	case <-ctx.Done():
		return "", ctx.Err()
	}
	for j, v := range vs {
		if v.err != nil {
			return "", fmt.Errorf("viewer %d: %w", j+1, v.err)
		}
		if !v.ended {
			return "", fmt.Errorf("viewer %d did not reach the end of the stream within %v of its close (%d records)", j+1, liveDrain, len(v.recs))
		}
	}
	return c.line(ctx, cls, vs, liveHops(n, links), measured, total)
}

// liveHops returns each node's distance in links from the publisher
// (node 0), in a graph whose links go from earlier to later nodes.
func liveHops(n int, links [][2]int) []int {
	hops := make([]int, n)
	for _, l := range links { // in order of their later node
		if h := hops[l[0]] + 1; hops[l[1]] == 0 || h < hops[l[1]] {
			hops[l[1]] = h
		}
	}
	return hops
}

// progress waits c.seconds, printing how far the viewers are every 5 s.
func (c liveConfig) progress(ctx context.Context, pub *livePublisher, vs []*liveViewer) error {
	end := time.Now().Add(time.Duration(c.seconds * float64(time.Second)))
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(end)):
		case <-tick.C:
			least := int64(-1)
			for _, v := range vs {
				if n := v.count.Load(); least < 0 || n < least {
					least = n
				}
			}
			fmt.Fprintf(os.Stderr, "written %d records; the slowest viewer has %d\n", pub.written.Load(), least)
		}
	}
	return nil
}

// line sums up the viewers' records and the daemons' live byte counts;
// each viewer's own figures go to stderr.
func (c liveConfig) line(ctx context.Context, cls []*sdk.Client, vs []*liveViewer, hops []int, measured, total int64) (string, error) {
	var lats []time.Duration
	stalls, lost := 0, int64(0)
	for j, v := range vs {
		s, l := v.gaps(total)
		stalls += s
		lost += l
		var own []time.Duration
		for _, r := range v.recs {
			if r.idx >= measured {
				own = append(own, r.recv.Sub(r.sent))
			}
		}
		slices.Sort(own)
		fmt.Fprintf(os.Stderr, "viewer %d (%d hops): %d records, p50 %.1f ms, p99 %.1f ms, %d stalls, %d lost\n",
			j+1, hops[j+1], len(v.recs), ms(quantile(own, 0.5)), ms(quantile(own, 0.99)), s, l)
		lats = append(lats, own...)
	}
	slices.Sort(lats)
	st, err := cls[0].StreamStats(ctx)
	if err != nil {
		return "", fmt.Errorf("publisher: stats: %w", err)
	}
	var received uint64
	for j, cl := range cls[1:] {
		vst, err := cl.StreamStats(ctx)
		if err != nil {
			return "", fmt.Errorf("viewer %d: stats: %w", j+1, err)
		}
		received += vst.ReceivedBytes
	}
	fmt.Fprintf(os.Stderr, "publisher sent %d live bytes, the viewers received %d\n", st.SentBytes, received)
	return fmt.Sprintf("bench=live viewers=%d rate_kbps=%g seconds=%g p50_ms=%.1f p99_ms=%.1f publisher_upload_pct=%.1f stalls=%d lost=%d",
		c.viewers, c.rateKbps, c.seconds, ms(quantile(lats, 0.5)), ms(quantile(lats, 0.99)),
		pct(int64(st.SentBytes), int64(received)), stalls, lost), nil
}

// livePublisher writes records into a pipe at the run's rate, record i at
// i × interval from its start (at once when behind).
type livePublisher struct {
	pr       *io.PipeReader
	pw       *io.PipeWriter
	record   int
	interval time.Duration
	written  atomic.Int64 // records written
	quit     chan struct{}
	once     sync.Once
	done     chan struct{} // closed when run returned
}

func newLivePublisher(c liveConfig) *livePublisher {
	pr, pw := io.Pipe()
	return &livePublisher{
		pr: pr, pw: pw, record: c.record,
		interval: time.Duration(float64(c.record*8) / (c.rateKbps * 1000) * float64(time.Second)),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

func (p *livePublisher) run() {
	defer close(p.done)
	defer p.pw.Close()
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := int64(0); ; i++ {
		t.Reset(time.Until(start.Add(time.Duration(i) * p.interval)))
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		if _, err := p.pw.Write(encodeLiveRecord(int(i), time.Now(), p.record)); err != nil {
			return // the POST ended; the caller sees why
		}
		p.written.Store(i + 1)
	}
}

// finish ends the writes and waits for run to return, which ends the
// pipe: the POST completes.
func (p *livePublisher) finish() {
	p.once.Do(func() { close(p.quit) })
	<-p.done
}

// abort is finish for a run that failed: it also unblocks a write that
// the POST does not take.
func (p *livePublisher) abort() {
	p.pr.CloseWithError(errors.New("cxbench: the run failed"))
	p.finish()
}

// encodeLiveRecord is encodeProbe with the CRC-32 (IEEE) of what comes
// before in its last bytes.
func encodeLiveRecord(idx int, sent time.Time, size int) []byte {
	b := encodeProbe(idx, sent, size)
	body := b[:size-crc32.Size]
	binary.BigEndian.PutUint32(b[len(body):], crc32.ChecksumIEEE(body))
	return b
}

// liveRecord is one record a viewer received.
type liveRecord struct {
	idx        int64
	sent, recv time.Time
}

// liveViewer reads one viewer's stream. Its fields are read once read
// returned, but count.
type liveViewer struct {
	recs  []liveRecord
	count atomic.Int64 // len(recs), for progress
	ended bool         // read to the stream's end
	err   error
}

// read scans the body for records until it ends, stamping each with the
// time the read that completed it returned.
func (v *liveViewer) read(body io.ReadCloser, size int) {
	defer body.Close()
	var sc liveScanner
	buf := make([]byte, 64<<10)
	for {
		n, err := body.Read(buf)
		now := time.Now()
		sc.scan(buf[:n], size, func(idx int, sent time.Time) {
			v.recs = append(v.recs, liveRecord{idx: int64(idx), sent: sent, recv: now})
			v.count.Add(1)
		})
		if errors.Is(err, io.EOF) {
			v.ended = true
			return
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				v.err = err
			}
			return
		}
	}
}

// gaps returns the stalls at v (gaps over liveStall between consecutive
// records) and the records it lacks between its first and the last of
// total.
func (v *liveViewer) gaps(total int64) (stalls int, lost int64) {
	if len(v.recs) == 0 {
		return 0, total
	}
	seen := make(map[int64]bool, len(v.recs))
	for i, r := range v.recs {
		seen[r.idx] = true
		if i > 0 && r.recv.Sub(v.recs[i-1].recv) > liveStall {
			stalls++
		}
	}
	for idx := v.recs[0].idx; idx < total; idx++ {
		if !seen[idx] {
			lost++
		}
	}
	return stalls, lost
}

// liveScanner finds whole records in a byte stream that may start
// mid-record or lose bytes: it looks for the probe magic and keeps what it
// finds there only if the record's CRC holds.
type liveScanner struct {
	buf []byte // bytes not yet part of a record
}

// scan adds b and calls got for each record of size bytes completed.
func (s *liveScanner) scan(b []byte, size int, got func(idx int, sent time.Time)) {
	s.buf = append(s.buf, b...)
	for {
		i := bytes.Index(s.buf, []byte(probeMagic))
		if i < 0 {
			// Keep what may be the start of a magic.
			s.buf = s.buf[max(0, len(s.buf)-len(probeMagic)+1):]
			break
		}
		s.buf = s.buf[i:]
		if len(s.buf) < size {
			break
		}
		rec := s.buf[:size]
		body := rec[:size-crc32.Size]
		if binary.BigEndian.Uint32(rec[len(body):]) != crc32.ChecksumIEEE(body) {
			s.buf = s.buf[1:] // a magic inside other bytes, or a record cut by a loss
			continue
		}
		idx, sent, _ := decodeProbe(rec)
		got(idx, sent)
		s.buf = s.buf[size:]
	}
	s.buf = append([]byte(nil), s.buf...) // let go of what was scanned
}
