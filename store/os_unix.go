//go:build !windows && !plan9 && !js && !wasip1 && !aix

package store

import (
	"errors"
	"os"
	"syscall"
)

// dirLocked reports whether another process holds the lock Badger takes
// on dir (the flock Badger's dir_unix.go takes; a writer holds it
// exclusively).
func dirLocked(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// allocated returns the bytes the file of fi takes on disk: Badger's logs
// are preallocated sparse files, larger than what they hold.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
