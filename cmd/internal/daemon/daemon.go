package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/sdk"
)

// Build compiles ./cmd/contextd of the module containing the working
// directory into dir and returns the binary's path.
func Build(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("daemon: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "contextd")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/contextd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("daemon: go build: %w\n%s", err, out)
	}
	return bin, nil
}

// Daemon is one running `contextd run` process.
type Daemon struct {
	Bin   string
	Home  string
	ID    feed.ID
	RPC   string   // host:port of its RPC API
	Addrs []string // its multiaddrs, each ending in /p2p/ID
	// Metrics is the host:port of its /metrics, if started with --metrics.
	Metrics string

	cmd      *exec.Cmd
	done     chan error // receives the process's exit
	stopOnce sync.Once
	stopErr  error
}

// Init runs `contextd init` in home and returns the new ID.
func Init(ctx context.Context, bin, home string) (feed.ID, error) {
	out, err := exec.CommandContext(ctx, bin, "init", "--home", home).Output()
	if err != nil {
		return feed.ID{}, fmt.Errorf("daemon: init %s: %w", home, stderrOf(err))
	}
	return feed.ParseID(strings.TrimSpace(string(out)))
}

// Start runs `contextd run` on 127.0.0.1 with ephemeral ports in home, with
// extra flags appended (e.g. --bootstrap ADDR), and waits until it reports
// its addresses. Its log goes to logw.
func Start(ctx context.Context, bin, home string, logw io.Writer, extra ...string) (*Daemon, error) {
	args := append([]string{"run", "--home", home,
		"--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--rpc", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logw
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("daemon: start: %w", err)
	}
	d := &Daemon{Bin: bin, Home: home, cmd: cmd, done: make(chan error, 1)}
	readyc := make(chan error, 1)
	ready := readyc
	go func() {
		// The banner is "key: value" lines ending with "ready". Keep
		// draining stdout afterwards so the process never blocks on it.
		sc := bufio.NewScanner(stdout)
		var err error
		for sc.Scan() && ready != nil {
			k, v, _ := strings.Cut(sc.Text(), ":")
			v = strings.TrimSpace(v)
			switch k {
			case "id":
				d.ID, err = feed.ParseID(v)
			case "rpc":
				d.RPC = v
			case "addr":
				d.Addrs = append(d.Addrs, v)
			case "metrics":
				d.Metrics = v
			case "ready":
				if d.RPC == "" || len(d.Addrs) == 0 {
					err = errors.New("daemon: banner lacks rpc or addr lines")
				}
			}
			if err != nil || k == "ready" {
				ready <- err
				ready = nil
			}
		}
		if ready != nil {
			ready <- errors.New("daemon: exited before reporting its addresses")
		}
		io.Copy(io.Discard, stdout)
		d.done <- cmd.Wait()
	}()
	select {
	case err := <-readyc:
		if err != nil {
			d.Kill()
			return nil, err
		}
	case <-ctx.Done():
		d.Kill()
		return nil, ctx.Err()
	}
	return d, nil
}

// Client connects the SDK to the daemon.
func (d *Daemon) Client(ctx context.Context) (*sdk.Client, error) {
	tok, err := node.ReadToken(d.Home)
	if err != nil {
		return nil, err
	}
	return sdk.Dial(ctx, d.RPC, tok)
}

// CLI runs a contextd subcommand against the daemon's home and returns its
// standard output; a non-zero exit returns an error carrying its stderr.
func (d *Daemon) CLI(ctx context.Context, args ...string) (string, error) {
	return RunCLI(ctx, d.Bin, d.Home, "", args...)
}

// RunCLI runs `bin args… --home home` with stdin as standard input.
func RunCLI(ctx context.Context, bin, home, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, append(args, "--home", home)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("contextd %s: %w", strings.Join(args, " "), stderrOf(err))
	}
	return string(out), nil
}

// Stop sends SIGTERM and waits for the process to exit; it reports an
// unclean exit. Later calls return the first call's result.
func (d *Daemon) Stop() error {
	d.stopOnce.Do(func() {
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			d.stopErr = err
			return
		}
		d.stopErr = <-d.done
	})
	return d.stopErr
}

// Kill ends the process at once.
func (d *Daemon) Kill() {
	d.cmd.Process.Kill()
}

// Crash kills the process with SIGKILL (kill -9: no shutdown, no flush)
// and waits until it has exited, so that its home can be run again. Later
// Stop calls return at once.
func (d *Daemon) Crash() {
	d.stopOnce.Do(func() {
		d.cmd.Process.Kill()
		<-d.done
		d.stopErr = errors.New("daemon: killed")
	})
}

// Pid returns the process ID.
func (d *Daemon) Pid() int {
	return d.cmd.Process.Pid
}

// PeakRSS returns the most memory the process has had resident so far.
func (d *Daemon) PeakRSS() (int64, error) {
	return ProcessPeakRSS(d.cmd.Process.Pid)
}

// ProcessPeakRSS returns the peak resident set size of process pid in
// bytes: VmHWM in /proc/PID/status.
func ProcessPeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("daemon: peak rss of %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		v, ok := strings.CutPrefix(line, "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(v) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("daemon: peak rss of %d: %w", pid, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("daemon: peak rss of %d: no VmHWM line in /proc status", pid)
}

// stderrOf folds an exec.ExitError's stderr into the error.
func stderrOf(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// CPU returns the CPU time (user and system) the process has used so far.
func (d *Daemon) CPU() (time.Duration, error) {
	return ProcessCPU(d.cmd.Process.Pid)
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

// ProcessCPU returns the CPU time (user and system) process pid has used so
// far, from /proc/PID/stat, to 1/100 s.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("daemon: cpu time of %d: %w", pid, err)
	}
	// The command name, in parentheses, may hold spaces; the fields after
	// it are space-separated: utime and stime are the 12th and 13th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("daemon: cpu time of %d: short /proc stat line", pid)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("daemon: cpu time of %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
