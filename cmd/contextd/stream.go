package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// streamCmd groups the live stream commands: thin calls of the SDK's
// stream methods.
func (c *cli) streamCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stream",
		Short: "Live streams: open one, publish a pipe to it, watch it from any linked node, close it",
		Long: `A live stream is a sequence of bytes that the node which opened it signs as it goes and
that every node watching it verifies and relays to the nodes linked to it. It is named by
an ID like a feed's, made fresh by "stream open". Watchers start at the live edge (or at a
chunk index still held) and get the bytes within about 20 ms of their writing plus the
network's delay.`,
	}
	cmd.AddCommand(c.streamOpenCmd(), c.streamPublishCmd(), c.streamWatchCmd(), c.streamCloseCmd())
	return cmd
}

func (c *cli) streamOpenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "open",
		Short: "Open a new live stream that this node publishes; print its ID",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				id, err := cl.OpenStream(ctx)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			})
		},
	}
}

func (c *cli) streamPublishCmd() *cobra.Command {
	var keepOpen bool
	cmd := &cobra.Command{
		Use:   "publish [ID] [--keep-open] < FILE",
		Short: "Stream standard input to a live stream (a new one, its ID on standard error, if none given)",
		Long: `Stream standard input to the live stream ID, as it comes, until its end; then close
the stream, unless --keep-open. Without ID, open a new stream first and print its ID on
standard error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id feed.ID
			if len(args) == 1 {
				var err error
				if id, err = parseArg("stream ID", args[0]); err != nil {
					return err
				}
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				if id.IsZero() {
					var err error
					if id, err = cl.OpenStream(ctx); err != nil {
						return err
					}
					fmt.Fprintln(cmd.ErrOrStderr(), id)
				}
				if err := cl.PublishStream(ctx, id, cmd.InOrStdin()); err != nil {
					return err
				}
				if keepOpen {
					return nil
				}
				return cl.CloseStream(ctx, id)
			})
		},
	}
	cmd.Flags().BoolVar(&keepOpen, "keep-open", false, "leave the stream open at the end of the input")
	return cmd
}

func (c *cli) streamWatchCmd() *cobra.Command {
	var from int64
	cmd := &cobra.Command{
		Use:   "watch ID [--from N]",
		Short: "Write a live stream's verified bytes to standard output until it ends",
		Long: `Write the bytes of the live stream ID to standard output as this node verifies them,
from the live edge (or from chunk index N with --from, if a node still holds it), until
the publisher closes the stream. The node finds the stream through the peers it is linked
to. Interrupting it is a normal end.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withStream(cmd, args[0], func(ctx context.Context, cl *sdk.Client, id feed.ID) error {
				body, err := cl.WatchStream(ctx, id, from)
				if err != nil {
					return err
				}
				defer body.Close()
				if _, err := io.Copy(cmd.OutOrStdout(), body); err != nil && ctx.Err() == nil {
					return err
				}
				return nil
			})
		},
	}
	cmd.Flags().Int64Var(&from, "from", api.StreamLiveEdge, "chunk index to start at (default: the live edge)")
	return cmd
}

func (c *cli) streamCloseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "close ID",
		Short: "Close a live stream this node publishes: its watchers get the rest, then the end",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withStream(cmd, args[0], func(ctx context.Context, cl *sdk.Client, id feed.ID) error {
				return cl.CloseStream(ctx, id)
			})
		},
	}
}

// withStream runs f with the stream ID arg and a client of the daemon.
func (c *cli) withStream(cmd *cobra.Command, arg string, f func(ctx context.Context, cl *sdk.Client, id feed.ID) error) error {
	id, err := parseArg("stream ID", arg)
	if err != nil {
		return err
	}
	return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error { return f(ctx, cl, id) })
}
