package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/sdk"
)

// objectCmd builds `object`, the group of object commands that manage the
// store: `object rm`.
func (c *cli) objectCmd() *cobra.Command {
	var force bool
	rm := &cobra.Command{
		Use:   "rm CID [--force]",
		Short: "Delete an object's chunks, tree hashes and record from this node",
		Long: `Delete what this node holds of an object: its chunks, tree hashes and record. The
leases on it stay (they are entries of their authors' feeds). A pinned object is refused
unless --force, which unpins it first (ending this node's lease on it); an object being put
or fetched is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				r, err := cl.ObjectRemove(ctx, args[0], force)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s (%s deleted)\n", args[0], byteSize(r.FreedBytes))
				return nil
			})
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "unpin a pinned object first")
	obj := &cobra.Command{
		Use:   "object",
		Short: "Manage the objects this node stores (rm)",
		Args:  cobra.NoArgs,
	}
	obj.AddCommand(rm)
	return obj
}

// byteSize formats n bytes for people: B, KiB, MiB or GiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if v < unit {
			break
		}
		v, suffix = v/unit, s
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}
