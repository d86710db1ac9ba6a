package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// FileName is the store's file in the node's home directory.
const FileName = "tokens.json"

// fileVersion is the version of the file format this build reads and
// writes.
const fileVersion = 1

// file is the on-disk form.
type file struct {
	Version int      `json:"version"`
	Tokens  []record `json:"tokens"`
}

// record is one token: its description and the hex SHA-256 of its secret.
type record struct {
	api.TokenInfo
	SHA256 string `json:"sha256"`
}

// Store is the file-backed token store.
type Store struct {
	path string

	mu     sync.Mutex // guards tokens and byHash
	tokens []record   // oldest first
	byHash map[[sha256.Size]byte]int
}

// Open reads the store at path (HOME/FileName); a missing file is an empty
// store, created on the first Create.
func Open(path string) (*Store, error) {
	s := &Store{path: path}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		s.index()
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokens: open: %w", err)
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("tokens: parse %s: %w", path, err)
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("tokens: %s has version %d; this build reads version %d", path, f.Version, fileVersion)
	}
	for _, r := range f.Tokens {
		if h, err := hex.DecodeString(r.SHA256); err != nil || len(h) != sha256.Size || r.ID == "" {
			return nil, fmt.Errorf("tokens: %s: token %q has no valid sha256", path, r.ID)
		}
	}
	s.tokens = f.Tokens
	s.index()
	return s, nil
}

// index rebuilds byHash from tokens.
func (s *Store) index() {
	s.byHash = make(map[[sha256.Size]byte]int, len(s.tokens))
	for i, r := range s.tokens {
		var h [sha256.Size]byte
		hex.Decode(h[:], []byte(r.SHA256))
		s.byHash[h] = i
	}
}

// Lookup returns the token whose secret is secret.
func (s *Store) Lookup(secret string) (api.TokenInfo, bool) {
	h := sha256.Sum256([]byte(secret))
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.byHash[h]
	if !ok {
		return api.TokenInfo{}, false
	}
	return clone(s.tokens[i].TokenInfo), true
}

// Create mints a token with label and scopes and returns it with its
// secret (64 hex digits). Beyond api.MaxTokens it fails with api.ErrLimit.
func (s *Store) Create(label string, scopes []string) (api.NewToken, error) {
	var secret [32]byte
	var id [8]byte
	rand.Read(secret[:])
	rand.Read(id[:])
	tok := api.NewToken{
		TokenInfo: api.TokenInfo{ID: hex.EncodeToString(id[:]), Label: label, Scopes: slices.Clone(scopes), Created: time.Now().UnixMilli()},
		Token:     hex.EncodeToString(secret[:]),
	}
	h := sha256.Sum256([]byte(tok.Token))
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) >= api.MaxTokens {
		return api.NewToken{}, fmt.Errorf("tokens: create: %w: %d tokens stored (revoke some)", api.ErrLimit, len(s.tokens))
	}
	next := append(slices.Clip(s.tokens), record{TokenInfo: clone(tok.TokenInfo), SHA256: hex.EncodeToString(h[:])})
	if err := s.writeLocked(next); err != nil {
		return api.NewToken{}, fmt.Errorf("tokens: create: %w", err)
	}
	s.tokens = next
	s.byHash[h] = len(next) - 1
	return tok, nil
}

// List returns every token, oldest first.
func (s *Store) List() ([]api.TokenInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.TokenInfo, len(s.tokens))
	for i, r := range s.tokens {
		out[i] = clone(r.TokenInfo)
	}
	return out, nil
}

// Revoke forgets token id; an unknown id wraps api.ErrNotFound.
func (s *Store) Revoke(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.tokens, func(r record) bool { return r.ID == id })
	if i < 0 {
		return fmt.Errorf("tokens: revoke: %w: no token %q", api.ErrNotFound, id)
	}
	next := slices.Delete(slices.Clone(s.tokens), i, i+1)
	if err := s.writeLocked(next); err != nil {
		return fmt.Errorf("tokens: revoke: %w", err)
	}
	s.tokens = next
	s.index()
	return nil
}

// writeLocked replaces the file with tokens: a temporary file (mode 0600)
// written and synced, renamed over the old one, the directory synced.
func (s *Store) writeLocked(tokens []record) error {
	b, err := json.MarshalIndent(file{Version: fileVersion, Tokens: tokens}, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	os.Remove(tmp) // a leftover of a crash, maybe with another mode
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// clone copies t so that callers cannot change the store's scopes.
func clone(t api.TokenInfo) api.TokenInfo {
	t.Scopes = slices.Clone(t.Scopes)
	return t
}
