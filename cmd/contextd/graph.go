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
		{"unfollow", "Stop following a feed", (*sdk.Client).Unfollow},
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
	return cmds
}
