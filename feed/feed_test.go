package feed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
)

// testKey derives a deterministic key from a label.
func testKey(t testing.TB, label string) PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte(label))
	k, err := PrivateKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// chain signs n entries in key's feed with fixed timestamps.
func chain(t testing.TB, key PrivateKey, n int) []*Entry {
	t.Helper()
	var head Head
	var out []*Entry
	for i := range n {
		e, err := Sign(key, head, "post", []byte("entry "+string(rune('a'+i%26))), time.UnixMilli(1_700_000_000_000+int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		head = e.Next()
	}
	return out
}

func TestIDMatchesLibp2p(t *testing.T) {
	for _, label := range []string{"alice", "bob", "carol"} {
		k := testKey(t, label)
		id := k.Public()
		pub, err := crypto.UnmarshalEd25519PublicKey(id[:])
		if err != nil {
			t.Fatal(err)
		}
		pid, err := peer.IDFromPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		if id.String() != pid.String() {
			t.Fatalf("ID %s, libp2p says %s", id, pid)
		}
		if !bytes.Equal(id.PeerIDBytes(), []byte(pid)) {
			t.Fatalf("peer ID bytes differ")
		}
		if !strings.HasPrefix(id.String(), "12D3KooW") {
			t.Fatalf("ID %s lacks the ed25519 peer ID prefix", id)
		}
		back, err := ParseID(pid.String())
		if err != nil || back != id {
			t.Fatalf("ParseID(%s) = %v, %v", pid, back, err)
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	rsa := "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N" // a sha256 peer ID, not an inline ed25519 key
	for _, s := range []string{"", "x", "0OIl", rsa, strings.Repeat("1", 65), "12D3KooW"} {
		if _, err := ParseID(s); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) = %v, want ErrBadID", s, err)
		}
	}
	var id ID
	if err := id.UnmarshalText([]byte("nope")); !errors.Is(err, ErrBadID) {
		t.Errorf("UnmarshalText: %v", err)
	}
}

func TestHashMatchesGoCID(t *testing.T) {
	e := chain(t, testKey(t, "alice"), 1)[0]
	enc := e.Encode()
	mh, err := multihash.Sum(enc, multihash.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	want := cid.NewCidV1(cid.Raw, mh).String()
	if got := e.ID().String(); got != want {
		t.Fatalf("ID %s, go-cid says %s", got, want)
	}
	h, err := ParseHash(want)
	if err != nil || h != e.ID() {
		t.Fatalf("ParseHash = %v, %v", h, err)
	}
	for _, s := range []string{"", "b", "Qm", "bafy", "b" + strings.Repeat("a", 90), want[:len(want)-1]} {
		if _, err := ParseHash(s); !errors.Is(err, ErrBadHash) {
			t.Errorf("ParseHash(%q) = %v, want ErrBadHash", s, err)
		}
	}
}

func TestPrivateKeyRedacted(t *testing.T) {
	k := testKey(t, "alice")
	seedHex := hex.EncodeToString(k.Seed())
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		got := fmt.Sprintf(verb, k)
		if strings.Contains(got, seedHex[:16]) || !strings.Contains(got, "redacted") {
			t.Errorf("%s prints %q", verb, got)
		}
	}
	k2, err := PrivateKeyFromSeed(k.Seed())
	if err != nil || k2.Public() != k.Public() {
		t.Fatalf("seed round trip: %v", err)
	}
	if _, err := PrivateKeyFromSeed([]byte{1, 2}); err == nil {
		t.Fatal("short seed accepted")
	}
}

func TestSignValidateChain(t *testing.T) {
	k := testKey(t, "alice")
	es := chain(t, k, 5)
	var head Head
	for _, e := range es {
		if err := e.Validate(k.Public(), head); err != nil {
			t.Fatalf("seq %d: %v", e.Seq, err)
		}
		head = e.Next()
	}
}

func TestValidateRejects(t *testing.T) {
	alice, bob := testKey(t, "alice"), testKey(t, "bob")
	es := chain(t, alice, 3)
	head2 := es[1].Next()
	mutate := func(f func(e *Entry)) *Entry {
		c := *es[2]
		c.Body = append([]byte(nil), c.Body...)
		f(&c)
		return &c
	}
	cases := []struct {
		name   string
		e      *Entry
		author ID
		head   Head
		want   error
	}{
		{"bad signature", mutate(func(e *Entry) { e.Sig[0] ^= 1 }), alice.Public(), head2, ErrBadSignature},
		{"body changed", mutate(func(e *Entry) { e.Body[0] ^= 1 }), alice.Public(), head2, ErrBadSignature},
		{"wrong seq", es[2], alice.Public(), es[0].Next(), ErrWrongSeq},
		{"wrong prev", es[2], alice.Public(), Head{Seq: 2, ID: es[0].ID()}, ErrWrongPrev},
		{"wrong author", es[2], bob.Public(), head2, ErrWrongAuthor},
		{"too large", mutate(func(e *Entry) { e.Body = make([]byte, MaxBodySize+1) }), alice.Public(), head2, ErrTooLarge},
		{"bad type", mutate(func(e *Entry) { e.Type = "Post" }), alice.Public(), head2, ErrBadType},
		{"empty type", mutate(func(e *Entry) { e.Type = "" }), alice.Public(), head2, ErrBadType},
		{"seq zero", mutate(func(e *Entry) { e.Seq = 0 }), alice.Public(), head2, ErrBadSeq},
		{"zero prev after 1", mutate(func(e *Entry) { e.Prev = Hash{} }), alice.Public(), head2, ErrWrongPrev},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.e.Validate(c.author, c.head); !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
}

func TestSignRejectsBadInput(t *testing.T) {
	k := testKey(t, "alice")
	if _, err := Sign(k, Head{}, "post", make([]byte, 20<<10), time.Now()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("20 KiB body: %v", err)
	}
	if _, err := Sign(k, Head{}, "has space", nil, time.Now()); !errors.Is(err, ErrBadType) {
		t.Fatalf("bad type: %v", err)
	}
	if _, err := Sign(k, Head{}, strings.Repeat("a", MaxTypeLen+1), nil, time.Now()); !errors.Is(err, ErrBadType) {
		t.Fatalf("long type: %v", err)
	}
	e, err := Sign(k, Head{}, strings.Repeat("a", MaxTypeLen), make([]byte, MaxBodySize), time.Now())
	if err != nil {
		t.Fatalf("entry at the limits: %v", err)
	}
	if n := len(e.Encode()); n != MaxEncodedSize {
		t.Fatalf("largest entry encodes to %d bytes, MaxEncodedSize is %d", n, MaxEncodedSize)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, e := range chain(t, testKey(t, "alice"), 3) {
		enc := e.Encode()
		d, err := Decode(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(d.Encode(), enc) || d.ID() != e.ID() {
			t.Fatalf("round trip changed seq %d", e.Seq)
		}
		// The decoded entry must not alias the input.
		enc[len(enc)-65] ^= 0xff
		if d.ID() != e.ID() {
			t.Fatal("decoded entry aliases its input")
		}
	}
}

func TestDecodeTruncatedAtEveryByte(t *testing.T) {
	enc := chain(t, testKey(t, "alice"), 2)[1].Encode()
	for n := range len(enc) {
		if _, err := Decode(enc[:n]); err == nil {
			t.Fatalf("Decode accepted %d of %d bytes", n, len(enc))
		}
	}
	if _, err := Decode(append(enc, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	enc := chain(t, testKey(t, "alice"), 1)[0].Encode()
	v2 := append([]byte{2}, enc[1:]...)
	if _, err := Decode(v2); !errors.Is(err, ErrUnknownVersion) {
		t.Errorf("version 2: %v", err)
	}
	huge := append([]byte(nil), enc...)
	bodyLenAt := headerSize + len("post")
	huge[bodyLenAt], huge[bodyLenAt+1] = 0xff, 0xff // claims a ~4 GiB body
	if _, err := Decode(huge); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge body length: %v", err)
	}
	bigType := append([]byte(nil), enc...)
	bigType[headerSize-1] = 200
	if _, err := Decode(bigType); !errors.Is(err, ErrBadType) {
		t.Errorf("type length 200: %v", err)
	}
	if _, err := Decode(make([]byte, MaxEncodedSize+1)); err == nil {
		t.Error("oversized input accepted")
	}
}

func TestDecodeAll(t *testing.T) {
	a := chain(t, testKey(t, "alice"), 3)
	empty, err := Sign(testKey(t, "bob"), Head{}, "contact", nil, time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	encs := [][]byte{a[0].Encode(), {2, 1, 3}, a[1].Encode(), empty.Encode(), a[2].Encode(), nil}
	es, errs := DecodeAll(encs)
	if len(es) != 4 || len(errs) != 2 || !errors.Is(errs[0], ErrUnknownVersion) || !errors.Is(errs[1], ErrMalformed) {
		t.Fatalf("DecodeAll = %d entries, errors %v", len(es), errs)
	}
	for i, want := range []*Entry{a[0], a[1], empty, a[2]} {
		if es[i].ID() != want.ID() {
			t.Errorf("entry %d is not seq %d of %s", i, want.Seq, want.Author.Short())
		}
	}
	if es[2].Body != nil {
		t.Errorf("empty body decoded as %v, want nil as Decode does", es[2].Body)
	}
	// No entry aliases the input or another entry's body.
	for _, b := range encs {
		clear(b)
	}
	es[0].Body = append(es[0].Body, 'x')
	if es[1].ID() != a[1].ID() || es[3].ID() != a[2].ID() {
		t.Error("entries changed with the input or a neighbour's body")
	}
}

func TestForkProof(t *testing.T) {
	k := testKey(t, "alice")
	a, err := Sign(k, Head{}, "post", []byte("one"), time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Sign(k, Head{}, "post", []byte("other"), time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewForkProof(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Author() != k.Public() || p.Seq() != 1 {
		t.Fatalf("proof of %s at %d", p.Author(), p.Seq())
	}
	d, err := DecodeForkProof(p.Encode())
	if err != nil || d.A.ID() != a.ID() || d.B.ID() != b.ID() {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := NewForkProof(a, a); !errors.Is(err, ErrNotFork) {
		t.Errorf("same entry: %v", err)
	}
	other := chain(t, testKey(t, "bob"), 1)[0]
	if _, err := NewForkProof(a, other); !errors.Is(err, ErrNotFork) {
		t.Errorf("two authors: %v", err)
	}
	forged := *b
	forged.Sig[3] ^= 1
	if _, err := NewForkProof(a, &forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged second entry: %v", err)
	}
	enc := p.Encode()
	for n := range len(enc) {
		if _, err := DecodeForkProof(enc[:n]); err == nil {
			t.Fatalf("DecodeForkProof accepted %d of %d bytes", n, len(enc))
		}
	}
}

func TestContact(t *testing.T) {
	target := testKey(t, "bob").Public()
	for _, rel := range []Relation{RelNone, RelFollow, RelBlock} {
		c, err := DecodeContact(Contact{Target: target, Rel: rel}.Encode())
		if err != nil || c.Target != target || c.Rel != rel {
			t.Fatalf("%v: %+v, %v", rel, c, err)
		}
	}
	bad := Contact{Target: target}.Encode()
	bad[33] = 3
	for _, b := range [][]byte{nil, bad, {2}, Contact{Target: target}.Encode()[:20]} {
		if _, err := DecodeContact(b); !errors.Is(err, ErrBadContact) {
			t.Errorf("DecodeContact(%x) = %v", b, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, e := range chain(f, testKey(f, "alice"), 3) {
		f.Add(e.Encode())
	}
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		// DecodeAll agrees with Decode, also on the same bytes twice.
		all, errs := DecodeAll([][]byte{b, b})
		if (err != nil) != (len(errs) == 2) || len(all)+len(errs) != 2 {
			t.Fatalf("Decode: %v; DecodeAll: %d entries, %v", err, len(all), errs)
		}
		if err != nil {
			return
		}
		for _, d := range all {
			if !reflect.DeepEqual(d, e) {
				t.Fatalf("DecodeAll gave %+v, Decode %+v", d, e)
			}
		}
		if !bytes.Equal(e.Encode(), b) {
			t.Fatalf("decoded entry re-encodes differently")
		}
		if e.Check() != nil {
			t.Fatalf("Decode returned an entry that fails Check")
		}
	})
}

func FuzzDecodeForkProof(f *testing.F) {
	k := testKey(f, "alice")
	a, _ := Sign(k, Head{}, "post", []byte("one"), time.UnixMilli(1))
	b, _ := Sign(k, Head{}, "post", []byte("two"), time.UnixMilli(1))
	f.Add((&ForkProof{A: a, B: b}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeForkProof(b)
		if err != nil {
			return
		}
		if !bytes.Equal(p.Encode(), b) {
			t.Fatalf("fork proof re-encodes differently")
		}
	})
}

func FuzzParseID(f *testing.F) {
	f.Add(testKey(f, "alice").Public().String())
	f.Add("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err == nil && id.String() != s {
			t.Fatalf("ParseID(%q) prints as %q", s, id)
		}
	})
}
