package ebt

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/contextd/contextd/feed"
)

// Service is the name of the flitlink circuit EBT runs on (class Data). The
// major version is part of the name; Capability in HELLO is the minor one.
const Service = "ebt/1"

// Capability is what this implementation announces in HELLO: the revision
// of the ebt/1 message set it speaks. Revision 1 is HELLO, NOTES and ENTRIES.
const Capability = 1

// Limits of the wire format. A peer that exceeds them has its message
// rejected (a protocol error ends the session) before anything is allocated.
const (
	// MaxMessageSize is the largest message either side sends or accepts:
	// flitlink's default message limit.
	MaxMessageSize = 1 << 20
	// MaxNotes is the most notes one NOTES message carries. A clock with
	// more feeds travels in several NOTES messages.
	MaxNotes = 8192
	// MaxEntriesPerMsg is the most entries one ENTRIES message carries. It
	// does not exceed store.MaxBatch, so each author's entries of one
	// message are appended in one store batch.
	MaxEntriesPerMsg = 4096
)

// Message types: the first byte of every message. Types only grow; a
// receiver ignores a type it does not know.
const (
	msgHello   byte = 0x01
	msgNotes   byte = 0x02
	msgEntries byte = 0x03
)

// Sizes used to bound counts before allocating.
const (
	minNoteSize  = len(feed.ID{}) + 1 // id + shortest varint
	minEntrySize = 1 + 1              // shortest length prefix + one byte
	maxVarintLen = binary.MaxVarintLen64
)

// ErrProtocol reports a message that breaks the ebt/1 wire format or
// message order. It ends the session.
var ErrProtocol = errors.New("ebt: protocol violation")

// Note is one feed's entry in a vector clock: DontReplicate (-1), or
// seq<<1 | noRx, where seq is how far the sender has the feed and noRx = 0
// asks the receiver to push the entries after seq, noRx = 1 says "I have
// seq, do not push".
type Note int64

// DontReplicate is the note that declines a feed: "do not replicate this
// feed with me".
const DontReplicate Note = -1

// maxNoteSeq is the largest seq a note can carry.
const maxNoteSeq = 1<<62 - 1

// MakeNote returns the note for a feed held up to seq, asking the receiver
// to push it when rx is true. A seq beyond what a note can carry is clamped.
func MakeNote(seq uint64, rx bool) Note {
	seq = min(seq, maxNoteSeq)
	n := Note(seq << 1)
	if !rx {
		n |= 1
	}
	return n
}

// Replicate reports whether the note is not DontReplicate.
func (n Note) Replicate() bool { return n >= 0 }

// Seq returns how far the sender has the feed (0 for DontReplicate).
func (n Note) Seq() uint64 {
	if n < 0 {
		return 0
	}
	return uint64(n) >> 1
}

// Rx reports whether the sender asks the receiver to push the feed.
func (n Note) Rx() bool { return n >= 0 && n&1 == 0 }

// String formats the note for logs and test failures.
func (n Note) String() string {
	switch {
	case n == DontReplicate:
		return "-1"
	case n < 0:
		return fmt.Sprintf("invalid(%d)", int64(n))
	case n.Rx():
		return fmt.Sprintf("%d+rx", n.Seq())
	}
	return fmt.Sprintf("%d", n.Seq())
}

// feedNote is one note of a NOTES message.
type feedNote struct {
	Feed feed.ID
	Note Note
}

// message is a decoded message: exactly one of its forms is set, by typ.
type message struct {
	typ        byte
	capability uint64     // msgHello
	notes      []feedNote // msgNotes
	entries    [][]byte   // msgEntries: canonical entry encodings (aliasing the input)
}

// appendHello appends a HELLO message.
func appendHello(dst []byte, capability uint64) []byte {
	dst = append(dst, msgHello)
	return binary.AppendUvarint(dst, capability)
}

// appendNotes appends a NOTES message. len(notes) must not exceed MaxNotes.
func appendNotes(dst []byte, notes []feedNote) []byte {
	dst = append(dst, msgNotes)
	dst = binary.AppendUvarint(dst, uint64(len(notes)))
	for _, n := range notes {
		dst = append(dst, n.Feed[:]...)
		dst = binary.AppendVarint(dst, int64(n.Note))
	}
	return dst
}

// entriesHeaderSize bounds the type byte and count of an ENTRIES message.
const entriesHeaderSize = 1 + maxVarintLen

// entryFrameSize is the size an encoded entry of n bytes takes in ENTRIES.
func entryFrameSize(n int) int {
	var b [maxVarintLen]byte
	return binary.PutUvarint(b[:], uint64(n)) + n
}

// appendEntries appends an ENTRIES message of already encoded entries.
func appendEntries(dst []byte, encoded [][]byte) []byte {
	dst = append(dst, msgEntries)
	dst = binary.AppendUvarint(dst, uint64(len(encoded)))
	for _, e := range encoded {
		dst = binary.AppendUvarint(dst, uint64(len(e)))
		dst = append(dst, e...)
	}
	return dst
}

// decodeMessage parses one message. Every count and length is checked
// against its limit and against the bytes actually present before anything
// is allocated. An unknown type decodes to a message with only typ set (the
// caller ignores it). Entry encodings are returned undecoded, aliasing b.
func decodeMessage(b []byte) (message, error) {
	if len(b) == 0 {
		return message{}, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	if len(b) > MaxMessageSize {
		return message{}, fmt.Errorf("%w: message of %d bytes, limit %d", ErrProtocol, len(b), MaxMessageSize)
	}
	m := message{typ: b[0]}
	p := b[1:]
	switch m.typ {
	case msgHello:
		c, n := binary.Uvarint(p)
		if n <= 0 {
			return message{}, fmt.Errorf("%w: HELLO capability", ErrProtocol)
		}
		// Later revisions may add fields after the capability.
		m.capability = c
	case msgNotes:
		count, n := binary.Uvarint(p)
		if n <= 0 {
			return message{}, fmt.Errorf("%w: NOTES count", ErrProtocol)
		}
		p = p[n:]
		if count > MaxNotes || count > uint64(len(p)/minNoteSize) {
			return message{}, fmt.Errorf("%w: NOTES count %d (limit %d) in %d bytes", ErrProtocol, count, MaxNotes, len(p))
		}
		m.notes = make([]feedNote, count)
		for i := range m.notes {
			if len(p) < len(feed.ID{}) {
				return message{}, fmt.Errorf("%w: NOTES truncated", ErrProtocol)
			}
			p = p[copy(m.notes[i].Feed[:], p):]
			v, n := binary.Varint(p)
			if n <= 0 {
				return message{}, fmt.Errorf("%w: NOTES value", ErrProtocol)
			}
			if v < int64(DontReplicate) {
				return message{}, fmt.Errorf("%w: note %d", ErrProtocol, v)
			}
			m.notes[i].Note = Note(v)
			p = p[n:]
		}
		if len(p) != 0 {
			return message{}, fmt.Errorf("%w: %d bytes after NOTES", ErrProtocol, len(p))
		}
	case msgEntries:
		count, n := binary.Uvarint(p)
		if n <= 0 {
			return message{}, fmt.Errorf("%w: ENTRIES count", ErrProtocol)
		}
		p = p[n:]
		if count > MaxEntriesPerMsg || count > uint64(len(p)/minEntrySize) {
			return message{}, fmt.Errorf("%w: ENTRIES count %d (limit %d) in %d bytes", ErrProtocol, count, MaxEntriesPerMsg, len(p))
		}
		m.entries = make([][]byte, count)
		for i := range m.entries {
			size, n := binary.Uvarint(p)
			if n <= 0 {
				return message{}, fmt.Errorf("%w: ENTRIES length", ErrProtocol)
			}
			p = p[n:]
			if size == 0 || size > feed.MaxEncodedSize || size > uint64(len(p)) {
				return message{}, fmt.Errorf("%w: entry of %d bytes (limit %d) in %d bytes", ErrProtocol, size, feed.MaxEncodedSize, len(p))
			}
			m.entries[i] = p[:size:size]
			p = p[size:]
		}
		if len(p) != 0 {
			return message{}, fmt.Errorf("%w: %d bytes after ENTRIES", ErrProtocol, len(p))
		}
	case 0:
		return message{}, fmt.Errorf("%w: message type 0", ErrProtocol)
	}
	return m, nil
}

// encodeMessage encodes m; it is decodeMessage's inverse for known types.
func encodeMessage(m message) []byte {
	switch m.typ {
	case msgHello:
		return appendHello(nil, m.capability)
	case msgNotes:
		return appendNotes(nil, m.notes)
	case msgEntries:
		return appendEntries(nil, m.entries)
	}
	return []byte{m.typ}
}
