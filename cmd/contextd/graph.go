package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// contactCmds builds follow, unfollow, block and unblock: each publishes a
// contact entry in this node's feed.
func (c *cli) contactCmds() []*cobra.Command {
	type call func(*sdk.Client, context.Context, feed.ID) (api.Head, error)
	specs := []struct {
		use, short string
		do         call
	}{
		{"follow", "Follow a feed: replicate it (and, with hops 2, whom it follows)", (*sdk.Client).Follow},
		{"block", "Block a key: never replicate its feed, never give it ours, drop its sessions", (*sdk.Client).Block},
		{"unblock", "Lift a block", (*sdk.Client).Unblock},
	}
	var cmds []*cobra.Command
	for _, s := range specs {
		cmds = append(cmds, &cobra.Command{
			Use:   s.use + " ID",
			Short: s.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := parseID(args[0])
				if err != nil {
					return err
				}
				return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
					h, err := s.do(cl, ctx, id)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s (contact entry %d %s)\n", s.use, id, h.Seq, h.ID)
					return nil
				})
			},
		})
	}
	return append(cmds, c.unfollowCmd())
}

// unfollowCmd builds unfollow: a contact entry of relation none, and with
// --forget the deletion of the feed's stored entries.
func (c *cli) unfollowCmd() *cobra.Command {
	var forget bool
	cmd := &cobra.Command{
		Use:   "unfollow ID [--forget]",
		Short: "Stop following a feed; with --forget also delete what this node stores of it",
		Long: `Stop following a feed: publish a contact entry of relation none about it.

With --forget, also delete every entry this node stores of the feed, with its head and the
indexes built from it (contacts, context messages, leases, peers' replication clocks). A
block is kept (no entry is written), and so is a feed the node still replicates for another
reason: one that a followed feed follows (hops 2), or an author or key of a joined context;
then nothing is deleted, the command says why and exits with an error. The node's own feed
and the feeds of contexts it created are never forgotten.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				out := cmd.OutOrStdout()
				if !forget {
					h, err := cl.Unfollow(ctx, id)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "unfollow %s (contact entry %d %s)\n", id, h.Seq, h.ID)
					return nil
				}
				r, err := cl.Forget(ctx, id)
				if err != nil {
					return err
				}
				if r.Seq > 0 {
					fmt.Fprintf(out, "unfollow %s (contact entry %d %s)\n", id, r.Seq, r.ID)
				}
				if !r.Forgotten {
					return fmt.Errorf("%s not forgotten: %s", id, r.Kept)
				}
				fmt.Fprintf(out, "forgot %s (%s deleted)\n", id, byteSize(r.FreedBytes))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&forget, "forget", false, "also delete what this node stores of the feed")
	return cmd
}
