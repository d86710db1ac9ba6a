package flitlink

// Internals the external tests (package flitlink_test) check.
var (
	ErrLocalClose = errLocalClose
	ErrPeerClosed = errPeerClosed
)

// OpenCounts returns the circuits this side opened and the peer opened
// that are not yet closed.
func (l *Link) OpenCounts() (local, remote int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.localOpen, l.remoteOpen
}
