package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/contextd/contextd/object"
)

// hashCmd prints an object's swarm tree root and ID. It needs no daemon.
func (c *cli) hashCmd() *cobra.Command {
	var hashName string
	var chunk int
	cmd := &cobra.Command{
		Use:   "hash [--hash sha256|sha1] [--chunk N] FILE",
		Short: "Print a file's swarm tree root, object ID (CIDv1), size and chunk count (FILE - reads stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := object.ParseHash(hashName)
			if err != nil {
				return err
			}
			r := cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			return printHash(cmd.OutOrStdout(), r, object.Config{Hash: h, ChunkSize: chunk})
		},
	}
	cmd.Flags().StringVar(&hashName, "hash", "sha256", "tree hash: sha256 or sha1")
	cmd.Flags().IntVar(&chunk, "chunk", object.DefaultChunkSize, "chunk size in bytes, a power of two from 1024")
	return cmd
}

// printHash builds the tree of r and prints "root=<hex> cid=<cid> size=<bytes> chunks=<n>".
func printHash(w io.Writer, r io.Reader, cfg object.Config) error {
	t, err := object.Build(r, cfg)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "root=%s cid=%s size=%d chunks=%d\n", hex.EncodeToString(t.Root()), t.ID(), t.Size(), t.Chunks())
	return err
}
