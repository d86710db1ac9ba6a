//go:build windows || plan9 || js || wasip1 || aix

package store

import "os"

// dirLocked reports false: on these systems Verify does not tell a store
// in use from other open errors.
func dirLocked(string) bool { return false }

// allocated returns the size of the file of fi (these systems do not say
// how much of it is allocated).
func allocated(fi os.FileInfo) int64 { return fi.Size() }
