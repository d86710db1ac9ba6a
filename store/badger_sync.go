package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Sync implements Store: every write to the main database committed before
// it returns is on disk.
//
// The main database is opened without SyncWrites, so a commit reaches the
// page cache only (it survives the process dying, not the machine). Badger's
// own DB.Sync syncs the active memtable's write-ahead log and the active
// value-log file, but a memtable or value-log file that filled up since the
// last barrier was set aside unsynced (Badger syncs at rotation only with
// SyncWrites on). So Sync also syncs every memtable log still waiting to be
// flushed (a flushed one is gone: its table was synced first), every value
// log from the one active at the last Sync on, and the directory, which
// holds the names of files created since.
func (s *Badger) Sync() error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.sync()
}

// sync is Sync under s.mu.
func (s *Badger) sync() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	defer s.metrics.synced(s.metrics.now())
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	last, err := syncLogs(s.dir, s.syncedVlog, fsyncPath)
	if err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	s.syncedVlog = last
	return nil
}

// syncLogs calls fsync on every memtable log (*.mem) in Badger directory
// dir, every value-log file (*.vlog) numbered from or above vlogFrom, and
// dir itself. It returns the highest value-log number it saw: the files
// below it are complete (Badger writes only to the highest) and now
// synced, so the next call may start there.
func syncLogs(dir string, vlogFrom uint32, fsync func(path string) error) (uint32, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return vlogFrom, err
	}
	last := vlogFrom
	var errs []error
	for _, de := range des {
		name := de.Name()
		switch ext := filepath.Ext(name); ext {
		case ".mem":
		case ".vlog":
			fid, err := strconv.ParseUint(strings.TrimSuffix(name, ext), 10, 32)
			if err != nil || uint32(fid) < vlogFrom {
				continue
			}
			last = max(last, uint32(fid))
		default:
			continue
		}
		if err := fsync(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// A memtable log flushed meanwhile is gone: its table
			// was synced before it was removed.
			errs = append(errs, err)
		}
	}
	errs = append(errs, fsync(dir))
	return last, errors.Join(errs...)
}

// fsyncPath opens path and fsyncs it: fsync writes back the file's dirty
// pages whichever descriptor or mapping dirtied them.
func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
