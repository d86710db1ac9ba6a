package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/sdk"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "contextd:", err)
		os.Exit(1)
	}
}

// cli holds the flags every command shares.
type cli struct {
	home string
}

func newRoot() *cobra.Command {
	c := &cli{}
	root := &cobra.Command{
		Use:           "contextd",
		Short:         "contextd: peer-to-peer feeds for chat, social and streaming apps",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&c.home, "home", defaultHome(), "home directory (key, config, store); $CONTEXTD_HOME")
	root.AddCommand(
		c.initCmd(), c.idCmd(), c.runCmd(),
		c.addrsCmd(), c.connectCmd(), c.statusCmd(), c.syncCmd(),
		c.publishCmd(), c.feedCmd(), c.hashCmd(), c.doctorCmd(),
	)
	root.AddCommand(c.pingCmd())
	root.AddCommand(c.contactCmds()...)
	root.AddCommand(c.objectCmds()...)
	root.AddCommand(c.objectCmd())
	root.AddCommand(c.ctxCmd())
	root.AddCommand(c.streamCmd())
	root.AddCommand(c.tokenCmd(), c.uiCmd())
	return root
}

// defaultHome is $CONTEXTD_HOME, else ~/.contextd.
func defaultHome() string {
	if h := os.Getenv("CONTEXTD_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".contextd")
	}
	return ".contextd"
}

// client connects to the daemon running in c.home.
func (c *cli) client(ctx context.Context) (*sdk.Client, error) {
	addr, err := node.ReadRPCAddr(c.home)
	if err != nil {
		return nil, err
	}
	tok, err := node.ReadToken(c.home)
	if err != nil {
		return nil, err
	}
	cl, err := sdk.Dial(ctx, addr, tok)
	if err != nil {
		return nil, fmt.Errorf("reach the daemon at %s (is `contextd run --home %s` running?): %w", addr, c.home, err)
	}
	return cl, nil
}

// withClient runs f with a client of the running daemon.
func (c *cli) withClient(cmd *cobra.Command, f func(ctx context.Context, cl *sdk.Client) error) error {
	ctx := cmd.Context()
	cl, err := c.client(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	return f(ctx, cl)
}

// parseID parses a command-line feed ID with a message naming the argument.
func parseID(s string) (feed.ID, error) {
	id, err := feed.ParseID(s)
	if err != nil {
		return id, errors.New("not a contextd ID (want a 12D3KooW… key): " + s)
	}
	return id, nil
}

func (c *cli) initCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the home directory, key and config; print the ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := node.Init(c.home)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
}

func (c *cli) idCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print this node's ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := node.ReadID(c.home)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
}
