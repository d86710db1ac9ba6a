package feed

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// badSigChain signs n entries in key's feed but gives entry bad (1-based) a
// garbage signature; the entries after it link to it and are signed, so the
// author committed to the bad entry without signing it.
func badSigChain(t testing.TB, key PrivateKey, n, bad int) []*Entry {
	t.Helper()
	var head Head
	var out []*Entry
	for i := range n {
		e, err := Sign(key, head, "post", []byte{byte(i)}, time.UnixMilli(1_700_000_000_000+int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		if i+1 == bad {
			for j := range e.Sig {
				e.Sig[j] = byte(j)
			}
		}
		out = append(out, e)
		head = e.Next()
	}
	return out
}

func TestVerifyRun(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	a := chain(t, alice, 6)
	b := chain(t, bob, 2)
	attack := badSigChain(t, alice, 5, 3)
	fork, err := Sign(alice, a[1].Next(), "post", []byte("other branch"), time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	copyOf := func(e *Entry, f func(*Entry)) *Entry {
		c := *e
		c.Body = append([]byte(nil), e.Body...)
		f(&c)
		return &c
	}
	badLast := copyOf(a[5], func(e *Entry) { e.Sig[7] ^= 1 })
	tampered := copyOf(a[2], func(e *Entry) { e.Body[0] ^= 1 }) // changes its ID too
	badType := copyOf(a[3], func(e *Entry) { e.Type = "Post" })
	forged := copyOf(a[0], func(e *Entry) { e.Sig[0] ^= 1 })
	join := func(ess ...[]*Entry) []*Entry {
		var out []*Entry
		for _, es := range ess {
			out = append(out, es...)
		}
		return out
	}

	cases := []struct {
		name    string
		author  ID
		head    Head
		entries []*Entry
		accept  int
		want    error
	}{
		{"empty", alice.Public(), Head{}, nil, 0, nil},
		{"whole feed", alice.Public(), Head{}, a, 6, nil},
		{"one entry", alice.Public(), Head{}, a[:1], 1, nil},
		{"from the middle", alice.Public(), a[1].Next(), a[2:], 4, nil},
		{"wrong seq after head", alice.Public(), a[0].Next(), a[2:], 0, ErrWrongSeq},
		{"wrong prev after head", alice.Public(), Head{Seq: 2, ID: a[0].ID()}, a[2:], 0, ErrWrongPrev},
		{"another author's feed", bob.Public(), Head{}, a, 0, ErrWrongAuthor},
		{"authors mixed", alice.Public(), Head{}, join(a[:3], b), 3, ErrWrongAuthor},
		{"gap", alice.Public(), Head{}, join(a[:2], a[3:]), 2, ErrWrongSeq},
		{"repeat", alice.Public(), Head{}, join(a[:3], a[2:3]), 3, ErrWrongSeq},
		{"fork entry ends it", alice.Public(), Head{}, join(a[:2], []*Entry{fork}), 3, nil},
		{"fork entry then the other branch", alice.Public(), Head{}, join(a[:2], []*Entry{fork}, a[3:]), 3, ErrWrongPrev},
		{"bad type cuts the run", alice.Public(), Head{}, join(a[:3], []*Entry{badType}, a[4:]), 3, ErrBadType},
		// The last signature fails: entries are checked one by one, and
		// all but the last are the author's.
		{"last signature bad", alice.Public(), Head{}, join(a[:5], []*Entry{badLast}), 5, ErrBadSignature},
		{"only entry forged", alice.Public(), Head{}, []*Entry{forged}, 0, ErrBadSignature},
		{"first forged", alice.Public(), Head{}, join([]*Entry{forged}, a[1:]), 0, ErrBadSignature},
		// A tampered body changes the entry's ID, so the next link breaks;
		// the cut run ends with the tampered entry, whose signature fails.
		{"tampered body", alice.Public(), Head{}, join(a[:2], []*Entry{tampered}, a[3:]), 2, ErrBadSignature},
		// The attack: entry 3 carries garbage for a signature, but entry 5
		// links to it and is signed. The run is authentic and accepted...
		{"bad signature inside, signed after", alice.Public(), Head{}, attack, 5, nil},
		// ...but a run may not end with the unsigned entry.
		{"bad signature last", alice.Public(), Head{}, attack[:3], 2, ErrBadSignature},
		{"bad signature first of a run", alice.Public(), attack[1].Next(), attack[2:3], 0, ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, err := VerifyRun(c.author, c.head, c.entries)
			if len(ids) != c.accept || !errors.Is(err, c.want) || (err == nil) != (c.accept == len(c.entries)) {
				t.Fatalf("VerifyRun accepted %d, %v; want %d, %v", len(ids), err, c.accept, c.want)
			}
			for i, id := range ids {
				if id != c.entries[i].ID() {
					t.Fatalf("ID %d is %s, want %s", i, id, c.entries[i].ID())
				}
			}
		})
	}
	if attack[2].VerifySignature() == nil {
		t.Fatal("the attack entry has a valid signature")
	}
}

// FuzzVerifyRun checks VerifyRun's promises on runs picked from a pool of
// valid, forked, forged and unsigned-but-committed entries, with one entry
// optionally corrupted byte by byte.
func FuzzVerifyRun(f *testing.F) {
	alice, bob := testKey(f, "alice"), testKey(f, "bob")
	a := chain(f, alice, 6)
	attack := badSigChain(f, testKey(f, "mallory"), 6, 3)
	fork, err := Sign(alice, a[1].Next(), "post", []byte("other"), time.UnixMilli(1))
	if err != nil {
		f.Fatal(err)
	}
	pool := append(append(append([]*Entry{}, a...), attack...), fork)
	pool = append(pool, chain(f, bob, 2)...)
	heads := []Head{{}, a[1].Next(), a[2].Next(), attack[1].Next(), attack[2].Next(), fork.Next()}
	authors := []ID{alice.Public(), attack[0].Author, bob.Public()}

	f.Add([]byte{0, 1, 2, 3, 4, 5}, uint8(0), uint16(0xffff), uint16(0))
	f.Add([]byte{6, 7, 8, 9, 10, 11}, uint8(1), uint16(0xffff), uint16(0))
	f.Add([]byte{6, 7, 8}, uint8(1), uint16(0xffff), uint16(0))
	f.Add([]byte{0, 1, 12, 3}, uint8(0), uint16(0xffff), uint16(0))
	f.Add([]byte{0, 1, 2, 3}, uint8(0), uint16(2), uint16(100))
	f.Add([]byte{0, 1, 2, 3}, uint8(0), uint16(3), uint16(300))
	f.Fuzz(func(t *testing.T, sel []byte, hsel uint8, flipAt, flipByte uint16) {
		if len(sel) > 64 {
			return
		}
		es := make([]*Entry, len(sel))
		for i, s := range sel {
			es[i] = pool[int(s)%len(pool)]
		}
		if int(flipAt) < len(es) {
			enc := es[flipAt].Encode()
			enc[int(flipByte)%len(enc)] ^= byte(flipByte>>8) | 1
			e, err := Decode(enc)
			if err != nil {
				return
			}
			es[flipAt] = e
		}
		head := heads[int(hsel)%len(heads)]
		author := authors[int(hsel>>4)%len(authors)]

		ids, err := VerifyRun(author, head, es)
		n := len(ids)
		if n > len(es) || (err == nil) != (n == len(es)) {
			t.Fatalf("accepted %d of %d with error %v", n, len(es), err)
		}
		h := head
		for i, id := range ids {
			if id != es[i].ID() {
				t.Fatalf("ID %d wrong", i)
			}
			if es[i].Check() != nil || es[i].follows(author, h) != nil {
				t.Fatalf("accepted entry %d does not extend the run", i)
			}
			h = Head{Seq: es[i].Seq, ID: id}
		}
		// LinkRun links at least as far, with the same IDs.
		lids, lerr := LinkRun(author, head, es)
		if len(lids) < n || (lerr == nil) != (len(lids) == len(es)) || !slices.Equal(lids[:n], ids) {
			t.Fatalf("LinkRun linked %d (%v), VerifyRun accepted %d", len(lids), lerr, n)
		}
		// The last accepted entry is signed: it authenticates the prefix.
		if n > 0 && es[n-1].VerifySignature() != nil {
			t.Fatalf("run accepted up to entry %d, whose signature is bad", n-1)
		}
		// VerifyRun accepts at least what checking each entry accepts.
		h, perEntry := head, 0
		for _, e := range es {
			if e.Validate(author, h) != nil {
				break
			}
			h = e.Next()
			perEntry++
		}
		if n < perEntry {
			t.Fatalf("VerifyRun accepted %d, entry by entry %d", n, perEntry)
		}
	})
}
