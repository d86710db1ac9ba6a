package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

func (c *cli) pingCmd() *cobra.Command {
	var (
		count    int
		size     int
		interval time.Duration
		summary  bool
	)
	cmd := &cobra.Command{
		Use:   "ping PEER",
		Short: "Measure round trips to a peer on a control-class circuit (node.ping)",
		Long: `Sends --count pings of --size bytes to PEER (its ID), one every --interval, on a
control-class circuit of the link to it (the class chat and session control use, which
bulk transfers never hold up in the node), and prints each round trip, then
min/avg/p50/p99/max over the replies. The daemon dials PEER if it has no link to it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			peer, err := parseID(args[0])
			if err != nil {
				return err
			}
			ms := interval.Milliseconds()
			if ms < api.MinPingInterval || ms > api.MaxPingInterval || interval%time.Millisecond != 0 {
				return fmt.Errorf("ping: --interval %v: want whole milliseconds from %dms to %dms", interval, api.MinPingInterval, api.MaxPingInterval)
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				r, err := cl.Ping(ctx, api.PingParams{Peer: peer, Size: size, Count: count, IntervalMs: int(ms), Summary: summary})
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				for i, us := range r.RTTsUs {
					if us < 0 {
						fmt.Fprintf(out, "seq=%d no reply\n", i)
						continue
					}
					fmt.Fprintf(out, "seq=%d size=%d rtt=%.3f ms\n", i, r.Size, float64(us)/1e3)
				}
				fmt.Fprintf(out, "%s: %d sent, %d received", r.Peer, r.Sent, r.Received)
				if r.Received > 0 {
					fmt.Fprintf(out, ", rtt min/avg/p50/p99/max = %.3f/%.3f/%.3f/%.3f/%.3f ms",
						float64(r.MinUs)/1e3, float64(r.AvgUs)/1e3, float64(r.P50Us)/1e3, float64(r.P99Us)/1e3, float64(r.MaxUs)/1e3)
				}
				fmt.Fprintln(out)
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&count, "count", api.DefaultPingCount, fmt.Sprintf("pings to send (1 to %d)", api.MaxPingCount))
	cmd.Flags().IntVar(&size, "size", api.DefaultPingSize, fmt.Sprintf("bytes per ping (1 to %d)", api.MaxPingSize))
	cmd.Flags().DurationVar(&interval, "interval", api.DefaultPingInterval*time.Millisecond, "time between pings")
	cmd.Flags().BoolVar(&summary, "summary", false, "print the summary line only")
	return cmd
}
