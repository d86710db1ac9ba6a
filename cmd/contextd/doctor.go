package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/tokens"
)

// doctor's defaults.
const (
	doctorTimeout = 5 * time.Second // a dial of the daemon or of a bootstrap peer
)

func (c *cli) doctorCmd() *cobra.Command {
	d := &doctor{}
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the home, the store, the listeners and the bootstrap peers; say what is wrong and how to fix it",
		Long: `Check this node without changing anything, one line per check: "ok", "skip"
(it cannot be checked now, and why) or "problem" (what is wrong; fix: how to fix it).

  home       the home directory and the files in it are private to their owner
  key        the node's key reads
  config     config.json parses and has the version this build reads
  daemon     whether the daemon of this home is running
  store      the store, opened read-only: every feed's hash chain and signatures,
             heads, fork proofs, the context index, object records, and a random
             sample of each object's chunks (--chunks) against the object's root.
             The daemon holds the store while it runs: stop it to check the store
  rpc        the API address can be listened on (or the daemon serves it)
  listen     each peer address can be listened on (or the daemon listens there)
  bootstrap  each configured bootstrap peer answers a dial within --timeout

Exits 1 if any check found a problem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d.home, d.out = c.home, cmd.OutOrStdout()
			if err := d.run(cmd.Context()); err != nil {
				return err
			}
			if d.problems > 0 {
				return fmt.Errorf("doctor: problems found: %d", d.problems)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&d.chunks, "chunks", store.DefaultChunkSample, "chunks of each object to check against its root, picked at random (-1: all)")
	cmd.Flags().DurationVar(&d.timeout, "timeout", doctorTimeout, "how long a dial of the daemon or of a bootstrap peer may take")
	return cmd
}

// doctor runs the checks of `contextd doctor` and prints a line for each.
type doctor struct {
	home     string
	out      io.Writer
	chunks   int
	timeout  time.Duration
	problems int
}

// line prints one check's line; detail's line breaks (libp2p's errors
// have them) become spaces.
func (d *doctor) line(status, check, detail string) {
	fmt.Fprintf(d.out, "%-7s  %s: %s\n", status, check, strings.Join(strings.Fields(detail), " "))
}

func (d *doctor) ok(check, format string, args ...any) {
	d.line("ok", check, fmt.Sprintf(format, args...))
}

func (d *doctor) skip(check, why string) { d.line("skip", check, why) }

func (d *doctor) problem(check, what, fix string) {
	d.problems++
	d.line("problem", check, what+"; fix: "+fix)
}

// run runs every check. It returns an error only when it could not go on
// (ctx done).
func (d *doctor) run(ctx context.Context) error {
	if !d.checkHome() {
		return nil
	}
	self := d.checkKey()
	fc, cfgOK := d.checkConfig()
	info, rpcAddr := d.checkDaemon(ctx)
	if err := d.checkStore(ctx, info != nil, self); err != nil {
		return err
	}
	if cfgOK {
		d.checkListeners(info, rpcAddr, fc)
		d.checkBootstrap(ctx, fc)
	} else {
		d.skip("listeners", "config.json does not read (above)")
	}
	return ctx.Err()
}

// secrets names what the files of a home hold that others must not read,
// by path relative to the home.
var secrets = map[string]string{
	"key":           "this node's private key",
	"rpc.token":     "the API's admin token",
	tokens.FileName: "the app tokens (hashed)",
	"contexts":      "the private keys of the contexts this node created",
}

// checkHome checks that the home exists and that it and every file in it
// (but the store, checked below) are private to their owner. It reports
// false if there is no home to check further.
func (d *doctor) checkHome() bool {
	fi, err := os.Stat(d.home)
	if errors.Is(err, fs.ErrNotExist) {
		d.problem("home", d.home+" does not exist", "contextd init --home "+d.home)
		return false
	}
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		d.problem("home", fmt.Sprintf("%s: %v", d.home, err), "point --home (or $CONTEXTD_HOME) at the node's home directory")
		return false
	}
	open := 0
	storeDir := node.StoreDir(d.home)
	err = filepath.WalkDir(d.home, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == storeDir {
			return filepath.SkipDir
		}
		fi, err := e.Info()
		if err != nil || fi.Mode().Perm()&0o077 == 0 || fi.Mode()&fs.ModeSymlink != 0 {
			return err
		}
		open++
		rel, _ := filepath.Rel(d.home, path)
		what := secrets[strings.SplitN(rel, string(filepath.Separator), 2)[0]]
		if what == "" {
			what = "what only this node should read or change"
		}
		mode, fix := "0700", "chmod 700 "+path
		if !e.IsDir() {
			mode, fix = "0600", "chmod 600 "+path
		}
		d.problem("home", fmt.Sprintf("%s is mode %04o, not %s: other users can get at %s", path, fi.Mode().Perm(), mode, what), fix)
		return nil
	})
	if err != nil {
		d.problem("home", fmt.Sprintf("read %s: %v", d.home, err), "make the home readable by the user the daemon runs as")
	} else if open == 0 {
		d.ok("home", "%s and its files are private to their owner", d.home)
	}
	return true
}

// checkKey reads the node's key and returns its ID (zero if it does not
// read).
func (d *doctor) checkKey() feed.ID {
	id, err := node.ReadID(d.home)
	switch {
	case errors.Is(err, node.ErrNoHome):
		d.problem("key", err.Error(), "contextd init --home "+d.home)
	case err != nil:
		d.problem("key", err.Error(), "restore "+filepath.Join(d.home, "key")+" from a backup (without it the node is a new identity)")
	default:
		d.ok("key", "node ID %s", id)
	}
	return id
}

// checkConfig reads config.json.
func (d *doctor) checkConfig() (node.FileConfig, bool) {
	path := filepath.Join(d.home, "config.json")
	fc, err := node.LoadFileConfig(d.home)
	if err != nil {
		d.problem("config", err.Error(), "correct "+path+", or move it away (`contextd init` writes a default one)")
		return fc, false
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		d.ok("config", "no %s: the defaults apply", path)
	} else {
		d.ok("config", "%s: version %d", path, fc.Version)
	}
	return fc, true
}

// checkDaemon finds out whether the daemon of this home runs, and returns
// its info and API address if it does.
func (d *doctor) checkDaemon(ctx context.Context) (*api.NodeInfo, string) {
	addr, err := node.ReadRPCAddr(d.home)
	if err != nil {
		d.ok("daemon", "not running")
		return nil, ""
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		d.ok("daemon", "not running (rpc.addr is left from a daemon that stopped without removing it)")
		return nil, ""
	}
	conn.Close()
	info, err := d.daemonInfo(ctx, addr)
	if err != nil {
		d.problem("daemon", fmt.Sprintf("something listens on %s (from rpc.addr) but does not answer as this home's daemon: %v", addr, err),
			"stop the process listening there, or the daemon of this home if its rpc.token changed, and start it again")
		return nil, ""
	}
	d.ok("daemon", "running, version %s", info.Version)
	return &info, addr
}

func (d *doctor) daemonInfo(ctx context.Context, addr string) (api.NodeInfo, error) {
	tok, err := node.ReadToken(d.home)
	if err != nil {
		return api.NodeInfo{}, err
	}
	cl, err := sdk.Dial(ctx, addr, tok)
	if err != nil {
		return api.NodeInfo{}, err
	}
	defer cl.Close()
	return cl.Info(ctx)
}

// checkStore verifies the store read-only; it needs the daemon stopped.
// Fixes name the commands that delete one damaged feed or object, but not
// for self, the node's own feed (zero if the key does not read), which is
// never forgotten.
func (d *doctor) checkStore(ctx context.Context, running bool, self feed.ID) error {
	dir := node.StoreDir(d.home)
	refetch := "back up " + dir + ", move it away and start the daemon: it fetches feeds and objects again from its peers (its own feed too, from peers that follow it)"
	r, err := store.Verify(ctx, dir, store.VerifyOptions{ChunkSample: d.chunks})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, fs.ErrNotExist):
		d.ok("store", "none yet (the first `contextd run` creates it)")
		return nil
	case errors.Is(err, store.ErrInUse) && running:
		d.skip("store", "the running daemon holds it; stop the daemon (Ctrl-C or SIGTERM) and run `contextd doctor` again to verify the store")
		return nil
	case errors.Is(err, store.ErrInUse):
		d.problem("store", "another process has "+dir+" open", "stop it (a daemon of this home started by another user, or a tool using the store)")
		return nil
	case errors.Is(err, store.ErrUnclean):
		d.problem("store", dir+" was not closed cleanly (the daemon was killed or the machine stopped)",
			"run `contextd run --home "+d.home+"` once and stop it with Ctrl-C (opening the store replays its log), then run doctor again")
		return nil
	case errors.Is(err, store.ErrSchema):
		d.problem("store", err.Error(), "run the contextd version that wrote it")
		return nil
	case err != nil:
		d.problem("store", err.Error(), refetch)
		return nil
	}
	if r.OK() {
		d.ok("store", "%s verifies: feeds=%d entries=%d pruned_feeds=%d fork_proofs=%d context_messages=%d objects=%d chunks_checked=%d",
			dir, r.Feeds, r.Entries, r.Pruned, r.ForkProofs, r.CtxRefs, r.Objects, r.Chunks)
		return nil
	}
	for _, p := range r.Problems {
		fix := refetch
		switch {
		case p.Kind == store.ProblemChunk:
			fix = fmt.Sprintf("with the daemon running, `contextd object rm --force %s`, then `contextd get %s` to fetch it again; or %s", p.Object, p.Object, refetch)
		case (p.Kind == store.ProblemEntry || p.Kind == store.ProblemHead || p.Kind == store.ProblemForkProof) && p.Feed != self:
			fix = fmt.Sprintf("with the daemon running, `contextd unfollow --forget %s`, then `contextd follow %s` to fetch the feed again; or %s", p.Feed, p.Feed, refetch)
		}
		d.problem("store", p.String(), fix)
	}
	if r.Omitted > 0 {
		d.problem("store", fmt.Sprintf("%d more problems (not listed)", r.Omitted), refetch)
	}
	return nil
}

// checkListeners checks that the daemon could listen where the config
// says, or that it does (info and rpcAddr: the running daemon's).
func (d *doctor) checkListeners(info *api.NodeInfo, rpcAddr string, fc node.FileConfig) {
	if info != nil {
		d.ok("rpc", "the daemon serves the API on %s", rpcAddr)
		d.ok("listen", "the daemon listens on %s", strings.Join(info.Addrs, " "))
		return
	}
	rpcAddr = cmp.Or(fc.RPC, node.DefaultRPC)
	if ln, err := net.Listen("tcp", rpcAddr); err != nil {
		d.problem("rpc", err.Error(), `stop what listens there (ss -ltnp names it), or set another "rpc" address in config.json (or run --rpc)`)
	} else {
		ln.Close()
		d.ok("rpc", "%s: free to listen on", rpcAddr)
	}
	listen := fc.Listen
	if len(listen) == 0 {
		listen = []string{node.DefaultListen}
	}
	for _, a := range listen {
		h, err := libp2p.New(libp2p.NoTransports, libp2p.Transport(quic.NewTransport), libp2p.ListenAddrStrings(a),
			libp2p.DisableRelay(), libp2p.DisableMetrics())
		if err != nil {
			d.problem("listen", fmt.Sprintf("%s: %v", a, err), `stop what listens there, or change "listen" in config.json (or run --listen): a QUIC address such as `+node.DefaultListen)
			continue
		}
		h.Close()
		d.ok("listen", "%s: free to listen on", a)
	}
}

// checkBootstrap dials each configured bootstrap peer from a throwaway
// identity, all at once, each within d.timeout.
func (d *doctor) checkBootstrap(ctx context.Context, fc node.FileConfig) {
	if len(fc.Bootstrap) == 0 {
		d.ok("bootstrap", "none configured (objects are found through linked peers only)")
		return
	}
	h, err := libp2p.New(libp2p.NoTransports, libp2p.Transport(quic.NewTransport), libp2p.NoListenAddrs,
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		d.problem("bootstrap", "start a libp2p host to dial from: "+err.Error(), "see the error")
		return
	}
	defer h.Close()
	errs := make([]error, len(fc.Bootstrap))
	took := make([]time.Duration, len(fc.Bootstrap))
	var wg sync.WaitGroup
	for i, a := range fc.Bootstrap {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			errs[i] = fmt.Errorf("not a peer address (want a multiaddr ending in /p2p/<id>): %w", err)
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, d.timeout)
			defer cancel()
			start := time.Now()
			errs[i] = h.Connect(ctx, *ai)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, a := range fc.Bootstrap {
		if errs[i] != nil {
			d.problem("bootstrap", fmt.Sprintf("%s: %v", a, errs[i]), `check that the peer runs and the address (with its /p2p/ ID) is right, or remove it from "bootstrap" in config.json`)
			continue
		}
		d.ok("bootstrap", "%s: reachable (%v)", a, took[i].Round(time.Millisecond))
	}
}
