package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
	"github.com/contextd/contextd/store"
)

// runRepl measures initial sync between two daemon processes over loopback
// QUIC. Before either starts, A's store holds --feeds feeds of --entries
// entries of --size bytes: A's own and feeds-1 authors generated here,
// whom A's own feed follows first (so that, with hops 1, A replicates
// them). B follows every one of them; the clock runs from B's connect call
// until B holds every feed's last entry.
func runRepl(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("repl", flag.ContinueOnError)
	feeds := fs.Int("feeds", 1, "feeds on A, each of --entries entries (A's own and feeds-1 others A follows)")
	entries := fs.Int("entries", 100000, "entries per feed")
	size := fs.Int("size", 200, "body bytes per entry")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *feeds < 1 || *entries < 1 || *size < 0 || *size > feed.MaxBodySize {
		return "", fmt.Errorf("need --feeds ≥ 1, --entries ≥ 1 and 0 ≤ --size ≤ %d", feed.MaxBodySize)
	}
	ps, cleanup, err := newProcs(ctx, "repl", *verbose)
	if err != nil {
		return "", err
	}
	defer cleanup()
	dir, bin, logw := ps.dir, ps.bin, ps.logw
	homeA, homeB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if _, err := daemon.Init(ctx, bin, homeA); err != nil {
		return "", err
	}
	if _, err := daemon.Init(ctx, bin, homeB); err != nil {
		return "", err
	}
	if *feeds == 1 {
		fmt.Fprintf(os.Stderr, "filling %d entries of %d bytes…\n", *entries, *size)
	} else {
		fmt.Fprintf(os.Stderr, "filling %d feeds of %d entries of %d bytes…\n", *feeds, *entries, *size)
	}
	filled, err := fill(homeA, *feeds, *entries, *size)
	if err != nil {
		return "", err
	}

	a, err := daemon.Start(ctx, bin, homeA, logw)
	if err != nil {
		return "", err
	}
	defer a.Stop()
	b, err := daemon.Start(ctx, bin, homeB, logw)
	if err != nil {
		return "", err
	}
	defer b.Stop()
	cl, err := b.Client(ctx)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	var own api.Head // B's own feed: its follows
	for _, id := range filled.ids {
		if own, err = cl.Follow(ctx, id); err != nil {
			return "", err
		}
	}

	start := time.Now()
	if err := cl.Connect(ctx, a.Addrs[0]); err != nil {
		return "", err
	}
	// B holds every feed to its head exactly when its progress counts its
	// own entries and all of A's: no feed can pass its head.
	if err := waitProgress(ctx, cl, int64(own.Seq)+filled.entries); err != nil {
		return "", err
	}
	secs := time.Since(start).Seconds()
	if err := checkHeads(ctx, cl, filled); err != nil {
		return "", err
	}
	verify, err := verifyRate(*size)
	if err != nil {
		return "", err
	}
	n, what := *entries, ""
	if *feeds > 1 {
		n = int(filled.entries)
		what = fmt.Sprintf("feeds=%d entries=%d total=%d", *feeds, *entries, n)
	} else {
		what = fmt.Sprintf("entries=%d", n)
	}
	return fmt.Sprintf("bench=repl %s size=%d secs=%.3f entries_per_s=%.0f MB_per_s=%.2f verify_1core_per_s=%.0f",
		what, *size, secs, float64(n)/secs, float64(filled.bytes)/secs/1e6, verify), nil
}

// replPollEvery is how often the bench asks B how far it is; it bounds the
// error of the measured time.
const replPollEvery = 10 * time.Millisecond

// waitProgress polls B's replication progress until it holds want
// entries, reporting on stderr every few seconds.
func waitProgress(ctx context.Context, cl *sdk.Client, want int64) error {
	tick := time.NewTicker(replPollEvery)
	defer tick.Stop()
	report := time.Now()
	for {
		p, err := cl.Progress(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %d entries: %w", want, err)
		}
		if p.Current >= want {
			return nil
		}
		if time.Since(report) >= 5*time.Second {
			fmt.Fprintf(os.Stderr, "B holds %d of %d entries…\n", p.Current, want)
			report = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// checkHeads checks that B holds every filled feed exactly to its head.
func checkHeads(ctx context.Context, cl *sdk.Client, want filled) error {
	fss, err := cl.Feeds(ctx)
	if err != nil {
		return err
	}
	local := make(map[feed.ID]uint64, len(fss))
	for _, f := range fss {
		local[f.ID] = f.Local
	}
	for i, id := range want.ids {
		if local[id] != want.feeds[i].Seq {
			return fmt.Errorf("B holds feed %s to seq %d, want %d", id.Short(), local[id], want.feeds[i].Seq)
		}
	}
	return nil
}

// verifyRate measures the baseline the sync rate is compared with: how many
// entries of size-byte bodies one core can check one by one (structure and
// ed25519 signature), as a replicator verifying every entry would.
func verifyRate(size int) (float64, error) {
	key, err := feed.GenerateKey(nil)
	if err != nil {
		return 0, err
	}
	const n = 20000
	es := make([]*feed.Entry, n)
	var head feed.Head
	for i := range es {
		if es[i], err = feed.Sign(key, head, "post", make([]byte, size), time.Now()); err != nil {
			return 0, err
		}
		head = es[i].Next()
	}
	start := time.Now()
	head = feed.Head{}
	for _, e := range es {
		if err := e.Validate(key.Public(), head); err != nil {
			return 0, err
		}
		head = e.Next()
	}
	return n / time.Since(start).Seconds(), nil
}

// filled is what fill wrote.
type filled struct {
	feeds   []feed.Head // each feed's last entry, the node's own first
	ids     []feed.ID   // the feeds' authors, in the same order
	entries int64       // over all feeds
	bytes   int64       // of all bodies
}

// fill writes the store of the (stopped) node in home: its own feed and
// feeds-1 feeds of new authors, each with n posts of size-byte bodies. The
// node's own feed first follows the new authors, so that they are in its
// replication scope with hops 1.
func fill(home string, feeds, n, size int) (filled, error) {
	var out filled
	key, err := node.LoadKey(home)
	if err != nil {
		return out, err
	}
	keys := []feed.PrivateKey{key}
	for range feeds - 1 {
		k, err := feed.GenerateKey(nil)
		if err != nil {
			return out, err
		}
		keys = append(keys, k)
	}
	st, err := store.OpenBadger(node.StoreDir(home), store.BadgerOptions{})
	if err != nil {
		return out, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyz "
	for i, k := range keys {
		w := &feedWriter{st: st, key: k}
		if i == 0 {
			for _, other := range keys[1:] {
				w.add(feed.TypeContact, feed.Contact{Target: other.Public(), Rel: feed.RelFollow}.Encode())
			}
		}
		for range n {
			body := make([]byte, size)
			for j := range body {
				body[j] = letters[rng.IntN(len(letters))]
			}
			w.add("post", body)
		}
		if err := w.flush(); err != nil {
			return out, errors.Join(err, st.Close())
		}
		out.ids = append(out.ids, k.Public())
		out.feeds = append(out.feeds, w.head)
		out.entries += int64(w.head.Seq)
		out.bytes += w.bytes
	}
	return out, st.Close()
}

// feedWriter signs entries of one feed and appends them in batches; the
// first error sticks and is returned by flush.
type feedWriter struct {
	st    *store.Badger
	key   feed.PrivateKey
	head  feed.Head
	batch []*feed.Entry
	bytes int64
	err   error
}

func (w *feedWriter) add(typ string, body []byte) {
	if w.err != nil {
		return
	}
	e, err := feed.Sign(w.key, w.head, typ, body, time.Now())
	if err != nil {
		w.err = err
		return
	}
	w.head = e.Next()
	w.bytes += int64(len(body))
	if w.batch = append(w.batch, e); len(w.batch) == store.MaxBatch {
		w.err = w.flush()
	}
}

func (w *feedWriter) flush() error {
	if w.err == nil && len(w.batch) > 0 {
		w.err = w.st.Append(w.batch)
		w.batch = w.batch[:0]
	}
	return w.err
}
