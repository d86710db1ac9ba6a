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
		Long: `Stream FILE (- for standard input) to the daemon, which stores it as an object, pins it
and announces it in the DHT; print its CID. The daemon never reads FILE itself: the bytes
travel over its RPC listener, so the daemon may run as another user or on another machine.
A progress bar is drawn on standard error when it is a terminal.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, size, err := openInput(cmd, args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				bar := newTransferBar(cmd.ErrOrStderr())
				r, err := cl.PutObject(ctx, &barReader{r: in, bar: bar, total: size})
				bar.finish()
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
named CID in the current directory; - for standard output). The bytes stream from the
daemon over its RPC listener into a temporary file next to FILE, renamed to FILE once
complete. A progress bar is drawn on standard error when it is a terminal. The last line
printed is "wrote FILE (N bytes)" (on standard error with -o -).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				out = args[0]
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				bar := newTransferBar(cmd.ErrOrStderr())
				defer bar.finish()
				var total int64 = -1
				fetched := func(done, size int64) {
					total = size
					bar.show("fetching", done, size)
				}
				get := func(w io.Writer) (int64, error) {
					return cl.GetObject(ctx, args[0], &barWriter{w: w, bar: bar, total: &total}, fetched)
				}
				if out == "-" {
					n, err := get(cmd.OutOrStdout())
					if err != nil {
						return err
					}
					bar.finish()
					fmt.Fprintf(cmd.ErrOrStderr(), "wrote standard output (%d bytes)\n", n)
					return nil
				}
				path, n, err := writeOutput(out, get)
				if err != nil {
					return err
				}
				bar.finish()
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", path, n)
				return nil
			})
		},
	}
	get.Flags().StringVarP(&out, "output", "o", "", "file to write the object to (- for standard output)")

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

// openInput opens put's FILE, - for standard input, and returns its size
// (-1 if unknown).
func openInput(cmd *cobra.Command, name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return f, -1, nil
	}
	return f, fi.Size(), nil
}

// writeOutput runs get on a temporary file next to name, then renames it
// to name; it returns name made absolute and the bytes written.
func writeOutput(name string, get func(io.Writer) (int64, error)) (string, int64, error) {
	path, err := filepath.Abs(name)
	if err != nil {
		return "", 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return "", 0, err
	}
	n, err := get(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", 0, err
	}
	return path, n, nil
}

// transferBar draws put's and get's progress on a terminal and nothing
// elsewhere: one bar per stage (get fetches, then writes).
type transferBar struct {
	w     io.Writer // nil: not a terminal
	stage string
	bar   *progressbar.ProgressBar
}

func newTransferBar(w io.Writer) *transferBar {
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return &transferBar{w: w}
		}
	}
	return &transferBar{}
}

// show sets the bar of stage to done of total bytes (total -1: unknown);
// a new stage finishes the bar of the last one.
func (b *transferBar) show(stage string, done, total int64) {
	if b.w == nil {
		return
	}
	if b.bar == nil || b.stage != stage {
		b.finish()
		b.stage = stage
		b.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(stage),
			progressbar.OptionSetWidth(30),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	b.bar.Set64(done)
}

// finish leaves the terminal on a new line.
func (b *transferBar) finish() {
	if b.bar != nil {
		b.bar.Exit()
		fmt.Fprintln(b.w)
		b.bar = nil
	}
}

// barReader shows the bytes read through it as put's "sending" stage.
type barReader struct {
	r     io.Reader
	bar   *transferBar
	done  int64
	total int64
}

func (r *barReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.done += int64(n)
	r.bar.show("sending", r.done, r.total)
	return n, err
}

// barWriter shows the bytes written through it as get's "writing" stage,
// of *total (known once the fetch reported it).
type barWriter struct {
	w     io.Writer
	bar   *transferBar
	done  int64
	total *int64
}

func (w *barWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.done += int64(n)
	w.bar.show("writing", w.done, *w.total)
	return n, err
}
