package tokens

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/rpc/api"
)

var _ rpc.Tokens = (*Store)(nil)

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if ts, _ := s.List(); len(ts) != 0 {
		t.Fatalf("new store lists %v", ts)
	}
	a, err := s.Create("chat", []string{api.ScopeContextsRead, api.ScopeContextsWrite})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create("reader", []string{api.ScopeFeedsRead})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Token) != 64 || a.ID == "" || a.ID == b.ID || a.Token == b.Token || a.Created == 0 {
		t.Fatalf("tokens %+v and %+v", a, b)
	}
	got, ok := s.Lookup(a.Token)
	if !ok || got.ID != a.ID || got.Label != "chat" || !slices.Equal(got.Scopes, a.Scopes) {
		t.Fatalf("Lookup(a) = %+v, %v", got, ok)
	}
	got.Scopes[0] = api.ScopeAdmin // a copy: the store keeps its own
	if _, ok := s.Lookup("not" + a.Token); ok {
		t.Fatal("Lookup of a wrong secret succeeded")
	}

	// The file is private, versioned, and holds hashes, never secrets.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), a.Token) || strings.Contains(string(raw), b.Token) || !strings.Contains(string(raw), `"version": 1`) {
		t.Fatalf("tokens file:\n%s", raw)
	}

	if err := s.Revoke(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(a.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("second Revoke: %v", err)
	}
	if _, ok := s.Lookup(a.Token); ok {
		t.Fatal("revoked token still looks up")
	}

	// Reopened, the store has b only, and b still works.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := s.List()
	if len(ts) != 1 || ts[0].ID != b.ID || !slices.Equal(ts[0].Scopes, []string{api.ScopeFeedsRead}) {
		t.Fatalf("reopened store lists %+v", ts)
	}
	if got, ok := s.Lookup(b.Token); !ok || got.ID != b.ID {
		t.Fatalf("reopened Lookup(b) = %+v, %v", got, ok)
	}
	if _, ok := s.Lookup(a.Token); ok {
		t.Fatal("revoked token looks up after reopening")
	}
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"version": `{"version": 2, "tokens": []}`,
		"json":    `{"version": 1,`,
		"hash":    `{"version": 1, "tokens": [{"id": "x", "scopes": [], "created": 1, "sha256": "abc"}]}`,
	} {
		path := filepath.Join(dir, name+".json")
		os.WriteFile(path, []byte(content), 0o600)
		if _, err := Open(path); err == nil {
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func TestCreateLimit(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	s.tokens = make([]record, api.MaxTokens) // as if full; only the count matters
	if _, err := s.Create("one too many", api.AppScopes); !errors.Is(err, api.ErrLimit) {
		t.Fatalf("Create beyond the limit: %v", err)
	}
}
