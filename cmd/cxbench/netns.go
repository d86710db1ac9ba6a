package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Workloads that need network namespaces (root) run in a namespace of
// their own: the parent builds the daemon (newProcs), then starts this
// executable again under `unshare -n` in a role (quicRoleEnv), with the
// workload's flags and the scratch directory in the environment; the child
// sets up its network, runs the daemons and prints the lines the parent
// returns. The namespace goes when the child exits.
const (
	nsArgsEnv = "CXBENCH_NS_ARGS" // the workload's flags, JSON
	nsDirEnv  = "CXBENCH_NS_DIR"  // the scratch directory, with the daemon built in it
)

// runInNamespace runs this executable in role under `unshare -n` with
// args and the scratch directory of ps, its stderr to ours, and returns
// the lines it printed.
func runInNamespace(ctx context.Context, role string, args []string, ps *procs) ([]string, error) {
	enc, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "unshare", "-n", "--", exe)
	cmd.Env = append(os.Environ(), quicRoleEnv+"="+role, nsArgsEnv+"="+string(enc), nsDirEnv+"="+ps.dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: namespace child: %w", role, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// namespaceChild returns, in the child, the flags and the scratch space
// runInNamespace passed; the daemons' logs are discarded unless the caller
// sets ps.logw.
func namespaceChild() (args []string, ps *procs, err error) {
	if err := json.Unmarshal([]byte(os.Getenv(nsArgsEnv)), &args); err != nil {
		return nil, nil, fmt.Errorf("flags from the parent: %w", err)
	}
	dir := os.Getenv(nsDirEnv)
	return args, &procs{dir: dir, bin: filepath.Join(dir, "contextd"), logw: io.Discard}, nil
}

// sh runs a command and reports its output if it fails.
func sh(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
