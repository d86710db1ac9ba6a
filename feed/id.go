package feed

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
)

// ID names a person, device, group or context: an ed25519 public key. It is
// printed as the libp2p peer ID of that key ("12D3KooW…"), so node IDs, feed
// IDs and context IDs share one format and one parser.
type ID [ed25519.PublicKeySize]byte

// peerIDPrefix is what precedes the 32 key bytes in a libp2p peer ID for an
// ed25519 key: the identity multihash header (code 0x00, length 36) followed
// by the protobuf PublicKey header (field 1 KeyType=Ed25519, field 2 of 32
// bytes).
var peerIDPrefix = []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}

// ErrBadID reports a string or byte slice that is not an ed25519 peer ID.
var ErrBadID = errors.New("feed: not an ed25519 peer ID")

// String returns the libp2p peer ID form of the key.
func (id ID) String() string {
	return base58Encode(id.PeerIDBytes())
}

// PeerIDBytes returns the binary libp2p peer ID of the key (38 bytes).
func (id ID) PeerIDBytes() []byte {
	b := make([]byte, 0, len(peerIDPrefix)+len(id))
	b = append(b, peerIDPrefix...)
	return append(b, id[:]...)
}

// IsZero reports whether id is the zero ID (not a usable key).
func (id ID) IsZero() bool { return id == ID{} }

// Compare orders IDs by their bytes, as bytes.Compare does.
func (id ID) Compare(o ID) int { return bytes.Compare(id[:], o[:]) }

// Short returns an abbreviated form for logs.
func (id ID) Short() string {
	s := id.String()
	return s[len(s)-8:]
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID parses the libp2p peer ID string of an ed25519 key.
func ParseID(s string) (ID, error) {
	// A 38-byte peer ID is 52 base58 characters; anything far longer is
	// rejected before decoding.
	if len(s) == 0 || len(s) > 64 {
		return ID{}, fmt.Errorf("%w: %q", ErrBadID, truncate(s))
	}
	b, err := base58Decode(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %q: %v", ErrBadID, truncate(s), err)
	}
	return IDFromPeerIDBytes(b)
}

// IDFromPeerIDBytes converts a binary libp2p peer ID of an ed25519 key.
func IDFromPeerIDBytes(b []byte) (ID, error) {
	var id ID
	if len(b) != len(peerIDPrefix)+len(id) || !bytes.Equal(b[:len(peerIDPrefix)], peerIDPrefix) {
		return ID{}, fmt.Errorf("%w: not an inline ed25519 key", ErrBadID)
	}
	copy(id[:], b[len(peerIDPrefix):])
	return id, nil
}

func truncate(s string) string {
	if len(s) > 70 {
		return s[:70] + "…"
	}
	return s
}

// PrivateKey is an ed25519 signing key. It cannot be compared with == and
// prints as a redacted placeholder, so it does not leak into logs by accident.
type PrivateKey struct {
	key ed25519.PrivateKey
}

// GenerateKey creates a new key from r (crypto/rand.Reader when nil).
func GenerateKey(r io.Reader) (PrivateKey, error) {
	_, k, err := ed25519.GenerateKey(r)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("feed: generate key: %w", err)
	}
	return PrivateKey{key: k}, nil
}

// PrivateKeyFromSeed rebuilds a key from its 32-byte seed.
func PrivateKeyFromSeed(seed []byte) (PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return PrivateKey{}, fmt.Errorf("feed: key seed is %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return PrivateKey{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// IsZero reports whether k holds no key.
func (k PrivateKey) IsZero() bool { return len(k.key) == 0 }

// Public returns the key's ID.
func (k PrivateKey) Public() ID {
	var id ID
	copy(id[:], k.key[ed25519.SeedSize:])
	return id
}

// Seed returns the 32-byte seed the key is derived from, for storage.
func (k PrivateKey) Seed() []byte { return k.key.Seed() }

// Ed25519 returns the key in the standard library's form, for handing to
// libp2p. The caller must not retain or print it.
func (k PrivateKey) Ed25519() ed25519.PrivateKey { return k.key }

// Sign signs msg.
func (k PrivateKey) Sign(msg []byte) [ed25519.SignatureSize]byte {
	var sig [ed25519.SignatureSize]byte
	copy(sig[:], ed25519.Sign(k.key, msg))
	return sig
}

// String redacts the key.
func (k PrivateKey) String() string { return "feed.PrivateKey(redacted)" }

// Format redacts the key under every fmt verb, %x and %#v included.
func (k PrivateKey) Format(f fmt.State, _ rune) { fmt.Fprint(f, k.String()) }

// Verify reports whether sig is id's signature of msg.
func (id ID) Verify(msg []byte, sig []byte) bool {
	return ed25519.Verify(id[:], msg, sig)
}
