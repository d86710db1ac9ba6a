package wire

import (
	"encoding/binary"
	"fmt"
)

// Malformed makes a protocol's error for a malformed message of type t
// (0 when the frame itself is wrong), given what is wrong.
type Malformed func(t byte, detail string) error

// Reader reads one message body. The first error sticks: every later read
// returns zero values, and Finish returns it.
type Reader struct {
	p         []byte
	t         byte
	malformed Malformed
	err       error
}

// Open checks the frame of message b (not empty, at most max bytes, a type
// other than 0) and returns its type and a Reader of its body.
func Open(b []byte, max int, malformed Malformed) (byte, *Reader, error) {
	switch {
	case len(b) == 0:
		return 0, nil, malformed(0, "empty message")
	case len(b) > max:
		return 0, nil, malformed(0, fmt.Sprintf("message of %d bytes, limit %d", len(b), max))
	case b[0] == 0:
		return 0, nil, malformed(0, "message type 0")
	}
	return b[0], &Reader{p: b[1:], t: b[0], malformed: malformed}, nil
}

// Fail records what is wrong, unless an error is recorded already.
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = r.malformed(r.t, fmt.Sprintf(format, args...))
	}
}

// Err returns the error recorded, if any.
func (r *Reader) Err() error { return r.err }

// Len returns the bytes left.
func (r *Reader) Len() int { return len(r.p) }

// Finish returns the error recorded, or one if bytes are left: a message
// must be consumed exactly, so that it re-encodes to the same bytes.
func (r *Reader) Finish() error {
	if r.err == nil && len(r.p) != 0 {
		r.Fail("%d bytes after the message", len(r.p))
	}
	return r.err
}

// Uvarint reads a minimal uvarint (no redundant trailing zero groups).
func (r *Reader) Uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.p)
	if n <= 0 || n > 1 && r.p[n-1] == 0 {
		r.Fail("bad %s", what)
		return 0
	}
	r.p = r.p[n:]
	return v
}

// Max reads a uvarint of at most max.
func (r *Reader) Max(what string, max uint64) uint64 {
	v := r.Uvarint(what)
	if r.err == nil && v > max {
		r.Fail("%s %d (limit %d)", what, v, max)
		return 0
	}
	return v
}

// Bytes reads n bytes, aliasing the body (capacity n: appending to them
// copies).
func (r *Reader) Bytes(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.p) {
		r.Fail("%s of %d bytes in %d", what, n, len(r.p))
		return nil
	}
	b := r.p[:n:n]
	r.p = r.p[n:]
	return b
}
