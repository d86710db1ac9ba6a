package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contextd/contextd/feed"
)

// TestStorageCommands runs unfollow --forget, object rm and status against
// a real daemon.
func TestStorageCommands(t *testing.T) {
	c := newCluster(t)
	d, cl := c.start("a")
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other := key.Public().String()
	c.cli(d, "follow", other)
	if out := c.cli(d, "unfollow", "--forget", other); !strings.Contains(out, "unfollow "+other) || !strings.Contains(out, "forgot "+other) {
		t.Fatalf("unfollow --forget printed %q", out)
	}
	if _, err := d.CLI(c.ctx, "unfollow", "--forget", d.ID.String()); err == nil {
		t.Fatal("unfollow --forget of the node's own feed succeeded")
	}

	file := filepath.Join(c.dir, "obj")
	if err := os.WriteFile(file, []byte(strings.Repeat("contextd ", 4000)), 0o600); err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(c.cli(d, "put", file))
	if _, err := d.CLI(c.ctx, "object", "rm", id); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Fatalf("object rm of a pinned object: %v", err)
	}
	if out := c.cli(d, "object", "rm", "--force", id); !strings.Contains(out, "removed "+id) || !strings.Contains(out, "35.2 KiB") {
		t.Fatalf("object rm --force printed %q", out)
	}
	if objs, err := cl.ObjectList(c.ctx); err != nil || len(objs) != 0 {
		t.Fatalf("objects after rm: %v, %v", objs, err)
	}
	out := c.cli(d, "status")
	if !strings.Contains(out, "storage:  main ") || !strings.Contains(out, "64.0 MiB per feed, 256.0 MiB per context") {
		t.Fatalf("status lacks the storage line:\n%s", out)
	}
}
