package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

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
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "id\t%s\n", st.Node.ID)
	fmt.Fprintf(w, "version\t%s\n", st.Node.Version)
	fmt.Fprintf(w, "peers\t%d\n", len(st.Peers))
	ebt := map[string]api.EBTPeer{}
	for _, p := range st.EBTPeers {
		ebt[p.ID.String()] = p
	}
	for _, p := range st.Peers {
		e := ebt[p.ID.String()]
		fmt.Fprintf(w, "  %s\t%s\tstate=%s rx=%d tx=%d received=%d sent=%d invalid=%d\n", p.ID, p.Addr, e.State, e.Rx, e.Tx, e.Received, e.Sent, e.Invalid)
	}
	fmt.Fprintf(w, "follows\t%d\nblocks\t%d\n", len(st.Graph.Follows), len(st.Graph.Blocks))
	fmt.Fprintf(w, "feeds\tlocal / best known\n")
	for _, f := range st.Feeds {
		note := ""
		if f.ID == st.Node.ID {
			note = " (self)"
		}
		if f.Forked {
			note += " FORKED: frozen at seq " + fmt.Sprint(f.ForkSeq)
		}
		fmt.Fprintf(w, "  %s\t%d / %d%s\n", f.ID, f.Local, f.Best, note)
	}
	p := st.Progress
	pct := 100.0
	if p.Target > p.Start {
		pct = 100 * float64(p.Current-p.Start) / float64(p.Target-p.Start)
	}
	fmt.Fprintf(w, "progress\t%d / %d entries (%.0f%% of this session's sync)\n", p.Current, p.Target, pct)
}
