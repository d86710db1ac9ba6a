package api

import (
	"encoding/base64"
	"unicode/utf8"

	"github.com/contextd/contextd/feed"
)

// Entry is a feed entry as the RPC shows it. Body always carries the bytes
// (base64); Text repeats them as a string when they are valid UTF-8, for
// clients that only deal in text. Sig lets a client check the entry itself:
// Feed rebuilds the signed entry, whose ID() must equal ID.
type Entry struct {
	Seq       uint64    `json:"seq"`
	ID        feed.Hash `json:"id"`
	Author    feed.ID   `json:"author"`
	Prev      feed.Hash `json:"prev,omitzero"` // absent at seq 1
	Timestamp int64     `json:"timestamp"`     // claimed, Unix milliseconds
	Type      string    `json:"type"`
	Body      []byte    `json:"body"`
	Text      string    `json:"text,omitempty"`
	Sig       []byte    `json:"sig"`
}

// FromFeed converts a stored entry to its RPC form.
func FromFeed(e *feed.Entry) Entry {
	out := Entry{
		Seq:       e.Seq,
		ID:        e.ID(),
		Author:    e.Author,
		Prev:      e.Prev,
		Timestamp: e.Timestamp,
		Type:      e.Type,
		Body:      e.Body,
		Sig:       e.Sig[:],
	}
	if out.Body == nil {
		out.Body = []byte{}
	}
	if utf8.Valid(e.Body) {
		out.Text = string(e.Body)
	}
	return out
}

// Feed rebuilds the signed feed entry. It does not check it: call
// Validate or VerifySignature and compare ID() with e.ID.
func (e Entry) Feed() *feed.Entry {
	out := &feed.Entry{
		Author:    e.Author,
		Seq:       e.Seq,
		Prev:      e.Prev,
		Timestamp: e.Timestamp,
		Type:      e.Type,
		Body:      e.Body,
	}
	copy(out.Sig[:], e.Sig)
	return out
}

// maxEntryOverhead bounds the JSON of an entry without body and text:
// field names, numbers, two IDs, a hash, a type and a base64 signature.
const maxEntryOverhead = 512

// EncodedSizeBound returns an upper bound of the JSON encoding of e,
// assuming every byte of Text needs the longest escape (\u00XX).
func (e Entry) EncodedSizeBound() int {
	return maxEntryOverhead + len(e.Type)*6 + base64.StdEncoding.EncodedLen(len(e.Body)) + len(e.Text)*6
}
