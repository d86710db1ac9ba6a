package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/tokens"
	"github.com/contextd/contextd/ui"
)

func (c *cli) runCmd() *cobra.Command {
	var (
		listen    []string
		bootstrap []string
		rpcAddr   string
		pprofAddr string
		metrics   string
		public    bool
		logLevel  string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground (creates the home on first run)",
		Long: `Run the daemon in the foreground until SIGINT or SIGTERM.

Peers reach it over QUIC at --listen (default from config.json, else ` + node.DefaultListen + `);
apps and the CLI reach its JSON-RPC API at --rpc (default ` + node.DefaultRPC + `), whose
actual address is written to HOME/rpc.addr. The daemon contacts no one by itself but the DHT
peers given with --bootstrap (or config.json "bootstrap"): no public bootstrap nodes, no mDNS,
no port mapping, no relays.

--metrics HOST:PORT serves Prometheus metrics at /metrics and --pprof HOST:PORT Go's
profiles at /debug/pprof/, each on a listener of its own; both are off by default, have no
authentication and take loopback addresses only (--metrics-public lets --metrics take any).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if metrics != "" {
				if err := checkLocalAddr("metrics", metrics, public); err != nil {
					return err
				}
			}
			if pprofAddr != "" {
				if err := checkLocalAddr("pprof", pprofAddr, false); err != nil {
					return err
				}
				stop, err := servePprof(pprofAddr, log)
				if err != nil {
					return err
				}
				defer stop()
			}
			return c.runDaemon(cmd.Context(), listen, bootstrap, rpcAddr, metrics, log)
		},
	}
	cmd.Flags().StringArrayVar(&listen, "listen", nil, "libp2p multiaddr to listen on (repeatable)")
	cmd.Flags().StringArrayVar(&bootstrap, "bootstrap", nil, "DHT peer to join through, a multiaddr ending in /p2p/<id> (repeatable; default from config.json)")
	cmd.Flags().StringVar(&rpcAddr, "rpc", "", "host:port of the JSON-RPC API")
	cmd.Flags().StringVar(&pprofAddr, "pprof", "", "host:port to serve Go's profiles on (/debug/pprof/; off by default; loopback only: no authentication)")
	cmd.Flags().StringVar(&metrics, "metrics", "", "host:port to serve Prometheus metrics on (/metrics; off by default; loopback only unless --metrics-public)")
	cmd.Flags().BoolVar(&public, "metrics-public", false, "allow --metrics on an address other than loopback (anyone who reaches it reads the metrics)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// servePprof serves net/http/pprof's handlers on a listener of their own
// at addr until stop is called.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	bound, stop, err := serveHTTP("pprof", addr, mux, log)
	if err != nil {
		return nil, err
	}
	log.Info("serving profiles", "addr", "http://"+bound.String()+"/debug/pprof/")
	return stop, nil
}

// serveHTTP serves h on a listener of its own at addr until stop is
// called, and returns the address bound; flag names the option in errors.
func serveHTTP(flag, addr string, h http.Handler, log *slog.Logger) (bound net.Addr, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--%s: listen on %s: %w", flag, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(flag+" server", "err", err)
		}
	}()
	return ln.Addr(), func() { srv.Close() }, nil
}

// checkLocalAddr refuses an address for the listener of --flag whose host
// is not loopback (an empty host is every interface) unless public is set:
// /metrics and /debug/pprof have no authentication. Only --metrics can be
// made public (--metrics-public); profiles show the daemon's memory.
func checkLocalAddr(flag, addr string, public bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: want host:port, e.g. 127.0.0.1:9464: %w", flag, addr, err)
	}
	if ip := net.ParseIP(host); public || host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	if flag != "metrics" {
		return fmt.Errorf("--%s %s: not a loopback address, and it has no authentication: use 127.0.0.1 or ::1", flag, addr)
	}
	return fmt.Errorf("--metrics %s: not a loopback address, and /metrics has no authentication: "+
		"use 127.0.0.1 or ::1 (scrape through a tunnel or a proxy), or add --metrics-public to serve it there anyway", addr)
}

// serveMetrics serves the metrics gathered by g at /metrics on a listener
// of its own at addr until stop is called; it returns the address bound.
func serveMetrics(addr string, g prometheus.Gatherer, log *slog.Logger) (bound net.Addr, stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}))
	return serveHTTP("metrics", addr, mux, log)
}

// runDaemon runs a node and its RPC API until ctx is done. Shutdown order:
// the RPC listener first, then the node (links, replication, store).
func (c *cli) runDaemon(ctx context.Context, listen, bootstrap []string, rpcAddr, metricsAddr string, log *slog.Logger) error {
	id, err := node.Init(c.home)
	if err != nil {
		return err
	}
	fc, err := node.LoadFileConfig(c.home)
	if err != nil {
		return err
	}
	if len(listen) == 0 {
		listen = fc.Listen
	}
	if len(bootstrap) == 0 {
		bootstrap = fc.Bootstrap
	}
	if rpcAddr == "" {
		rpcAddr = fc.RPC
	}
	if rpcAddr == "" {
		rpcAddr = node.DefaultRPC
	}
	token, err := node.Token(c.home)
	if err != nil {
		return err
	}
	appTokens, err := tokens.Open(filepath.Join(c.home, tokens.FileName))
	if err != nil {
		return err
	}
	n, err := node.New(node.Config{Home: c.home, Listen: listen, Bootstrap: bootstrap, Hops: fc.Hops, CacheBytes: fc.CacheBytes, ObjectDirs: fc.ObjectDirs, Limits: fc.Limits, Storage: fc.Storage, Flit: fc.Flit.Link(), Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", rpcAddr)
	if err != nil {
		n.Close()
		return fmt.Errorf("rpc listen on %s: %w", rpcAddr, err)
	}
	if err := node.WriteRPCAddr(c.home, ln.Addr().String()); err != nil {
		ln.Close()
		n.Close()
		return err
	}
	defer node.RemoveRPCAddr(c.home)
	var metricsBound net.Addr
	if metricsAddr != "" {
		var stop func()
		if metricsBound, stop, err = serveMetrics(metricsAddr, n.Metrics(), log); err != nil {
			ln.Close()
			n.Close()
			return err
		}
		defer stop()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if os.Getenv("GOMEMLIMIT") == "" { // the user's limit wins
		go boundHeapHeadroom(ctx)
	}
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(ctx) }()

	fmt.Printf("contextd %s running\nid:   %s\nrpc:  %s\nhome: %s\n", node.Version, id, ln.Addr(), c.home)
	for _, a := range n.Info().Addrs {
		fmt.Printf("addr: %s\n", a)
	}
	if metricsBound != nil {
		fmt.Printf("metrics: %s\n", metricsBound)
	}
	fmt.Println("ready")
	rpcErr := rpc.Serve(ctx, ln, rpc.New(rpc.Config{Node: n, Token: token, Tokens: appTokens, Pages: ui.Handler(), Logger: log,
		MaxConns: fc.Limits.RPCConns, MaxConnsPerAddr: fc.Limits.RPCConnsPerAddr, AuthPolicy: fc.Limits.Policy(),
		Metrics: rpc.NewMetrics(n.Metrics())}))
	cancel()
	nodeErr := <-nodeDone
	return errors.Join(rpcErr, nodeErr, n.Close())
}

// heapHeadroom is how far the Go heap may grow past what the last
// collection found live, at least: Go's default (GOGC=100) lets a heap
// double, so a daemon whose heap holds ~50 MiB (Badger's memtables and
// compactions, mostly) carried tens of MiB more of garbage in its resident
// memory while it streamed an object. Heaps over four times that keep a
// quarter of their live size as headroom (as GOGC=25 would), so that a
// large heap is not collected ever more often.
const heapHeadroom = 16 << 20

// boundHeapHeadroom keeps Go's soft memory limit at the runtime's memory
// outside the heap, plus the live heap, plus max(heapHeadroom, live/4),
// refreshed every 100 ms until ctx ends; GOGC still applies below it.
// Measured moving a 1 GiB object through a fresh daemon: its VmRSS peak
// grew by 46 to 51 MiB instead of about 90, for 0.6 to 1.2 s of GC CPU
// instead of 0.4 (GOGC=25 alone: 52 to 63 MiB for 1.6 s).
func boundHeapHeadroom(ctx context.Context) {
	s := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	defer debug.SetMemoryLimit(math.MaxInt64)
	for {
		metrics.Read(s)
		v := func(i int) int64 { return int64(s[i].Value.Uint64()) }
		outside := v(0) - v(1) - v(2) - v(3) - v(4)
		debug.SetMemoryLimit(outside + v(5) + max(heapHeadroom, v(5)/4))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
