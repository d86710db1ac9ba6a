package feed

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNotFork reports two entries that do not prove a fork.
var ErrNotFork = errors.New("feed: entries do not prove a fork")

// ForkProof is two validly signed, different entries by one author at one
// seq. A feed with a fork proof is frozen at the fork point: the author has
// broken the append-only promise and no later entry can be trusted to
// extend either branch.
type ForkProof struct {
	A, B *Entry
}

// NewForkProof returns the proof that a and b fork their author's feed, or
// ErrNotFork (or a signature error) if they do not.
func NewForkProof(a, b *Entry) (*ForkProof, error) {
	p := &ForkProof{A: a, B: b}
	if err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}

// Verify checks that the proof holds.
func (p *ForkProof) Verify() error {
	if p.A == nil || p.B == nil {
		return fmt.Errorf("%w: missing entry", ErrNotFork)
	}
	if p.A.Author != p.B.Author || p.A.Seq != p.B.Seq {
		return fmt.Errorf("%w: different author or seq", ErrNotFork)
	}
	if p.A.ID() == p.B.ID() {
		return fmt.Errorf("%w: same entry", ErrNotFork)
	}
	for _, e := range []*Entry{p.A, p.B} {
		if err := e.Check(); err != nil {
			return err
		}
		if err := e.VerifySignature(); err != nil {
			return err
		}
	}
	return nil
}

// Author returns the author whose feed forked.
func (p *ForkProof) Author() ID { return p.A.Author }

// Seq returns the seq at which the feed forked.
func (p *ForkProof) Seq() uint64 { return p.A.Seq }

// Encode returns the proof as two length-prefixed entry encodings.
func (p *ForkProof) Encode() []byte {
	var b []byte
	for _, e := range []*Entry{p.A, p.B} {
		b = binary.BigEndian.AppendUint32(b, uint32(e.EncodedSize()))
		b = e.AppendEncode(b)
	}
	return b
}

// DecodeForkProof parses and verifies an encoded fork proof.
func DecodeForkProof(b []byte) (*ForkProof, error) {
	var es [2]*Entry
	for i := range es {
		if len(b) < 4 {
			return nil, fmt.Errorf("%w: fork proof truncated", ErrMalformed)
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if n > MaxEncodedSize || uint64(n) > uint64(len(b)) {
			return nil, fmt.Errorf("%w: fork proof entry of %d bytes", ErrMalformed, n)
		}
		e, err := Decode(b[:n])
		if err != nil {
			return nil, err
		}
		es[i] = e
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after fork proof", ErrMalformed, len(b))
	}
	return NewForkProof(es[0], es[1])
}
