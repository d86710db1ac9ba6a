package main

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/feed"
)

// TestForgedEntry checks that the gossip spam looks valid but for its
// signature: an ENTRY message whose entry decodes as a ctx entry of the
// context, whose body decodes, that chains to the head, and whose
// signature fails; the huge one stays under pubsub's 1 MiB.
func TestForgedEntry(t *testing.T) {
	key, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cxKey, err := feed.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cx := cxKey.Public()
	for i, huge := range []bool{false, true} {
		msg, end, err := forgedEntry(key, cx, huge)
		if err != nil {
			t.Fatal(err)
		}
		if msg[0] != 1 {
			t.Fatalf("message %d: kind %d, want 1 (ENTRY)", i, msg[0])
		}
		if huge != (len(msg) > 512<<10) || len(msg) > 1<<20 {
			t.Fatalf("message %d: %d bytes (huge %t)", i, len(msg), huge)
		}
		e, err := feed.Decode(msg[1:end])
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if e.Type != feed.TypeCtx || e.Seq != 1 {
			t.Fatalf("message %d: type %q seq %d", i, e.Type, e.Seq)
		}
		if c, err := feed.DecodeCtx(e.Body); err != nil || c.Context != cx {
			t.Fatalf("message %d: ctx body: %v (context %s)", i, err, c.Context.Short())
		}
		if err := e.Validate(key.Public(), feed.Head{}); !errors.Is(err, feed.ErrBadSignature) {
			t.Fatalf("message %d: validate: %v, want a bad signature", i, err)
		}
	}
}

// TestRandomNotes checks the NOTES layout of docs/protocols/ebt.md: type
// 2, a uvarint count, then count × (32-byte feed, varint note), each note
// asking for the feed.
func TestRandomNotes(t *testing.T) {
	const n = 100
	b := randomNotes(nil, n)
	if b[0] != ebtNotes {
		t.Fatalf("type %d", b[0])
	}
	count, k := binary.Uvarint(b[1:])
	if count != n {
		t.Fatalf("count %d, want %d", count, n)
	}
	b = b[1+k:]
	for i := range n {
		if len(b) < 33 {
			t.Fatalf("note %d: %d bytes left", i, len(b))
		}
		v, k := binary.Varint(b[32:])
		if k <= 0 || !ebt.Note(v).Rx() || ebt.Note(v).Seq() < 1 {
			t.Fatalf("note %d: %d (%v)", i, v, ebt.Note(v))
		}
		b = b[32+k:]
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes after the notes", len(b))
	}
}
