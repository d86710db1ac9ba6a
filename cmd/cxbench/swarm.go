package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/contextd/contextd/cmd/internal/daemon"
	"github.com/contextd/contextd/sdk"
)

// runSwarm measures an object fetch between daemon processes over loopback
// QUIC: --seeders seeder daemons hold a random object of --bytes bytes (the
// first puts it, the others get it from the swarm first), then one more
// daemon gets it. Every daemon bootstraps via a DHT node D, through which
// they find each other as providers. Once the fetcher's DHT lists every
// seeder, the clock runs over its get into the store (find, probe, fetch,
// verify, store: secs and MB_per_s), then over a second get that writes
// the object it now holds to a file (out_secs: read back, streamed over
// the RPC listener as `contextd get` does, written with fsync); the file must hash like the input. Each timed phase starts after
// a sync(2), so that neither pays for writing back what came before it.
// cpu_secs is the CPU time the seeders and the fetcher used during the get.
// --unmanaged turns the daemons' bulk controller off, for an A/B of what
// it costs on an unshaped loopback.
func runSwarm(ctx context.Context, args []string) (string, error) {
	fs := flag.NewFlagSet("swarm", flag.ContinueOnError)
	size := fs.Int64("bytes", 64<<20, "object size in bytes")
	seeders := fs.Int("seeders", 1, "seeder daemons holding the object before the timed get")
	verbose := fs.Bool("v", false, "show the daemons' logs")
	unmanaged := fs.Bool("unmanaged", false, "turn every daemon's bulk controller off (config flit.unmanaged)")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if *size < 1 || *seeders < 1 {
		return "", fmt.Errorf("need --bytes ≥ 1 and --seeders ≥ 1")
	}
	ps, cleanup, err := newProcs(ctx, "swarm", *verbose)
	if err != nil {
		return "", err
	}
	defer cleanup()
	dir, bin, logw := ps.dir, ps.bin, ps.logw

	in := filepath.Join(dir, "in.bin")
	want, err := writeRandom(in, *size)
	if err != nil {
		return "", err
	}
	start := func(name string, extra ...string) (*daemon.Daemon, error) {
		home := filepath.Join(dir, name)
		if _, err := daemon.Init(ctx, bin, home); err != nil {
			return nil, err
		}
		if *unmanaged {
			if err := setFlit(home, true, 0); err != nil {
				return nil, err
			}
		}
		return daemon.Start(ctx, bin, home, logw, extra...)
	}

	d, err := start("d")
	if err != nil {
		return "", err
	}
	defer d.Stop()
	first, err := start("s0", "--bootstrap", d.Addrs[0])
	if err != nil {
		return "", err
	}
	defer first.Stop()
	daemons := []*daemon.Daemon{first} // the seeders, then the fetcher
	cl, err := first.Client(ctx)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	fmt.Fprintf(os.Stderr, "seeder 0 puts %d bytes…\n", *size)
	inf, err := os.Open(in)
	if err != nil {
		return "", err
	}
	put, err := cl.PutObject(ctx, inf)
	inf.Close()
	if err != nil {
		return "", fmt.Errorf("seeder 0: put: %w", err)
	}
	for i := 1; i < *seeders; i++ {
		s, err := start(fmt.Sprintf("s%d", i), "--bootstrap", d.Addrs[0])
		if err != nil {
			return "", err
		}
		defer s.Stop()
		daemons = append(daemons, s)
		scl, err := s.Client(ctx)
		if err != nil {
			return "", err
		}
		defer scl.Close()
		fmt.Fprintf(os.Stderr, "seeder %d gets it…\n", i)
		if err := waitProviders(ctx, scl, put.CID, i); err != nil {
			return "", fmt.Errorf("seeder %d: %w", i, err)
		}
		if _, err := scl.ObjectGet(ctx, put.CID, "", nil); err != nil {
			return "", fmt.Errorf("seeder %d: get: %w", i, err)
		}
	}

	f, err := start("fetcher", "--bootstrap", d.Addrs[0])
	if err != nil {
		return "", err
	}
	defer f.Stop()
	daemons = append(daemons, f)
	fcl, err := f.Client(ctx)
	if err != nil {
		return "", err
	}
	defer fcl.Close()
	if err := waitProviders(ctx, fcl, put.CID, *seeders); err != nil {
		return "", fmt.Errorf("fetcher: %w", err)
	}
	fmt.Fprintf(os.Stderr, "fetcher gets it from %d seeders…\n", *seeders)
	// Each timed phase starts with the disk quiet: the kernel writing back
	// what the setup (or the phase before) left dirty would otherwise run
	// in whichever phase comes next.
	syscall.Sync()
	cpu0, err := cpuOf(daemons)
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	if _, err := fcl.ObjectGet(ctx, put.CID, "", nil); err != nil {
		return "", fmt.Errorf("fetcher: get: %w", err)
	}
	secs := time.Since(t0).Seconds()
	cpu1, err := cpuOf(daemons)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "out.bin")
	syscall.Sync()
	t1 := time.Now()
	outf, err := os.Create(out)
	if err != nil {
		return "", err
	}
	_, err = fcl.GetObject(ctx, put.CID, outf, nil)
	if err == nil {
		err = outf.Sync()
	}
	if cerr := outf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("fetcher: get -o: %w", err)
	}
	outSecs := time.Since(t1).Seconds()
	got, err := hashFile(out)
	if err != nil {
		return "", err
	}
	if got != want {
		return "", fmt.Errorf("fetcher's copy differs from the input (sha256 %x, want %x)", got, want)
	}
	return fmt.Sprintf("bench=swarm bytes=%d seeders=%d secs=%.3f MB_per_s=%.2f cpu_secs=%.2f out_secs=%.3f",
		*size, *seeders, secs, float64(*size)/secs/1e6, (cpu1 - cpu0).Seconds(), outSecs), nil
}

// cpuOf returns the CPU time the daemons have used so far, together.
func cpuOf(ds []*daemon.Daemon) (time.Duration, error) {
	var sum time.Duration
	for _, d := range ds {
		t, err := d.CPU()
		if err != nil {
			return 0, err
		}
		sum += t
	}
	return sum, nil
}

// waitProviders waits until cl's DHT lists at least n providers of id.
func waitProviders(ctx context.Context, cl *sdk.Client, id string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ps, err := cl.ObjectProviders(ctx, id)
		if err == nil && len(ps) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d providers of %s after 30s, want %d (last error: %v)", len(ps), id, n, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeRandom writes n random bytes to path and returns their SHA-256.
func writeRandom(path string, n int64) ([32]byte, error) {
	f, err := os.Create(path)
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, n); err != nil {
		f.Close()
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), f.Close()
}

// hashFile returns the SHA-256 of a file.
func hashFile(path string) ([32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}
