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
// holds the names of files created since; when no log was created or
// removed since the last Sync, no rotation happened and DB.Sync was enough.
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
	next, err := syncLogs(s.dir, s.logs, fsyncPath)
	if err != nil {
		return fmt.Errorf("store: sync: %w", err)
	}
	s.logs = next
	return nil
}

// logState is what the last barrier saw of a Badger directory.
type logState struct {
	names    string // its memtable and value logs, in directory order; "" before the first barrier
	vlogFrom uint32 // value logs below this number are complete and synced
}

// syncLogs calls fsync on every memtable log (*.mem) in Badger directory
// dir, every value-log file (*.vlog) numbered from or above
// prev.vlogFrom, and dir itself, unless the logs are the ones prev saw:
// then no rotation happened since, and DB.Sync covered the active ones.
// It returns what the next call starts from: the highest value-log number
// seen (the files below it are complete, since Badger writes only to the
// highest, and now synced). On an error it returns prev, so that the next
// call syncs all again.
func syncLogs(dir string, prev logState, fsync func(path string) error) (logState, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return prev, err
	}
	type log struct {
		name string
		fid  uint32 // value logs only
		vlog bool
	}
	var logs []log
	var names []string
	for _, de := range des {
		name := de.Name()
		switch ext := filepath.Ext(name); ext {
		case ".mem":
			logs = append(logs, log{name: name})
		case ".vlog":
			fid, err := strconv.ParseUint(strings.TrimSuffix(name, ext), 10, 32)
			if err != nil {
				continue
			}
			logs = append(logs, log{name: name, fid: uint32(fid), vlog: true})
		default:
			continue
		}
		names = append(names, name)
	}
	next := logState{names: strings.Join(names, "/"), vlogFrom: prev.vlogFrom}
	if prev.names != "" && next.names == prev.names {
		return prev, nil
	}
	var errs []error
	for _, l := range logs {
		if l.vlog && l.fid < prev.vlogFrom {
			continue
		}
		next.vlogFrom = max(next.vlogFrom, l.fid)
		if err := fsync(filepath.Join(dir, l.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// A memtable log flushed meanwhile is gone: its table
			// was synced before it was removed.
			errs = append(errs, err)
		}
	}
	if err := errors.Join(append(errs, fsync(dir))...); err != nil {
		return prev, err
	}
	return next, nil
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
