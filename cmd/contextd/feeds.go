package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

func (c *cli) publishCmd() *cobra.Command {
	var typ string
	cmd := &cobra.Command{
		Use:   "publish [--type T] TEXT|-",
		Short: "Append an entry to this node's feed; prints its seq and ID",
		Long:  "Append an entry to this node's feed. The body is TEXT, or standard input when TEXT is -.\nPrints the new entry's seq and ID.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := []byte(args[0])
			if args[0] == "-" {
				// Read one byte past the limit so an oversized body is
				// reported as such instead of silently cut.
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), feed.MaxBodySize+1))
				if err != nil {
					return fmt.Errorf("read standard input: %w", err)
				}
				body = b
			}
			if len(body) > feed.MaxBodySize {
				return fmt.Errorf("body is %d bytes; an entry's body holds at most %d", len(body), feed.MaxBodySize)
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				h, err := cl.Publish(ctx, typ, body)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n", h.Seq, h.ID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&typ, "type", api.DefaultType, "entry type: 1-32 bytes of a-z 0-9 . _ -")
	return cmd
}

func (c *cli) feedCmd() *cobra.Command {
	var (
		since  uint64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "feed ID [--since N] [--json]",
		Short: "Print a feed's entries, one per line",
		Long: `Print the entries of feed ID with seq > N that this node holds, one per line:
seq, entry ID, type, timestamp, body. With --json, one JSON object per line with seq, id,
author, prev, timestamp, type, body (base64) and text (the body, when it is UTF-8).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				for {
					es, err := cl.Get(ctx, id, since, api.MaxGetLimit)
					if err != nil {
						return err
					}
					if len(es) == 0 {
						return nil
					}
					for _, e := range es {
						if asJSON {
							if err := enc.Encode(e); err != nil {
								return err
							}
						} else {
							fmt.Fprintf(out, "%d\t%s\t%s\t%s\t%s\n", e.Seq, e.ID, e.Type,
								time.UnixMilli(e.Timestamp).UTC().Format(time.RFC3339), showBody(e))
						}
						since = e.Seq
					}
				}
			})
		},
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "print entries with seq greater than N")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

// showBody renders a body on one line: contact entries as what they say,
// text as text (quoted when it has control characters), anything else as
// its size.
func showBody(e api.Entry) string {
	if e.Type == feed.TypeContact {
		if ct, err := feed.DecodeContact(e.Body); err == nil {
			return ct.Rel.String() + " " + ct.Target.String()
		}
	}
	if !utf8.Valid(e.Body) {
		return fmt.Sprintf("(%d bytes binary)", len(e.Body))
	}
	s := string(e.Body)
	if q := strconv.Quote(s); len(q) != len(s)+2 {
		return q
	}
	return s
}
