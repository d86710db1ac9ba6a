package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
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
	Storage  api.Storage      `json:"storage"`
}

func (c *cli) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show peers, followed feeds (local and best-known seq) and replication progress",
		Long: `Show this node's replication state.

progress: entries held / entries held or claimed by any peer, over the feeds replicated.

peers: one row per connected peer. STATE is the replication session's: "handshake" until
the peer's first notes arrive, then "replicating". FEEDS is how many feeds the session
shares; FROM IT how many the peer is this node's source for (it sends us their entries);
TO IT how many this node sends it. RECEIVED, SENT and INVALID count entries in this session.

feeds: one row per feed held or followed, this node's own first. LOCAL is the seq held,
BEST KNOWN the highest seq a connected peer has said it holds; STATE says why the feed is
here (self, followed, blocked, or not followed: within hops or followed before) and whether
it is in sync, behind, or frozen by a fork proof. BYTES is what the node stores of it, and
"from N" that retention pruned the entries before seq N.

storage: the bytes of the store's main database (feeds, indexes, object records) and of its
blobs database (object chunks), as Badger counts them (about once a minute); the quotas per
feed and per context; per joined context the bytes of its messages (all authors', and other
authors' as the quota and retention count them) and its retention setting.

With --json, one object with node, peers, ebt_peers, graph, feeds, progress and storage as
the RPC methods return them.`,
		Args: cobra.NoArgs,
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
	if st.Progress, err = cl.Progress(ctx); err != nil {
		return st, err
	}
	st.Storage, err = cl.Storage(ctx)
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
	inSync := "in sync"
	if p.Current < p.Target {
		inSync = fmt.Sprintf("%d behind", p.Target-p.Current)
	}
	fmt.Fprintf(out, "progress: %d / %d entries, %s (%.0f%% of this session's sync)\n", p.Current, p.Target, inSync, pct)

	fmt.Fprintf(out, "\npeers (%d):\n", len(st.Peers))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if len(st.Peers) > 0 {
		fmt.Fprintln(w, "  ID\tADDRESS\tSTATE\tFEEDS\tFROM IT\tTO IT\tRECEIVED\tSENT\tINVALID")
	}
	ebt := map[feed.ID]api.EBTPeer{}
	for _, e := range st.EBTPeers {
		ebt[e.ID] = e
	}
	for _, p := range st.Peers {
		e, ok := ebt[p.ID]
		if !ok {
			// Linked, but no replication session (yet).
			fmt.Fprintf(w, "  %s\t%s\t%s\t-\t-\t-\t-\t-\t-\n", p.ID, p.Addr, orDash(p.State))
			continue
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n",
			p.ID, p.Addr, e.State, e.Feeds, e.Rx, e.Tx, e.Received, e.Sent, e.Invalid)
	}
	w.Flush()

	fmt.Fprintf(out, "\nfeeds (%d):\n", len(st.Feeds))
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  ID\tLOCAL\tBEST KNOWN\tBYTES\tSTATE")
	for _, f := range st.Feeds {
		state := feedState(f, st.Node.ID, st.Graph)
		if f.From > 1 {
			state += fmt.Sprintf(", from %d", f.From)
		}
		fmt.Fprintf(w, "  %s\t%d\t%d\t%s\t%s\n", f.ID, f.Local, f.Best, byteSize(f.Bytes), state)
	}
	w.Flush()
	printStorage(out, st.Storage)
}

// printStorage prints the storage section of status.
func printStorage(out io.Writer, s api.Storage) {
	quota := func(n int64) string {
		if n == 0 {
			return "none"
		}
		return byteSize(n)
	}
	fmt.Fprintf(out, "\nstorage:  main %s, blobs %s; quotas: %s per feed, %s per context\n",
		byteSize(s.Main), byteSize(s.Blobs), quota(s.FeedQuota), quota(s.ContextQuota))
	if len(s.Contexts) == 0 {
		return
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  CONTEXT\tBYTES\tOTHERS\tRETENTION")
	for _, c := range s.Contexts {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", c.ID, byteSize(c.Bytes), byteSize(c.OthersBytes), retention(c))
	}
	w.Flush()
}

// retention describes a context's retention setting.
func retention(c api.ContextStorage) string {
	var parts []string
	if c.RetentionDays > 0 {
		parts = append(parts, fmt.Sprintf("%d days", c.RetentionDays))
	}
	if c.RetentionBytes > 0 {
		parts = append(parts, byteSize(c.RetentionBytes))
	}
	if len(parts) == 0 {
		return "keep all"
	}
	return "newest " + strings.Join(parts, " or ")
}

// feedState says in a few words why the node has a feed and how far.
func feedState(f api.FeedStatus, self feed.ID, g api.Graph) string {
	var why string
	switch {
	case f.ID == self:
		return "self"
	case slices.Contains(g.Blocks, f.ID):
		why = "blocked"
	case slices.Contains(g.Follows, f.ID):
		why = "followed"
	default:
		why = "not followed" // within hops, or followed before
	}
	switch {
	case f.Forked:
		return fmt.Sprintf("%s, FORKED: frozen at seq %d", why, f.ForkSeq)
	case f.Local < f.Best:
		return fmt.Sprintf("%s, %d behind", why, f.Best-f.Local)
	}
	return why + ", in sync"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
