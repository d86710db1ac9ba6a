package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

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
no port mapping, no relays.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			return c.runDaemon(cmd.Context(), listen, bootstrap, rpcAddr, log)
		},
	}
	cmd.Flags().StringArrayVar(&listen, "listen", nil, "libp2p multiaddr to listen on (repeatable)")
	cmd.Flags().StringArrayVar(&bootstrap, "bootstrap", nil, "DHT peer to join through, a multiaddr ending in /p2p/<id> (repeatable; default from config.json)")
	cmd.Flags().StringVar(&rpcAddr, "rpc", "", "host:port of the JSON-RPC API")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// runDaemon runs a node and its RPC API until ctx is done. Shutdown order:
// the RPC listener first, then the node (links, replication, store).
func (c *cli) runDaemon(ctx context.Context, listen, bootstrap []string, rpcAddr string, log *slog.Logger) error {
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
	n, err := node.New(node.Config{Home: c.home, Listen: listen, Bootstrap: bootstrap, Hops: fc.Hops, CacheBytes: fc.CacheBytes, Logger: log})
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(ctx) }()

	fmt.Printf("contextd %s running\nid:   %s\nrpc:  %s\nhome: %s\n", node.Version, id, ln.Addr(), c.home)
	for _, a := range n.Info().Addrs {
		fmt.Printf("addr: %s\n", a)
	}
	fmt.Println("ready")
	rpcErr := rpc.Serve(ctx, ln, rpc.New(rpc.Config{Node: n, Token: token, Tokens: appTokens, Pages: ui.Handler(), Logger: log}))
	cancel()
	nodeErr := <-nodeDone
	return errors.Join(rpcErr, nodeErr, n.Close())
}
