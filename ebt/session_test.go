package ebt

import (
	"bytes"
	"testing"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/store"
)

// drain returns every message the outbox has ready.
func drain(t *testing.T, o *outbox) []message {
	t.Helper()
	var out []message
	for {
		b, _, err := o.next()
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			return out
		}
		if len(b) > MaxMessageSize {
			t.Fatalf("message of %d bytes", len(b))
		}
		m, err := decodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

func TestOutbox(t *testing.T) {
	st := store.NewMem()
	big := newChain(t, "big")
	for range 100 {
		big.next("post", bytes.Repeat([]byte{1}, feed.MaxBodySize))
	}
	small := newChain(t, "small")
	small.add(10)
	for _, c := range []*chain{big, small} {
		if err := st.Append(c.entries); err != nil {
			t.Fatal(err)
		}
	}
	var o outbox
	o.init(st)
	o.hello = true

	// Notes come first, in messages of at most MaxNotes, after HELLO.
	notes := make([]feedNote, MaxNotes+5)
	for i := range notes {
		notes[i].Feed[0], notes[i].Feed[1] = byte(i>>8), byte(i)
	}
	o.queue(small.id, 1, 10)
	o.addNotes(notes)
	ms := drain(t, &o)
	if len(ms) < 4 || ms[0].typ != msgHello || len(ms[1].notes) != MaxNotes || len(ms[2].notes) != 5 || ms[3].typ != msgEntries {
		t.Fatalf("first messages: %d", len(ms))
	}
	// An empty addNotes still sends a NOTES message.
	o.addNotes(nil)
	if ms := drain(t, &o); len(ms) != 1 || ms[0].typ != msgNotes || len(ms[0].notes) != 0 {
		t.Fatalf("empty notes: %+v", ms)
	}

	// Ranges are split to fit MaxMessageSize, feeds take turns, and a
	// cancelled range stops.
	o.queue(big.id, 1, 100)
	o.queue(small.id, 3, 4)
	o.queue(small.id, 5, 6) // extends
	ms = drain(t, &o)
	var got = map[feed.ID][]uint64{}
	for _, m := range ms {
		for _, raw := range m.entries {
			e, err := feed.Decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			got[e.Author] = append(got[e.Author], e.Seq)
		}
	}
	if len(got[big.id]) != 100 || got[big.id][99] != 100 || len(ms) < 3 {
		t.Errorf("big feed: %d entries in %d messages", len(got[big.id]), len(ms))
	}
	if s := got[small.id]; len(s) != 4 || s[0] != 3 || s[3] != 6 {
		t.Errorf("small feed: %v", s)
	}
	if ms[1].typ != msgEntries || len(ms[1].entries) != 4 {
		t.Errorf("small feed did not get its turn second: %+v", ms[1].typ)
	}
	o.queue(big.id, 1, 100)
	o.cancel(big.id)
	if ms := drain(t, &o); len(ms) != 0 {
		t.Errorf("cancelled range sent %d messages", len(ms))
	}
	// A range past what the store holds is dropped, not spun on.
	o.queue(small.id, 11, 20)
	if ms := drain(t, &o); len(ms) != 0 {
		t.Errorf("sent %d messages of entries the store lacks", len(ms))
	}
}
