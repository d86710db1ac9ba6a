package main

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contextd/contextd/feed"
)

func TestHashCmd(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		size   int
		args   []string
		chunks int
		raw    bool // a single-chunk object: its ID is the raw CID of its bytes
	}{
		{"empty", 0, nil, 1, true},
		{"empty sha1", 0, []string{"--hash", "sha1"}, 1, true},
		{"one chunk", 16 << 10, nil, 1, true},
		{"one byte over", 16<<10 + 1, nil, 2, false},
		{"one chunk sha1", 1024, []string{"--hash", "sha1", "--chunk", "1024"}, 1, true},
		{"one byte over sha1", 1025, []string{"--hash", "sha1", "--chunk", "1024"}, 2, false},
		{"five chunks of 1 KiB", 4*1024 + 3, []string{"--chunk", "1024"}, 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := bytes.Repeat([]byte("q"), tt.size)
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out := runHash(t, nil, append(tt.args, path)...)
			var root, id string
			var size, chunks int
			if _, err := fmt.Sscanf(out, "root=%s cid=%s size=%d chunks=%d\n", &root, &id, &size, &chunks); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if size != tt.size || chunks != tt.chunks {
				t.Errorf("size, chunks = %d, %d, want %d, %d", size, chunks, tt.size, tt.chunks)
			}
			sha1Hash := len(tt.args) > 1 && tt.args[1] == "sha1"
			if tt.raw {
				want := sha256.Sum256(data)
				wantRoot := want[:]
				if sha1Hash {
					s := sha1.Sum(data)
					wantRoot = s[:]
				}
				if root != hex.EncodeToString(wantRoot) {
					t.Errorf("root = %s, want the hash of the bytes %x", root, wantRoot)
				}
				if !sha1Hash && id != feed.Hash(want).String() {
					t.Errorf("cid = %s, want feed's raw CID %s", id, feed.Hash(want))
				}
			} else if id == feed.Hash(sha256.Sum256(data)).String() {
				t.Errorf("multi-chunk cid %s is the raw CID", id)
			}
			if got := runHash(t, data, append(tt.args, "-")...); got != out {
				t.Errorf("stdin: %q, file: %q", got, out)
			}
		})
	}
}

// TestHashCmdLibswift reproduces libswift's second hashtest.cpp vector.
func TestHashCmdLibswift(t *testing.T) {
	out := runHash(t, bytes.Repeat([]byte("$"), 1028), "--hash", "sha1", "--chunk", "1024", "-")
	if !strings.HasPrefix(out, "root=5b53677d3a695f29f1b4e18ab6d705312ef7f8c3 cid=b") || !strings.HasSuffix(out, " size=1028 chunks=2\n") {
		t.Errorf("output %q", out)
	}
}

func TestHashCmdErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--hash", "md5", "-"},
		{"--chunk", "1000", "-"},
		{"--chunk", "512", "-"},
		{filepath.Join(t.TempDir(), "missing")},
		{},
	} {
		cmd := newRoot()
		cmd.SetArgs(append([]string{"hash"}, args...))
		cmd.SetIn(strings.NewReader("x"))
		cmd.SetOut(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("hash %v: no error", args)
		}
	}
}

func runHash(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetArgs(append([]string{"--home", t.TempDir(), "hash"}, args...))
	cmd.SetIn(bytes.NewReader(stdin))
	cmd.SetOut(&out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("hash %v: %v", args, err)
	}
	return out.String()
}
