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
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/store"
)

// runRepl measures initial sync between two daemon processes over loopback
// QUIC: A's feed holds N entries of B bytes before either starts; the clock
// runs from B's connect call until B has entry N.
func runRepl(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("repl", flag.ContinueOnError)
	entries := fs.Int("entries", 100000, "entries in the feed")
	size := fs.Int("size", 200, "body bytes per entry")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *entries < 1 || *size < 0 || *size > feed.MaxBodySize {
		return "", fmt.Errorf("need --entries ≥ 1 and 0 ≤ --size ≤ %d", feed.MaxBodySize)
	}
	dir, err := os.MkdirTemp("", "cxbench-repl-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	logw := io.Discard
	if *verbose {
		logw = os.Stderr
	}

	bin, err := daemon.Build(ctx, dir)
	if err != nil {
		return "", err
	}
	homeA, homeB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	idA, err := daemon.Init(ctx, bin, homeA)
	if err != nil {
		return "", err
	}
	if _, err := daemon.Init(ctx, bin, homeB); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "filling %d entries of %d bytes…\n", *entries, *size)
	if err := fill(homeA, *entries, *size); err != nil {
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
	if _, err := cl.Follow(ctx, idA); err != nil {
		return "", err
	}
	sub, err := cl.Subscribe(ctx, idA, uint64(*entries-1))
	if err != nil {
		return "", err
	}
	defer sub.Close()

	start := time.Now()
	if err := cl.Connect(ctx, a.Addrs[0]); err != nil {
		return "", err
	}
	e, err := sub.Next(ctx)
	if err != nil {
		return "", fmt.Errorf("waiting for entry %d: %w", *entries, err)
	}
	secs := time.Since(start).Seconds()
	if e.Seq != uint64(*entries) {
		return "", fmt.Errorf("subscription delivered seq %d, want %d", e.Seq, *entries)
	}
	verify, err := verifyRate(*size)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("bench=repl entries=%d size=%d secs=%.3f entries_per_s=%.0f MB_per_s=%.2f verify_1core_per_s=%.0f",
		*entries, *size, secs, float64(*entries)/secs, float64(*entries)*float64(*size)/secs/1e6, verify), nil
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

// fill appends n signed entries of size-byte bodies to the feed of the
// (stopped) node in home, writing its store directly.
func fill(home string, n, size int) error {
	key, err := node.LoadKey(home)
	if err != nil {
		return err
	}
	st, err := store.OpenBadger(node.StoreDir(home), store.BadgerOptions{})
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyz "
	var head feed.Head
	batch := make([]*feed.Entry, 0, store.MaxBatch)
	for i := range n {
		body := make([]byte, size)
		for j := range body {
			body[j] = letters[rng.IntN(len(letters))]
		}
		e, err := feed.Sign(key, head, "post", body, time.Now())
		if err != nil {
			return errors.Join(err, st.Close())
		}
		head = e.Next()
		batch = append(batch, e)
		if len(batch) == cap(batch) || i == n-1 {
			if err := st.Append(batch); err != nil {
				return errors.Join(err, st.Close())
			}
			batch = batch[:0]
		}
	}
	return st.Close()
}
