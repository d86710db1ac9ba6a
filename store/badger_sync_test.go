package store

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSyncLogs checks which files a sync barrier syncs: every memtable log,
// the value logs from the last barrier's on, and the directory; none while
// the logs are those the last barrier saw.
func TestSyncLogs(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"000001.vlog", "000002.vlog", "000003.vlog", "00004.mem", "00006.mem", "000005.sst", "MANIFEST", "KEYREGISTRY", "x.vlog"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		from, last uint32
		want       []string
	}{
		{0, 3, []string{".", "000001.vlog", "000002.vlog", "000003.vlog", "00004.mem", "00006.mem"}},
		{2, 3, []string{".", "000002.vlog", "000003.vlog", "00004.mem", "00006.mem"}},
		{3, 3, []string{".", "000003.vlog", "00004.mem", "00006.mem"}},
	} {
		next, got := syncRecorded(t, dir, logState{vlogFrom: c.from})
		if next.vlogFrom != c.last || !slices.Equal(got, c.want) {
			t.Errorf("syncLogs from %d = %d, synced %q; want %d, %q", c.from, next.vlogFrom, got, c.last, c.want)
		}
	}
	// The same logs as the last barrier saw: nothing to sync. A new one
	// (a rotation): all again from the last barrier's value log.
	prev, _ := syncRecorded(t, dir, logState{})
	if next, got := syncRecorded(t, dir, prev); len(got) != 0 || next != prev {
		t.Errorf("with the logs unchanged syncLogs synced %q, returned %+v; want nothing, %+v", got, next, prev)
	}
	if err := os.WriteFile(filepath.Join(dir, "000004.vlog"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{".", "000003.vlog", "000004.vlog", "00004.mem", "00006.mem"}
	if next, got := syncRecorded(t, dir, prev); next.vlogFrom != 4 || !slices.Equal(got, want) {
		t.Errorf("after a rotation syncLogs = %d, synced %q; want 4, %q", next.vlogFrom, got, want)
	}
	// A memtable log flushed and removed meanwhile is no error; others are.
	gone := func(path string) error {
		if filepath.Ext(path) == ".mem" {
			return os.ErrNotExist
		}
		return nil
	}
	if _, err := syncLogs(dir, logState{}, gone); err != nil {
		t.Errorf("syncLogs with a memtable log gone: %v", err)
	}
	failing := func(path string) error {
		if filepath.Ext(path) == ".vlog" {
			return os.ErrPermission
		}
		return nil
	}
	if next, err := syncLogs(dir, prev, failing); err == nil || next != prev {
		t.Errorf("syncLogs with an fsync failing = %+v, %v; want an error and the state before", next, err)
	}
	if _, err := syncLogs(filepath.Join(dir, "none"), logState{}, fsyncPath); err == nil {
		t.Error("syncLogs of a missing directory: no error")
	}
}

// syncRecorded runs syncLogs on dir from prev and returns what it returned
// and the paths it synced, relative to dir and sorted.
func syncRecorded(t *testing.T, dir string, prev logState) (logState, []string) {
	t.Helper()
	var got []string
	next, err := syncLogs(dir, prev, func(path string) error {
		rel, err := filepath.Rel(dir, path)
		got = append(got, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	return next, got
}

// TestBadgerSyncFiles checks that a real store's directory holds the files
// Sync looks for (Badger names its logs *.mem and *.vlog), so a Badger that
// renamed them would fail here instead of leaving the barrier syncing
// nothing.
func TestBadgerSyncFiles(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir)
	defer s.Close()
	a := newAuthor(t, 1)
	mustAppend(t, s, a.posts(3)...)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	if _, err := syncLogs(dir, logState{}, func(path string) error {
		kinds[filepath.Ext(path)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if kinds[".mem"] == 0 || kinds[".vlog"] == 0 {
		t.Errorf("a store's directory synced %v; want memtable logs and value logs", kinds)
	}
}

// TestBadgerUsage checks that Usage counts what the databases take on
// disk, and grows with what is stored.
func TestBadgerUsage(t *testing.T) {
	s := openBadger(t, t.TempDir())
	defer s.Close()
	before, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if before.Main <= 0 || before.Blobs <= 0 {
		t.Fatalf("a new store uses %+v: its logs take space", before)
	}
	a := newAuthor(t, 1)
	for range 20 {
		mustAppend(t, s, a.posts(200)...)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	after, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if after.Main <= before.Main {
		t.Errorf("4,000 entries later the main database uses %d bytes, before %d", after.Main, before.Main)
	}
}
