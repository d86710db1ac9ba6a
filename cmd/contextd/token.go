package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/sdk"
)

// tokenCmd builds `token create|list|revoke`: app tokens limited to scopes.
func (c *cli) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage app tokens (scoped bearer tokens for the API)",
		Long: `App tokens let an app call the API with only the scopes it needs:
` + strings.Join(api.AppScopes, ", ") + `. They cannot change follows or blocks,
touch objects by path, or mint tokens; the admin token in HOME/rpc.token can do everything.`,
	}
	var scopes []string
	var label string
	create := &cobra.Command{
		Use:   "create --scope S[,S…] [--label L]",
		Short: "Mint an app token; prints `ID TOKEN` (the token is shown only this once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				t, err := cl.CreateToken(ctx, label, scopes)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", t.ID, t.Token)
				return nil
			})
		},
	}
	create.Flags().StringSliceVar(&scopes, "scope", nil, "scopes, comma-separated or repeated: "+strings.Join(api.AppScopes, ", "))
	create.Flags().StringVar(&label, "label", "", "what the token is for")
	create.MarkFlagRequired("scope")
	list := &cobra.Command{
		Use:   "list",
		Short: "List app tokens: `ID CREATED SCOPES LABEL`, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				ts, err := cl.Tokens(ctx)
				if err != nil {
					return err
				}
				for _, t := range ts {
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %s\n", t.ID,
						time.UnixMilli(t.Created).UTC().Format(time.RFC3339), strings.Join(t.Scopes, ","), t.Label)
				}
				return nil
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an app token: its requests get HTTP 401, its open WebSockets close",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				if err := cl.RevokeToken(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// uiCmd builds `ui`: print the chat page's URL with a one-time login code.
func (c *cli) uiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ui",
		Short: "Print the URL of the daemon's chat page, logged in with a one-time code (valid 5 minutes)",
		Long: `Print the URL of the chat page the daemon serves on its RPC listener. The URL's
fragment holds a one-time login code (valid ` + api.LoginCodeTTL.String() + `) that the page exchanges for an
app token with the scopes ` + strings.Join(api.AppScopes, ", ") + `; the page keeps that token, so
it stays logged in across reloads. Revoke it with ` + "`contextd token revoke`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withClient(cmd, func(ctx context.Context, cl *sdk.Client) error {
				lc, err := cl.LoginCode(ctx)
				if err != nil {
					return err
				}
				addr, err := node.ReadRPCAddr(c.home)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "http://%s/#login=%s\n", browsable(addr), lc.Code)
				return nil
			})
		},
	}
}

// browsable turns a listen address into one a browser on this machine can
// open: an unspecified host (0.0.0.0, ::) becomes 127.0.0.1.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
