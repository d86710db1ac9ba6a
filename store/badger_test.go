package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"

	"github.com/contextd/contextd/feed"
)

// openBadger opens a Badger store in dir, closed at the end of the test.
func openBadger(t *testing.T, dir string) *Badger {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := OpenBadger(dir, BadgerOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestBadger(t *testing.T) {
	testStore(t, func(t *testing.T) Store { return openBadger(t, t.TempDir()) })
}

func TestBadgerReopen(t *testing.T) {
	dir := t.TempDir()
	a, b, c := newAuthor(t, 1), newAuthor(t, 2), newAuthor(t, 3)
	s := openBadger(t, dir)
	aEntries := append(a.posts(3), a.contact(b.id, feed.RelFollow), a.contact(c.id, feed.RelBlock))
	mustAppend(t, s, aEntries...)
	bEntries := b.posts(2)
	mustAppend(t, s, bEntries...)
	clock := map[feed.ID]int64{a.id: 10, c.id: -1}
	if err := s.SetPeerClock(b.id, clock); err != nil {
		t.Fatal(err)
	}
	proof := c.forkProof("reopen")
	if err := s.AddForkProof(proof); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openBadger(t, dir)
	checkFeed(t, s, a.id, aEntries)
	checkFeed(t, s, b.id, bEntries)
	if hs, err := s.Heads(); err != nil || !maps.Equal(hs, map[feed.ID]feed.Head{a.id: a.head, b.id: b.head}) {
		t.Errorf("Heads after reopen = %v, %v", hs, err)
	}
	if cs, err := s.Contacts(a.id); err != nil || !maps.Equal(cs, map[feed.ID]feed.Relation{b.id: feed.RelFollow, c.id: feed.RelBlock}) {
		t.Errorf("Contacts after reopen = %v, %v", cs, err)
	}
	if got, err := s.PeerClock(b.id); err != nil || !maps.Equal(got, clock) {
		t.Errorf("PeerClock after reopen = %v, %v", got, err)
	}
	if p, err := s.ForkProof(c.id); err != nil || !sameEntry(p.A, proof.A) || !sameEntry(p.B, proof.B) {
		t.Errorf("ForkProof after reopen: %v", err)
	}
	if err := s.Append(c.posts(1)); !errors.Is(err, ErrForked) {
		t.Errorf("Append to forked feed after reopen = %v, want ErrForked", err)
	}
	// The reopened store continues the feed.
	more := a.posts(2)
	mustAppend(t, s, more...)
	checkFeed(t, s, a.id, append(aEntries, more...))
}

func TestBadgerLocked(t *testing.T) {
	dir := t.TempDir()
	openBadger(t, dir)
	if s, err := OpenBadger(dir, BadgerOptions{}); err == nil {
		s.Close()
		t.Fatal("a second OpenBadger of an open directory succeeded")
	}
	if _, err := OpenBadger("", BadgerOptions{}); err == nil {
		t.Fatal("OpenBadger with an empty directory name succeeded")
	}
}

// TestBadgerMaxBatch checks that MaxBatch entries of the most expensive
// kinds fit one Badger transaction.
func TestBadgerMaxBatch(t *testing.T) {
	s := openBadger(t, t.TempDir())
	if got, limit := int64(badgerWorstTxnBytes), s.db.MaxBatchSize(); got >= limit {
		t.Fatalf("worst batch estimate %d bytes, Badger's limit %d", got, limit)
	}
	if got, limit := int64(2*MaxBatch+1), s.db.MaxBatchCount(); got >= limit {
		t.Fatalf("worst batch has %d writes, Badger's limit %d", got, limit)
	}
	a, b := newAuthor(t, 1), newAuthor(t, 2)
	big := make([]byte, feed.MaxBodySize)
	// The longest object ID: a CIDv1 of an identity multihash.
	mh, err := multihash.Encode(make([]byte, MaxObjectIDLen-4), multihash.IDENTITY)
	if err != nil {
		t.Fatal(err)
	}
	longest := cid.NewCidV1(cid.Raw, mh)
	if longest.ByteLen() != MaxObjectIDLen {
		t.Fatalf("longest CID is %d bytes", longest.ByteLen())
	}
	var all []*feed.Entry
	for _, mk := range []func() *feed.Entry{
		func() *feed.Entry { return a.next("p", nil) },                // smallest entry
		func() *feed.Entry { return a.contact(b.id, feed.RelFollow) }, // entry plus contact key
		func() *feed.Entry { return leaseEntry(a, longest, testNow) }, // entry plus the longest lease key
		func() *feed.Entry { return a.next("post", big) },             // largest entry
	} {
		es := make([]*feed.Entry, MaxBatch)
		for i := range es {
			es[i] = mk()
		}
		if e := es[0]; e.Type == "p" && e.EncodedSize() != minEntrySize {
			t.Fatalf("smallest entry is %d bytes, the budget assumes %d", e.EncodedSize(), minEntrySize)
		}
		mustAppend(t, s, es...)
		all = append(all, es...)
	}
	checkFeed(t, s, a.id, all)
}

// TestBadgerCorrupt checks that damaged records are reported, not panicked on.
func TestBadgerCorrupt(t *testing.T) {
	s := openBadger(t, t.TempDir())
	a, b, c, d := newAuthor(t, 1), newAuthor(t, 2), newAuthor(t, 3), newAuthor(t, 4)
	es := a.posts(4)
	mustAppend(t, s, es...)
	mustAppend(t, s, b.posts(1)...)
	put := func(k, v []byte) {
		t.Helper()
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) }); err != nil {
			t.Fatal(err)
		}
	}
	put(entryKey(a.id, 2), []byte{feed.Version, 1, 2, 3})
	put(entryKey(a.id, 3), es[0].Encode()) // a valid entry in the wrong place
	put(idKey(prefixHead, b.id), []byte{1, 2, 3})
	put(pairKey(prefixContact, a.id, c.id), []byte{9})
	put(pairKey(prefixClock, a.id, c.id), []byte{1})
	put(idKey(prefixFork, d.id), []byte("not a proof"))

	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s = %v, want ErrCorrupt", what, err)
		}
	}
	_, err := s.Get(a.id, 2)
	check("Get of a garbage entry", err)
	_, err = s.Get(a.id, 3)
	check("Get of a misplaced entry", err)
	_, err = s.Range(a.id, 1, 10)
	check("Range over a garbage entry", err)
	_, err = s.RangeEncoded(a.id, 2, 10, 1<<20)
	check("RangeEncoded over a garbage entry", err)
	_, err = s.RangeEncoded(a.id, 3, 10, 1<<20)
	check("RangeEncoded over a misplaced entry", err)
	if got, err := s.Get(a.id, 4); err != nil || !sameEntry(got, es[3]) {
		t.Errorf("Get of an intact entry: %v", err)
	}
	_, err = s.Head(b.id)
	check("Head", err)
	_, err = s.Heads()
	check("Heads", err)
	_, err = s.Relation(a.id, c.id)
	check("Relation", err)
	_, err = s.Contacts(a.id)
	check("Contacts", err)
	_, err = s.PeerClock(a.id)
	check("PeerClock", err)
	_, err = s.ForkProof(d.id)
	check("ForkProof", err)
	_, err = s.ForkProofs()
	check("ForkProofs", err)
	err = s.Append(b.posts(1))
	if err == nil {
		t.Errorf("Append over a corrupt head succeeded")
	}
}

func TestBadgerSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBadger(dir, BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte{keySchema}, []byte{schemaVersion + 1}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenBadger(dir, BadgerOptions{}); !errors.Is(err, ErrSchema) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenBadger of another schema version = %v, want ErrSchema", err)
	}
}

func TestBadgerLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := OpenBadger(t.TempDir(), BadgerOptions{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "component=badger") {
		t.Errorf("Badger logged nothing through slog:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), `\n"`) {
		t.Errorf("log lines keep Badger's newlines:\n%s", buf.String())
	}
}

// The crash test runs TestCrashChild in a child process, which appends to a
// store until the parent kills it with SIGKILL.
const (
	crashEnv     = "CONTEXTD_STORE_CRASH_DIR"
	crashSeed    = 42
	crashRounds  = 3    // kills over one directory
	crashReports = 50   // appends the parent waits for before killing
	crashBatches = 5000 // the child gives up after this many
)

// TestCrashChild is the child of TestCrash; it does nothing in a normal run.
// After each Append returns it prints "ok <head seq>".
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process of TestCrash")
	}
	s, err := OpenBadger(dir, BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, friend := newAuthor(t, crashSeed), newAuthor(t, crashSeed+1)
	if a.head, err = s.Head(a.id); err != nil { // continue after an earlier crash
		t.Fatal(err)
	}
	for i := range crashBatches {
		var es []*feed.Entry
		for j := range i%7 + 1 {
			if j == 3 {
				es = append(es, a.contact(friend.id, feed.Relation(i%3)))
			} else {
				es = append(es, a.next("post", fmt.Appendf(nil, "batch %d entry %d %s", i, j, strings.Repeat("x", i%600))))
			}
		}
		if err := s.Append(es); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 { // as the node does for its own entries
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := fmt.Fprintf(os.Stdout, "ok %d\n", a.head.Seq); err != nil {
			return // the parent is gone
		}
	}
	t.Fatal("the parent never killed this process")
}

// TestCrash kills a process that is appending, several times over one
// directory, and checks each time that what survives is a valid prefix of
// the feed holding at least every batch whose Append had returned.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	for round := range crashRounds {
		reported := crashChild(t, dir)
		checkCrashed(t, dir, reported)
		t.Logf("round %d: killed the child after it reported head %d", round, reported)
	}
}

// crashChild runs TestCrashChild on dir, kills it once it has reported
// crashReports appends and returns the last head it reported.
func crashChild(t *testing.T, dir string) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	var stderr, other strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var reported uint64
	reports := 0
	sc := bufio.NewScanner(stdout)
	for reports < crashReports && sc.Scan() {
		var seq uint64
		if _, err := fmt.Sscanf(sc.Text(), "ok %d", &seq); err != nil {
			other.WriteString(sc.Text() + "\n")
			continue
		}
		if seq <= reported {
			t.Errorf("child reported head %d after %d", seq, reported)
		}
		reported = seq
		reports++
	}
	if reports < crashReports {
		err := cmd.Wait()
		t.Fatalf("child stopped after %d reports: %v\nstdout:\n%s\nstderr:\n%s", reports, err, other.String(), stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the child exited normally instead of being killed")
	}
	return reported
}

// checkCrashed checks the store a killed child left in dir.
func checkCrashed(t *testing.T, dir string, reported uint64) {
	t.Helper()
	s := openBadger(t, dir)
	defer s.Close()
	a := newAuthor(t, crashSeed)
	head, err := s.Head(a.id)
	if err != nil {
		t.Fatal(err)
	}
	if head.Seq < reported {
		t.Fatalf("head %d after the crash; the child had reported %d", head.Seq, reported)
	}
	es, err := s.Range(a.id, 1, int(head.Seq)+10)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(es)) != head.Seq {
		t.Fatalf("%d entries for head %d", len(es), head.Seq)
	}
	var h feed.Head
	for _, e := range es {
		if err := e.Validate(a.id, h); err != nil {
			t.Fatalf("entry %d: %v", e.Seq, err)
		}
		h = e.Next()
	}
	if h != head {
		t.Fatalf("stored head %d does not name the last entry", head.Seq)
	}
	if hs, err := s.Heads(); err != nil || len(hs) != 1 {
		t.Fatalf("Heads = %v, %v; want only the child's feed", hs, err)
	}
	// The feed goes on from where it stopped.
	a.head = head
	mustAppend(t, s, a.posts(2)...)
}
