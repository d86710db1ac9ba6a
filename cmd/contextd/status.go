package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

func (c *cli) addrsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "addrs",
		Short: "Print the running daemon's full multiaddrs (with /p2p/ID)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				info, err := cl.Info(ctx)
				if err != nil {
					return err
				}
				for _, a := range info.Addrs {
					fmt.Fprintln(cmd.OutOrStdout(), a)
				}
				return nil
			})
		},
	}
}

func (c *cli) connectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "connect MULTIADDR",
		Short: "Connect to a peer (a multiaddr ending in /p2p/ID) and replicate with it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				if err := cl.Connect(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "connected", args[0])
				return nil
			})
		},
	}
}

// status is what `contextd status --json` prints.
type status struct {
	Node     api.NodeInfo     `json:"node"`
	Peers    []api.Peer       `json:"peers"`
	EBTPeers []api.EBTPeer    `json:"ebt_peers"`
	Graph    api.Graph        `json:"graph"`
	Feeds    []api.FeedStatus `json:"feeds"`
	Progress api.Progress     `json:"progress"`
}

func (c *cli) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show peers, followed feeds (local and best-known seq) and replication progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				st, err := getStatus(ctx, cl)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(st)
				}
				printStatus(cmd, st)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return cmd
}

func getStatus(ctx context.Context, cl *sdk.Client) (st status, err error) {
	if st.Node, err = cl.Info(ctx); err != nil {
		return st, err
	}
	if st.Peers, err = cl.Peers(ctx); err != nil {
		return st, err
	}
	if st.EBTPeers, err = cl.EBTPeers(ctx); err != nil {
		return st, err
	}
	if st.Graph, err = cl.Graph(ctx); err != nil {
		return st, err
	}
	if st.Feeds, err = cl.Feeds(ctx); err != nil {
		return st, err
	}
	st.Progress, err = cl.Progress(ctx)
	return st, err
}

func printStatus(cmd *cobra.Command, st status) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "id:       %s\nversion:  %s\n", st.Node.ID, st.Node.Version)
	fmt.Fprintf(out, "graph:    %d follows, %d blocks\n", len(st.Graph.Follows), len(st.Graph.Blocks))
	p := st.Progress
	pct := 100.0
	if p.Target > p.Start {
		pct = 100 * float64(p.Current-p.Start) / float64(p.Target-p.Start)
	}
	fmt.Fprintf(out, "progress: %d / %d entries (%.0f%% of this session's sync)\n", p.Current, p.Target, pct)

	fmt.Fprintf(out, "\npeers (%d):\n", len(st.Peers))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(st.Peers) > 0 {
		fmt.Fprintln(w, "  ID\tADDRESS\tSTATE\tRX\tTX\tRECEIVED\tSENT\tINVALID")
	}
	ebt := map[feed.ID]api.EBTPeer{}
	for _, e := range st.EBTPeers {
		ebt[e.ID] = e
	}
	for _, p := range st.Peers {
		e := ebt[p.ID]
		fmt.Fprintf(w, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", p.ID, p.Addr, e.State, e.Rx, e.Tx, e.Received, e.Sent, e.Invalid)
	}
	w.Flush()

	fmt.Fprintf(out, "\nfeeds (%d):\n", len(st.Feeds))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  ID\tLOCAL\tBEST KNOWN\t")
	for _, f := range st.Feeds {
		note := ""
		if f.ID == st.Node.ID {
			note = "self"
		}
		if f.Forked {
			note += fmt.Sprintf(" FORKED: frozen at seq %d", f.ForkSeq)
		}
		fmt.Fprintf(w, "  %s\t%d\t%d\t%s\n", f.ID, f.Local, f.Best, note)
	}
	w.Flush()
}
