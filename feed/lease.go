package feed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// TypeLease is the entry type of heartbeat pins: "keep object
// X until T", signed by the pinner. The latest lease entry of an author for
// an object replaces any earlier one; a lease with a zero Until ends it.
const TypeLease = "lease"

// MaxLeaseObjectLen is the longest object ID a lease body carries. The
// ID is opaque here (the bytes of a CID); it matches the store's bound.
const MaxLeaseObjectLen = 128

// ErrBadLease reports a lease body that does not parse, or a Lease that
// cannot be encoded.
var ErrBadLease = errors.New("feed: bad lease body")

// leaseVersion leads every lease body.
const leaseVersion = 1

// leaseFixed is the size of a lease body without its object ID: version,
// until, ID length.
const leaseFixed = 1 + 8 + 1

// Lease is the body of a lease entry: version byte, until (Unix
// milliseconds, int64 big-endian; 0 = the lease is ended), ID length byte,
// then the object ID (1 to MaxLeaseObjectLen bytes).
type Lease struct {
	Object []byte    // the object's ID: the bytes of its CID
	Until  time.Time // the zero time ends the lease; otherwise after 1970, kept to the millisecond
}

// Ended reports whether the lease ends an earlier one rather than keeping
// the object.
func (l Lease) Ended() bool { return l.Until.IsZero() }

// Encode returns the lease body. It fails with ErrBadLease for an object
// ID of 0 or more than MaxLeaseObjectLen bytes, or a non-zero Until not
// after the Unix epoch's first millisecond. Until is truncated to the
// millisecond.
func (l Lease) Encode() ([]byte, error) {
	if len(l.Object) == 0 || len(l.Object) > MaxLeaseObjectLen {
		return nil, fmt.Errorf("%w: object ID of %d bytes, want 1 to %d", ErrBadLease, len(l.Object), MaxLeaseObjectLen)
	}
	var ms int64
	if !l.Ended() {
		if ms = l.Until.UnixMilli(); ms <= 0 {
			return nil, fmt.Errorf("%w: until %v is not after 1970", ErrBadLease, l.Until)
		}
	}
	b := make([]byte, 0, leaseFixed+len(l.Object))
	b = append(b, leaseVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(ms))
	b = append(b, byte(len(l.Object)))
	return append(b, l.Object...), nil
}

// DecodeLease parses a lease body, which must fill b exactly. The returned
// lease does not alias b.
func DecodeLease(b []byte) (Lease, error) {
	var l Lease
	if len(b) < leaseFixed {
		return l, fmt.Errorf("%w: %d bytes, shorter than %d", ErrBadLease, len(b), leaseFixed)
	}
	if b[0] != leaseVersion {
		return l, fmt.Errorf("%w: version %d", ErrBadLease, b[0])
	}
	ms := int64(binary.BigEndian.Uint64(b[1:]))
	n := int(b[9])
	switch {
	case ms < 0:
		return l, fmt.Errorf("%w: until %d ms", ErrBadLease, ms)
	case n == 0 || n > MaxLeaseObjectLen:
		return l, fmt.Errorf("%w: object ID of %d bytes, want 1 to %d", ErrBadLease, n, MaxLeaseObjectLen)
	case len(b) != leaseFixed+n:
		return l, fmt.Errorf("%w: %d bytes for an object ID of %d", ErrBadLease, len(b), n)
	}
	l.Object = append([]byte(nil), b[leaseFixed:]...)
	if ms > 0 {
		l.Until = time.UnixMilli(ms)
	}
	return l, nil
}
