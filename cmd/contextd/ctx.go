package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// ctxCmd is `contextd ctx …`: thin calls of the SDK's context methods.
func (c *cli) ctxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ctx",
		Short: "Contexts: rooms and streams named by a key (create, join, publish, tail, …)",
	}
	cmd.AddCommand(
		c.ctxCreateCmd(), c.ctxJoinCmd(), c.ctxLeaveCmd(), c.ctxListCmd(), c.ctxMembersCmd(),
		c.ctxPublishCmd(), c.ctxSendCmd(), c.ctxHistoryCmd(), c.ctxTailCmd(),
		c.ctxBanCmd("ban", "Ban AUTHOR from a context this node created", (*sdk.Client).BanContext),
		c.ctxBanCmd("unban", "Lift a ban", (*sdk.Client).UnbanContext),
	)
	return cmd
}

// parseArg parses the command-line ID of argument what ("context ID",
// "author").
func parseArg(what, s string) (feed.ID, error) {
	id, err := parseID(s)
	if err != nil {
		return id, fmt.Errorf("%s: %w", what, err)
	}
	return id, nil
}

// ctxRun is the body of a command whose first argument is a context ID.
type ctxRun func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, args []string) error

// ctxIDCmd builds a command of nargs arguments, the first a context ID,
// that runs run with a client of the daemon.
func (c *cli) ctxIDCmd(use, short string, nargs int, run ctxRun) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseArg("context ID", args[0])
			if err != nil {
				return err
			}
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				return run(ctx, cl, id, cmd, args)
			})
		},
	}
}

func (c *cli) ctxCreateCmd() *cobra.Command {
	var p api.ContextCreateParams
	cmd := &cobra.Command{
		Use:   "create NAME [--description D] [--wide]",
		Short: "Create a context (this node keeps its key) and join it; print its ID",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p.Name = args[0]
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				r, err := cl.CreateContextWith(ctx, p)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), r.ID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&p.Description, "description", "", "what the context is about")
	cmd.Flags().BoolVar(&p.Wide, "wide", false, "for a large audience (a broadcast, a stream): gossip on a wide mesh, fewer hops, more copies")
	return cmd
}

// printContext prints one context: ID, messages held, owner/joined
// flags, name.
func printContext(w io.Writer, x api.Context) {
	var flags []string
	if x.Owner {
		flags = append(flags, "owner")
	}
	if x.Wide {
		flags = append(flags, "wide")
	}
	if !x.Joined {
		flags = append(flags, "left")
	}
	fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", x.ID, x.Messages, strings.Join(flags, ","), x.Name)
}

func (c *cli) ctxJoinCmd() *cobra.Command {
	cmd := c.ctxIDCmd("join ID", "Join a context: find members, take its live messages and its history", 1,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, _ []string) error {
			x, err := cl.JoinContext(ctx, id)
			if err != nil {
				return err
			}
			printContext(cmd.OutOrStdout(), x)
			return nil
		})
	cmd.Long = "Join a context, then print it as `ctx list` does: ID, messages held, flags, name."
	return cmd
}

func (c *cli) ctxLeaveCmd() *cobra.Command {
	return c.ctxIDCmd("leave ID", "Leave a context (its history stays stored)", 1,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, _ *cobra.Command, _ []string) error {
			return cl.LeaveContext(ctx, id)
		})
}

func (c *cli) ctxListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the joined contexts: ID, messages held, flags, name",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				xs, err := cl.Contexts(ctx)
				if err != nil {
					return err
				}
				for _, x := range xs {
					printContext(cmd.OutOrStdout(), x)
				}
				return nil
			})
		},
	}
}

func (c *cli) ctxMembersCmd() *cobra.Command {
	return c.ctxIDCmd("members ID", "List a context's authors: ID, messages held, highest seq, flags (banned, linked)", 1,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, _ []string) error {
			ms, err := cl.ContextMembers(ctx, id)
			if err != nil {
				return err
			}
			for _, m := range ms {
				var flags []string
				if m.Banned {
					flags = append(flags, "banned")
				}
				if m.Linked {
					flags = append(flags, "linked")
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d\t%d\t%s\n", m.ID, m.Messages, m.Seq, strings.Join(flags, ","))
			}
			return nil
		})
}

// messageArg returns the body TEXT stands for: TEXT itself, or standard
// input when it is "-", at most api.MaxMessageBody bytes.
func messageArg(cmd *cobra.Command, text string) ([]byte, error) {
	body := []byte(text)
	if text == "-" {
		// One byte past the limit, so an oversized body is reported as
		// such instead of silently cut.
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), int64(api.MaxMessageBody)+1))
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		body = b
	}
	if len(body) > api.MaxMessageBody {
		return nil, fmt.Errorf("message is %d bytes; a context message holds at most %d", len(body), api.MaxMessageBody)
	}
	return body, nil
}

func (c *cli) ctxPublishCmd() *cobra.Command {
	cmd := c.ctxIDCmd("publish ID TEXT|-", "Publish a message to a context; print its cursor, seq and entry ID", 2,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, args []string) error {
			body, err := messageArg(cmd, args[1])
			if err != nil {
				return err
			}
			m, err := cl.PublishContext(ctx, id, body)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d %d %s\n", m.Cursor, m.Seq, m.ID)
			return nil
		})
	cmd.Long = "Publish a message to a joined context: TEXT, or standard input when TEXT is -.\nPrints the message's cursor, its seq in this node's feed and its entry ID."
	return cmd
}

func (c *cli) ctxSendCmd() *cobra.Command {
	return c.ctxIDCmd("send ID TEXT|-", "Send an ephemeral datagram to a context's current members (never stored)", 2,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, args []string) error {
			body, err := messageArg(cmd, args[1])
			if err != nil {
				return err
			}
			return cl.SendContext(ctx, id, body)
		})
}

// messagePrinter prints messages one per line: cursor, author, seq,
// time, body; or, with asJSON, one api.Message JSON object per line.
type messagePrinter struct {
	w      io.Writer
	asJSON bool
}

func (p messagePrinter) print(m api.Message) error {
	if p.asJSON {
		return json.NewEncoder(p.w).Encode(m)
	}
	_, err := fmt.Fprintf(p.w, "%d\t%s\t%d\t%s\t%s\n", m.Cursor, m.Author, m.Seq,
		time.UnixMilli(m.Timestamp).UTC().Format(time.RFC3339), showBody(api.Entry{Type: feed.TypeCtx, Body: m.Body}))
	return err
}

const messageFormat = `One message per line: cursor, author, seq (in the author's feed), time, body.
With --json, one JSON object per line with context, cursor, author, seq, id (the entry's),
timestamp (Unix ms), body (base64) and text (the body, when it is UTF-8).`

func (c *cli) ctxHistoryCmd() *cobra.Command {
	var (
		newest bool
		limit  int
		asJSON bool
	)
	cmd := c.ctxIDCmd("history ID [--newest] [--limit N] [--json]", "Print one page of a context's messages, oldest (or newest) first", 1,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > api.MaxHistoryLimit {
				return fmt.Errorf("--limit %d is not in 1..%d", limit, api.MaxHistoryLimit)
			}
			p := api.HistoryParams{ID: id, Order: api.OrderOldest, Limit: limit}
			if newest {
				p.Order = api.OrderNewest
			}
			h, err := cl.ContextHistory(ctx, p)
			if err != nil {
				return err
			}
			out := messagePrinter{cmd.OutOrStdout(), asJSON}
			for _, m := range h.Messages {
				if err := out.print(m); err != nil {
					return err
				}
			}
			return nil
		})
	cmd.Long = "Print up to N of a context's messages, oldest first, or newest first with --newest.\n" + messageFormat
	cmd.Flags().BoolVar(&newest, "newest", false, "newest first")
	cmd.Flags().IntVar(&limit, "limit", api.DefaultHistoryLimit, "messages to print")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

func (c *cli) ctxTailCmd() *cobra.Command {
	var (
		since, last    uint64
		follow, asJSON bool
	)
	cmd := c.ctxIDCmd("tail ID [--since CURSOR] [--last N] [--follow] [--json]",
		"Print a context's messages after a cursor (or the last N); with --follow, then live ones", 1,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, _ []string) error {
			out := messagePrinter{cmd.OutOrStdout(), asJSON}
			if follow {
				return followContext(ctx, cl, id, sdk.ContextOptions{Since: since, Last: last}, out)
			}
			return printHeld(ctx, cl, id, since, last, out)
		})
	cmd.Long = `Print the messages of a context with cursor > CURSOR (default: all; with --last N and no
--since, the last N), in cursor order, then exit; with --follow, keep printing new ones as
they arrive, each exactly once, until interrupted.
` + messageFormat
	cmd.Flags().Uint64Var(&since, "since", 0, "print messages with cursor greater than CURSOR")
	cmd.Flags().Uint64Var(&last, "last", 0, "without --since: start with the last N messages")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new messages until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

// printHeld prints the messages held with cursor > since (or the last
// last ones, counted in cursors as context.subscribe does), page by page.
func printHeld(ctx context.Context, cl *sdk.Client, id feed.ID, since, last uint64, out messagePrinter) error {
	if since == 0 && last > 0 {
		h, err := cl.ContextHistory(ctx, api.HistoryParams{ID: id, Order: api.OrderNewest, Limit: 1})
		if err != nil {
			return err
		}
		if len(h.Messages) > 0 && h.Messages[0].Cursor > last {
			since = h.Messages[0].Cursor - last
		}
	}
	for {
		h, err := cl.ContextHistory(ctx, api.HistoryParams{ID: id, After: since, Limit: api.MaxHistoryLimit})
		if err != nil {
			return err
		}
		for _, m := range h.Messages {
			if err := out.print(m); err != nil {
				return err
			}
			since = m.Cursor
		}
		if !h.More || len(h.Messages) == 0 {
			return nil
		}
	}
}

// followContext prints the messages of a subscription until ctx is done
// (an interrupt: a clean exit) or the subscription ends.
func followContext(ctx context.Context, cl *sdk.Client, id feed.ID, opt sdk.ContextOptions, out messagePrinter) error {
	s, err := cl.SubscribeContext(ctx, id, opt)
	if err != nil {
		return err
	}
	defer s.Close()
	for {
		m, err := s.Next(ctx)
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return nil
			}
			return err
		}
		if err := out.print(m); err != nil {
			return err
		}
	}
}

func (c *cli) ctxBanCmd(use, short string, do func(*sdk.Client, context.Context, feed.ID, feed.ID) (api.Head, error)) *cobra.Command {
	cmd := c.ctxIDCmd(use+" ID AUTHOR", short, 2,
		func(ctx context.Context, cl *sdk.Client, id feed.ID, cmd *cobra.Command, args []string) error {
			author, err := parseArg("author", args[1])
			if err != nil {
				return err
			}
			h, err := do(cl, ctx, id, author)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n", h.Seq, h.ID)
			return nil
		})
	cmd.Long = short + ". Only the node that created the context (it holds the context's key) can; the\nban is an entry of the context's own feed that every member honours. Prints its seq and ID."
	return cmd
}
