package ebt

import (
	"crypto/sha256"
	"log/slog"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// key returns a deterministic key for a test identity name.
func key(t testing.TB, name string) feed.PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte("ebt test " + name))
	k, err := feed.PrivateKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// chain is a test author with the entries it signed so far.
type chain struct {
	t       testing.TB
	key     feed.PrivateKey
	id      feed.ID
	entries []*feed.Entry
}

func newChain(t testing.TB, name string) *chain {
	k := key(t, name)
	return &chain{t: t, key: k, id: k.Public()}
}

func (c *chain) head() feed.Head {
	if len(c.entries) == 0 {
		return feed.Head{}
	}
	return c.entries[len(c.entries)-1].Next()
}

// add signs n more post entries.
func (c *chain) add(n int) []*feed.Entry {
	c.t.Helper()
	start := len(c.entries)
	for range n {
		c.next("post", []byte{byte(len(c.entries))})
	}
	return c.entries[start:]
}

// next signs one entry.
func (c *chain) next(typ string, body []byte) *feed.Entry {
	c.t.Helper()
	e, err := feed.Sign(c.key, c.head(), typ, body, time.UnixMilli(1700000000000+int64(len(c.entries))))
	if err != nil {
		c.t.Fatal(err)
	}
	c.entries = append(c.entries, e)
	return e
}

// contact signs a contact entry.
func (c *chain) contact(target feed.ID, rel feed.Relation) *feed.Entry {
	return c.next(feed.TypeContact, feed.Contact{Target: target, Rel: rel}.Encode())
}

// testLogger logs to t at Info.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
