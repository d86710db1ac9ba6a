package main

import (
	"context"
	"io"
	"os"

	"github.com/contextd/contextd/cmd/internal/daemon"
)

// procs is the scratch space of a workload that runs daemon processes: a
// temporary directory, the contextd binary built into it, and where the
// daemons' logs go.
type procs struct {
	dir  string
	bin  string
	logw io.Writer // os.Stderr with -v, else discarded
}

// newProcs makes the scratch directory and builds the daemon; cleanup
// removes the directory.
func newProcs(ctx context.Context, name string, verbose bool) (p *procs, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "cxbench-"+name+"-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	p = &procs{dir: dir, logw: io.Discard}
	if verbose {
		p.logw = os.Stderr
	}
	if p.bin, err = daemon.Build(ctx, dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	return p, cleanup, nil
}
