package feed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Version is the only entry encoding version this package reads and writes.
const Version = 1

// Limits of an entry. They are part of the wire format.
const (
	MaxBodySize = 16 << 10 // bytes of body
	MaxTypeLen  = 32       // bytes of type name

	// headerSize is version, author, seq, prev, timestamp and the type length.
	headerSize = 1 + 32 + 8 + 32 + 8 + 1
	// MaxEncodedSize bounds the canonical encoding of any valid entry.
	MaxEncodedSize = headerSize + MaxTypeLen + 4 + MaxBodySize + ed25519.SignatureSize
)

// Reasons an entry is rejected. Callers branch on them with errors.Is.
var (
	ErrMalformed      = errors.New("feed: malformed entry encoding")
	ErrUnknownVersion = errors.New("feed: unknown entry version")
	ErrTooLarge       = errors.New("feed: entry too large")
	ErrBadType        = errors.New("feed: bad entry type")
	ErrBadSeq         = errors.New("feed: seq must be at least 1")
	ErrBadSignature   = errors.New("feed: bad signature")
	ErrWrongSeq       = errors.New("feed: entry does not follow the feed's head")
	ErrWrongPrev      = errors.New("feed: entry's prev is not the head's ID")
	ErrWrongAuthor    = errors.New("feed: entry is by another author")
)

// Head is the position of a feed: the seq and ID of its latest entry. The
// zero Head is an empty feed.
type Head struct {
	Seq uint64
	ID  Hash
}

// Entry is one signed record in an author's feed.
type Entry struct {
	Author    ID
	Seq       uint64 // 1-based position in the feed
	Prev      Hash   // ID of entry Seq-1; zero at Seq 1
	Timestamp int64  // claimed creation time, Unix milliseconds
	Type      string // 1..MaxTypeLen bytes of [a-z0-9._-]
	Body      []byte // at most MaxBodySize bytes, opaque
	Sig       [ed25519.SignatureSize]byte
}

// Sign creates and signs the entry that follows head in key's feed.
func Sign(key PrivateKey, head Head, typ string, body []byte, at time.Time) (*Entry, error) {
	e := &Entry{
		Author:    key.Public(),
		Seq:       head.Seq + 1,
		Prev:      head.ID,
		Timestamp: at.UnixMilli(),
		Type:      typ,
		Body:      body,
	}
	if err := e.Check(); err != nil {
		return nil, err
	}
	e.Sig = key.Sign(e.appendUnsigned(make([]byte, 0, e.EncodedSize())))
	return e, nil
}

// EncodedSize is the length of the entry's canonical encoding.
func (e *Entry) EncodedSize() int {
	return headerSize + len(e.Type) + 4 + len(e.Body) + len(e.Sig)
}

// Encode returns the canonical encoding of e. It does not validate e.
func (e *Entry) Encode() []byte {
	return e.AppendEncode(make([]byte, 0, e.EncodedSize()))
}

// AppendEncode appends the canonical encoding of e to dst.
func (e *Entry) AppendEncode(dst []byte) []byte {
	return append(e.appendUnsigned(dst), e.Sig[:]...)
}

// appendUnsigned appends every field but the signature: the signed bytes.
func (e *Entry) appendUnsigned(dst []byte) []byte {
	dst = append(dst, Version)
	dst = append(dst, e.Author[:]...)
	dst = binary.BigEndian.AppendUint64(dst, e.Seq)
	dst = append(dst, e.Prev[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Timestamp))
	dst = append(dst, byte(len(e.Type)))
	dst = append(dst, e.Type...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.Body)))
	return append(dst, e.Body...)
}

// ID returns the entry's ID, the SHA-256 of its canonical encoding.
func (e *Entry) ID() Hash {
	return sha256.Sum256(e.Encode())
}

// Decode parses one canonical entry encoding, which must fill b exactly.
// Every length is checked against its limit before anything is allocated;
// the returned entry does not alias b. Decode checks the structure (see
// Check) but not the signature or the entry's place in its feed.
func Decode(b []byte) (*Entry, error) {
	e := &Entry{}
	if err := e.decode(b, nil, ""); err != nil {
		return nil, err
	}
	return e, nil
}

// DecodeAll decodes each of encs as Decode does. It returns the entries
// that decode, in order, and the errors of those that do not. It
// allocates in bulk rather than per entry: the entries share one array and
// their bodies one buffer (so one entry kept alive keeps them all), and
// entries of the type before them share its string. None aliases encs.
func DecodeAll(encs [][]byte) ([]*Entry, []error) {
	size := 0
	for _, b := range encs {
		size += len(b)
	}
	bodies := make([]byte, 0, size)
	slab := make([]Entry, len(encs))
	out := make([]*Entry, 0, len(encs))
	var errs []error
	typ := ""
	for i, b := range encs {
		e := &slab[i]
		if err := e.decode(b, &bodies, typ); err != nil {
			errs = append(errs, err)
			continue
		}
		typ = e.Type
		out = append(out, e)
	}
	return out, errs
}

// decode parses b into e. With bodies, the body is appended to *bodies,
// which must have room for it; otherwise it is copied to a new slice. If
// the type equals typ, e.Type is typ, without allocating.
func (e *Entry) decode(b []byte, bodies *[]byte, typ string) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if b[0] != Version {
		return fmt.Errorf("%w: %d", ErrUnknownVersion, b[0])
	}
	if len(b) > MaxEncodedSize {
		return fmt.Errorf("%w: %d bytes encoded, limit %d", ErrTooLarge, len(b), MaxEncodedSize)
	}
	if len(b) < headerSize {
		return fmt.Errorf("%w: %d bytes, shorter than a header", ErrMalformed, len(b))
	}
	p := b[1:]
	p = p[copy(e.Author[:], p):]
	e.Seq = binary.BigEndian.Uint64(p)
	p = p[8:]
	p = p[copy(e.Prev[:], p):]
	e.Timestamp = int64(binary.BigEndian.Uint64(p))
	p = p[8:]
	typeLen := int(p[0])
	p = p[1:]
	if typeLen > MaxTypeLen {
		return fmt.Errorf("%w: type is %d bytes, limit %d", ErrBadType, typeLen, MaxTypeLen)
	}
	if len(p) < typeLen+4 {
		return fmt.Errorf("%w: truncated in type", ErrMalformed)
	}
	if string(p[:typeLen]) == typ {
		e.Type = typ
	} else {
		e.Type = string(p[:typeLen])
	}
	p = p[typeLen:]
	bodyLen := binary.BigEndian.Uint32(p)
	p = p[4:]
	if bodyLen > MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes, limit %d", ErrTooLarge, bodyLen, MaxBodySize)
	}
	if uint64(len(p)) != uint64(bodyLen)+ed25519.SignatureSize {
		return fmt.Errorf("%w: %d bytes after the body length, want %d", ErrMalformed, len(p), uint64(bodyLen)+ed25519.SignatureSize)
	}
	switch {
	case bodyLen == 0:
		e.Body = nil
	case bodies != nil:
		start := len(*bodies)
		*bodies = append(*bodies, p[:bodyLen]...)
		e.Body = (*bodies)[start:len(*bodies):len(*bodies)]
	default:
		e.Body = append([]byte(nil), p[:bodyLen]...)
	}
	copy(e.Sig[:], p[bodyLen:])
	return e.Check()
}

// Check validates the entry's structure: seq, prev, type and body limits. It
// does not verify the signature.
func (e *Entry) Check() error {
	if e.Seq == 0 {
		return ErrBadSeq
	}
	if (e.Seq == 1) != e.Prev.IsZero() {
		return fmt.Errorf("%w: seq %d with prev %s", ErrWrongPrev, e.Seq, e.Prev)
	}
	if err := CheckType(e.Type); err != nil {
		return err
	}
	if len(e.Body) > MaxBodySize {
		return fmt.Errorf("%w: body is %d bytes, limit %d", ErrTooLarge, len(e.Body), MaxBodySize)
	}
	return nil
}

// CheckType reports whether typ is a valid entry type: 1 to MaxTypeLen bytes
// of lower-case letters, digits, '.', '_' and '-'.
func CheckType(typ string) error {
	if len(typ) == 0 || len(typ) > MaxTypeLen {
		return fmt.Errorf("%w: %q must be 1 to %d bytes", ErrBadType, truncate(typ), MaxTypeLen)
	}
	for i := range len(typ) {
		c := typ[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q has %q; allowed are a-z 0-9 . _ -", ErrBadType, truncate(typ), c)
		}
	}
	return nil
}

// VerifySignature checks e's signature against its author.
func (e *Entry) VerifySignature() error {
	msg := e.appendUnsigned(make([]byte, 0, e.EncodedSize()))
	if !e.Author.Verify(msg, e.Sig[:]) {
		return fmt.Errorf("%w: %s seq %d", ErrBadSignature, e.Author.Short(), e.Seq)
	}
	return nil
}

// Validate checks that e is a valid entry to append to a feed of author
// whose head is head: structure, author, seq = head.Seq+1, prev = head.ID
// and the signature.
func (e *Entry) Validate(author ID, head Head) error {
	if err := e.Check(); err != nil {
		return err
	}
	if err := e.follows(author, head); err != nil {
		return err
	}
	return e.VerifySignature()
}

// Next returns the head of the feed after e is appended.
func (e *Entry) Next() Head { return Head{Seq: e.Seq, ID: e.ID()} }
