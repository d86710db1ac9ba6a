package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// objectCmds are put, get, pin, unpin and objects: thin calls of the SDK's
// object methods.
func (c *cli) objectCmds() []*cobra.Command {
	put := &cobra.Command{
		Use:   "put FILE",
		Short: "Store a file as an object, pin it, announce it in the DHT; print its CID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				r, err := cl.ObjectPut(ctx, path)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), r.CID)
				return nil
			})
		},
	}

	var out string
	get := &cobra.Command{
		Use:   "get CID [-o FILE]",
		Short: "Fetch an object from the peers that provide it and write it to FILE (default: ./CID)",
		Long: `Fetch an object from this node's store, else from the peers the DHT (and the node's
linked peers) say provide it, verifying every chunk, and write it to FILE (default: a file
named CID in the current directory). A progress bar is drawn on standard error when it is a
terminal. The last line printed is "wrote FILE (N bytes)".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = args[0]
			}
			path, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				bar := newGetBar(cmd.ErrOrStderr())
				r, err := cl.ObjectGet(ctx, args[0], path, bar.update)
				bar.finish()
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", r.Path, r.Size)
				return nil
			})
		},
	}
	get.Flags().StringVarP(&out, "output", "o", "", "file to write the object to")

	pin := &cobra.Command{
		Use:   "pin CID",
		Short: "Keep an object from eviction and announce it in the DHT",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				return cl.ObjectPin(ctx, args[0])
			})
		},
	}
	unpin := &cobra.Command{
		Use:   "unpin CID",
		Short: "Let an object be evicted again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				return cl.ObjectUnpin(ctx, args[0])
			})
		},
	}
	objects := &cobra.Command{
		Use:   "objects",
		Short: "List the objects this node holds: CID, size, chunks held/total, pinned, leased or cached",
		Long: `List the objects this node holds, one per line:

  CID SIZE HELD/CHUNKS STATE [leases=N until=TIME]

STATE is "pinned" (pinned here), "leased" (a valid lease entry in a feed this node holds
keeps it) or "cached" (evicted least recently used first when the cache is over
cache_bytes). leases= counts the valid leases, this node's own included, and until= is
the latest end among them (RFC 3339, UTC).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				objs, err := cl.ObjectList(ctx)
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				for _, o := range objs {
					fmt.Fprintln(w, objectLine(o))
				}
				return nil
			})
		},
	}
	return []*cobra.Command{put, get, pin, unpin, objects}
}

// objectLine is one line of the objects command.
func objectLine(o api.Object) string {
	state := "cached"
	switch {
	case o.Pinned:
		state = "pinned"
	case o.Leases > 0:
		state = "leased"
	}
	line := fmt.Sprintf("%s %d %d/%d %s", o.CID, o.Size, o.Held, o.Chunks, state)
	if o.Leases > 0 {
		line += fmt.Sprintf(" leases=%d until=%s", o.Leases, o.LeasedUntil.UTC().Format(time.RFC3339))
	}
	return line
}

// getBar draws get's progress bar on a terminal and nothing elsewhere.
type getBar struct {
	w   io.Writer // nil: not a terminal
	bar *progressbar.ProgressBar
}

func newGetBar(w io.Writer) *getBar {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return &getBar{w: w}
		}
	}
	return &getBar{}
}

// update is the progress callback: called from the SDK's reader.
func (b *getBar) update(done, total int64) {
	if b.w == nil {
		return
	}
	if b.bar == nil {
		b.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription("fetching"),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
		)
	}
	b.bar.Set64(done)
}

// finish leaves the terminal on a new line.
func (b *getBar) finish() {
	if b.bar != nil {
		b.bar.Exit()
		fmt.Fprintln(b.w)
	}
}
