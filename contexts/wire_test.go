package contexts

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

func testKey(t testing.TB, n byte) feed.PrivateKey {
	t.Helper()
	k, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{n}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ctxEntry signs the ctx entry of key after head.
func ctxEntry(t testing.TB, key feed.PrivateKey, head feed.Head, room feed.ID, text string) *feed.Entry {
	t.Helper()
	body, err := feed.Ctx{Context: room, Body: []byte(text)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	e, err := feed.Sign(key, head, feed.TypeCtx, body, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestGossipEntry(t *testing.T) {
	room := testKey(t, 9).Public()
	e := ctxEntry(t, testKey(t, 1), feed.Head{}, room, "hi")
	msg := encodeEntry(e)
	g, err := decodeGossip(msg)
	if err != nil || g.entry == nil || g.entry.ID() != e.ID() || g.ctx.Context != room || string(g.ctx.Body) != "hi" {
		t.Fatalf("decode: %+v, %v", g, err)
	}
	for i := range len(msg) {
		if _, err := decodeGossip(msg[:i]); !errors.Is(err, ErrBadGossip) {
			t.Fatalf("truncated to %d: %v", i, err)
		}
	}
	post, err := feed.Sign(testKey(t, 1), feed.Head{}, "post", []byte("x"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeGossip(encodeEntry(post)); !errors.Is(err, ErrBadGossip) {
		t.Fatalf("entry of type post: %v", err)
	}
	if _, err := decodeGossip(append([]byte{9}, msg[1:]...)); !errors.Is(err, ErrBadGossip) {
		t.Fatalf("unknown kind: %v", err)
	}
}

func TestGossipDatagram(t *testing.T) {
	key, room := testKey(t, 1), testKey(t, 9).Public()
	at := time.UnixMilli(1700000000123)
	d, err := signDatagram(key, room, []byte("typing"), at, 42)
	if err != nil {
		t.Fatal(err)
	}
	msg := d.encode()
	g, err := decodeGossip(msg)
	if err != nil || g.dgram == nil {
		t.Fatalf("decode: %v", err)
	}
	got := g.dgram
	if got.Context != room || got.Author != key.Public() || got.Timestamp != at.UnixMilli() || got.Nonce != 42 || string(got.Body) != "typing" || !got.verify() {
		t.Fatalf("round trip: %+v", got)
	}
	if !bytes.Equal(got.encode(), msg) {
		t.Fatal("re-encoding differs")
	}
	for _, i := range []int{1, 33, 65, 73, 81, len(msg) - 1} {
		tampered := bytes.Clone(msg)
		tampered[i] ^= 1
		if g, err := decodeGossip(tampered); err == nil && g.dgram.verify() {
			t.Fatalf("byte %d tampered still verifies", i)
		}
	}
	if _, err := decodeGossip(msg[:datagramFixed+ed25519.SignatureSize-1]); !errors.Is(err, ErrBadGossip) {
		t.Fatalf("short datagram: %v", err)
	}
	if _, err := signDatagram(key, room, make([]byte, MaxDatagramBody+1), at, 1); !errors.Is(err, feed.ErrTooLarge) {
		t.Fatalf("oversized datagram: %v", err)
	}
}

func TestMembersMessages(t *testing.T) {
	ids := []feed.ID{testKey(t, 1).Public(), testKey(t, 2).Public()}
	q := encodeQuery(ids)
	got, err := decodeQuery(q)
	if err != nil || len(got) != 2 || got[0] != ids[0] || got[1] != ids[1] {
		t.Fatalf("query: %v, %v", got, err)
	}
	ms := []member{{ids[1], 7}, {ids[0], 1 << 40}}
	a := encodeAnswer(ids[0], ms)
	ctx, gotM, err := decodeAnswer(a)
	if err != nil || ctx != ids[0] || len(gotM) != 2 || gotM[0] != ms[0] || gotM[1] != ms[1] {
		t.Fatalf("answer: %v %v, %v", ctx, gotM, err)
	}
	for _, b := range [][]byte{q, a} {
		for i := range len(b) {
			_, err1 := decodeQuery(b[:i])
			_, _, err2 := decodeAnswer(b[:i])
			if err1 == nil && err2 == nil {
				t.Fatalf("truncated %x decodes", b[:i])
			}
		}
	}
	big := make([]member, MaxAnswerMembers+5)
	if _, gotM, err := decodeAnswer(encodeAnswer(ids[0], big)); err != nil || len(gotM) != MaxAnswerMembers {
		t.Fatalf("capped answer: %d members, %v", len(gotM), err)
	}
}

func FuzzDecodeGossip(f *testing.F) {
	room := testKey(f, 9).Public()
	f.Add(encodeEntry(ctxEntry(f, testKey(f, 1), feed.Head{}, room, "x")))
	d, _ := signDatagram(testKey(f, 1), room, []byte("d"), time.UnixMilli(1), 1)
	f.Add(d.encode())
	f.Add(encodeQuery([]feed.ID{room}))
	f.Add(encodeAnswer(room, []member{{room, 1}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if g, err := decodeGossip(b); err == nil {
			var again []byte
			if g.entry != nil {
				again = encodeEntry(g.entry)
			} else {
				again = g.dgram.encode()
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("gossip re-encodes to %x", again)
			}
		}
		if ids, err := decodeQuery(b); err == nil && !bytes.Equal(encodeQuery(ids), b) {
			t.Fatal("query re-encodes differently")
		}
		if ctx, ms, err := decodeAnswer(b); err == nil && !bytes.Equal(encodeAnswer(ctx, ms), b) {
			t.Fatal("answer re-encodes differently")
		}
	})
}
