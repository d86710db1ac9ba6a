package feed

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// Hash is an entry ID: the SHA-256 of the entry's canonical encoding,
// signature included. It prints as a CIDv1 (raw codec, sha2-256 multihash,
// base32), the ID IPFS would give the same bytes.
type Hash [sha256.Size]byte

// cidPrefix is CIDv1 (0x01), raw codec (0x55), sha2-256 (0x12), 32 bytes.
var cidPrefix = []byte{0x01, 0x55, 0x12, 0x20}

var cidBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrBadHash reports a string that is not an entry ID.
var ErrBadHash = errors.New("feed: not an entry ID (CIDv1 raw sha2-256)")

// String returns the CIDv1 form, "bafkrei…".
func (h Hash) String() string {
	b := make([]byte, 0, len(cidPrefix)+len(h))
	b = append(b, cidPrefix...)
	b = append(b, h[:]...)
	return "b" + strings.ToLower(cidBase32.EncodeToString(b))
}

// IsZero reports whether h is the zero hash (the prev of a feed's first entry).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// ParseHash parses the CIDv1 form printed by Hash.String.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) < 2 || len(s) > 80 || s[0] != 'b' {
		return h, fmt.Errorf("%w: %q", ErrBadHash, truncate(s))
	}
	b, err := cidBase32.DecodeString(strings.ToUpper(s[1:]))
	if err != nil || len(b) != len(cidPrefix)+len(h) || !bytes.Equal(b[:len(cidPrefix)], cidPrefix) {
		return h, fmt.Errorf("%w: %q", ErrBadHash, truncate(s))
	}
	copy(h[:], b[len(cidPrefix):])
	return h, nil
}
