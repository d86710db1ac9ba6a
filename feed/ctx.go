package feed

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Context entry types. A context is a key; its messages are
// entries of type TypeCtx in their authors' own feeds, and the context
// key's own feed describes it (TypeCtxMeta) and bans authors (a contact
// entry with RelBlock, written by the context key).
const (
	TypeCtx     = "ctx"
	TypeCtxMeta = "ctxmeta"
)

// Limits of context bodies.
const (
	// MaxCtxBody is the largest app body a ctx entry carries.
	MaxCtxBody = MaxBodySize - ctxFixed
	// MaxCtxName and MaxCtxDescription bound a context's meta.
	MaxCtxName        = 128
	MaxCtxDescription = 1024
)

// ErrBadCtx reports a ctx or ctxmeta body that does not parse, or one that
// cannot be encoded.
var ErrBadCtx = errors.New("feed: bad context body")

const (
	ctxVersion = 1
	ctxFixed   = 1 + len(ID{}) // version, context key
	metaFixed  = 1 + 2 + 2 + 1 // version, name length, description length, flags
	// metaWide is the flag of a wide context (CtxMeta.Wide); the other
	// bits are reserved and must be zero.
	metaWide = 1 << 0
)

// Ctx is the body of a ctx entry: version byte, the 32-byte context key,
// then the app's body (0 to MaxCtxBody bytes, opaque).
type Ctx struct {
	Context ID
	Body    []byte
}

// Encode returns the ctx body; ErrBadCtx for a zero context or a body over
// MaxCtxBody.
func (c Ctx) Encode() ([]byte, error) {
	if c.Context.IsZero() {
		return nil, fmt.Errorf("%w: zero context", ErrBadCtx)
	}
	if len(c.Body) > MaxCtxBody {
		return nil, fmt.Errorf("%w: body is %d bytes, limit %d", ErrTooLarge, len(c.Body), MaxCtxBody)
	}
	b := make([]byte, 0, ctxFixed+len(c.Body))
	b = append(b, ctxVersion)
	b = append(b, c.Context[:]...)
	return append(b, c.Body...), nil
}

// DecodeCtx parses a ctx body. The returned Body aliases b.
func DecodeCtx(b []byte) (Ctx, error) {
	var c Ctx
	if len(b) < ctxFixed {
		return c, fmt.Errorf("%w: %d bytes, shorter than %d", ErrBadCtx, len(b), ctxFixed)
	}
	if b[0] != ctxVersion {
		return c, fmt.Errorf("%w: version %d", ErrBadCtx, b[0])
	}
	copy(c.Context[:], b[1:ctxFixed])
	if c.Context.IsZero() {
		return c, fmt.Errorf("%w: zero context", ErrBadCtx)
	}
	c.Body = b[ctxFixed:]
	return c, nil
}

// CtxMeta is the body of a ctxmeta entry, valid only in the context key's
// own feed: version byte, name length (uint16 BE), description length
// (uint16 BE), a flags byte (bit 0: Wide; the others zero), then name and
// description, both UTF-8. The latest one describes the context.
type CtxMeta struct {
	Name        string
	Description string
	// Wide marks a context meant for a large audience (a broadcast, a
	// stream): its members gossip over a wide mesh, short paths at the
	// price of more copies, where a room's mesh is lean.
	Wide bool
}

// Encode returns the ctxmeta body; ErrBadCtx for text that is not UTF-8 or
// over its limit.
func (m CtxMeta) Encode() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, metaFixed+len(m.Name)+len(m.Description))
	b = append(b, ctxVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Name)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Description)))
	var flags byte
	if m.Wide {
		flags |= metaWide
	}
	b = append(b, flags)
	b = append(b, m.Name...)
	return append(b, m.Description...), nil
}

func (m CtxMeta) check() error {
	switch {
	case len(m.Name) > MaxCtxName:
		return fmt.Errorf("%w: name is %d bytes, limit %d", ErrBadCtx, len(m.Name), MaxCtxName)
	case len(m.Description) > MaxCtxDescription:
		return fmt.Errorf("%w: description is %d bytes, limit %d", ErrBadCtx, len(m.Description), MaxCtxDescription)
	case !utf8.ValidString(m.Name) || !utf8.ValidString(m.Description):
		return fmt.Errorf("%w: name or description is not UTF-8", ErrBadCtx)
	}
	return nil
}

// DecodeCtxMeta parses a ctxmeta body, which must fill b exactly.
func DecodeCtxMeta(b []byte) (CtxMeta, error) {
	var m CtxMeta
	if len(b) < metaFixed {
		return m, fmt.Errorf("%w: meta of %d bytes, shorter than %d", ErrBadCtx, len(b), metaFixed)
	}
	if b[0] != ctxVersion {
		return m, fmt.Errorf("%w: meta version %d", ErrBadCtx, b[0])
	}
	nl, dl := int(binary.BigEndian.Uint16(b[1:])), int(binary.BigEndian.Uint16(b[3:]))
	if len(b) != metaFixed+nl+dl {
		return m, fmt.Errorf("%w: meta of %d bytes for a name of %d and a description of %d", ErrBadCtx, len(b), nl, dl)
	}
	flags := b[metaFixed-1]
	if flags&^metaWide != 0 {
		return m, fmt.Errorf("%w: meta flags %#x", ErrBadCtx, flags)
	}
	m.Wide = flags&metaWide != 0
	m.Name = string(b[metaFixed : metaFixed+nl])
	m.Description = string(b[metaFixed+nl:])
	return m, m.check()
}
