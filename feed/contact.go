package feed

import (
	"errors"
	"fmt"
)

// TypeContact is the entry type of follow, unfollow, block and unblock. The
// social graph is the latest contact entry of each (author, target) pair.
const TypeContact = "contact"

// Relation is what an author says of another key.
type Relation uint8

// Relations. The latest contact entry for a target replaces any earlier
// one: unfollow and unblock both return to RelNone.
const (
	RelNone   Relation = 0
	RelFollow Relation = 1
	RelBlock  Relation = 2
)

func (r Relation) String() string {
	switch r {
	case RelNone:
		return "none"
	case RelFollow:
		return "follow"
	case RelBlock:
		return "block"
	}
	return fmt.Sprintf("relation(%d)", uint8(r))
}

// ErrBadContact reports a contact body that does not parse.
var ErrBadContact = errors.New("feed: bad contact body")

// contactVersion leads every contact body.
const contactVersion = 1

// Contact is the body of a contact entry: version byte, 32-byte target key,
// relation byte.
type Contact struct {
	Target ID
	Rel    Relation
}

// Encode returns the contact body.
func (c Contact) Encode() []byte {
	b := make([]byte, 0, 34)
	b = append(b, contactVersion)
	b = append(b, c.Target[:]...)
	return append(b, byte(c.Rel))
}

// DecodeContact parses a contact body.
func DecodeContact(b []byte) (Contact, error) {
	var c Contact
	if len(b) != 34 {
		return c, fmt.Errorf("%w: %d bytes, want 34", ErrBadContact, len(b))
	}
	if b[0] != contactVersion {
		return c, fmt.Errorf("%w: version %d", ErrBadContact, b[0])
	}
	copy(c.Target[:], b[1:33])
	c.Rel = Relation(b[33])
	if c.Rel > RelBlock {
		return c, fmt.Errorf("%w: relation %d", ErrBadContact, b[33])
	}
	return c, nil
}
