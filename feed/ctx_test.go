package feed

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestCtxEncoding(t *testing.T) {
	var room ID
	room[0], room[31] = 7, 9
	for _, body := range [][]byte{nil, []byte("hi"), bytes.Repeat([]byte{0xff}, MaxCtxBody)} {
		enc, err := Ctx{Context: room, Body: body}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if len(enc) != 1+32+len(body) || len(enc) > MaxBodySize {
			t.Fatalf("encoded %d bytes for a body of %d", len(enc), len(body))
		}
		got, err := DecodeCtx(enc)
		if err != nil || got.Context != room || !bytes.Equal(got.Body, body) {
			t.Fatalf("round trip: %+v, %v", got, err)
		}
		for i := range min(len(enc), 33) {
			if _, err := DecodeCtx(enc[:i]); !errors.Is(err, ErrBadCtx) {
				t.Fatalf("truncated to %d: %v", i, err)
			}
		}
	}
	if _, err := (Ctx{Context: room, Body: make([]byte, MaxCtxBody+1)}).Encode(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized body: %v", err)
	}
	if _, err := (Ctx{Body: []byte("x")}).Encode(); !errors.Is(err, ErrBadCtx) {
		t.Fatalf("zero context: %v", err)
	}
	bad := append([]byte{2}, room[:]...)
	if _, err := DecodeCtx(bad); !errors.Is(err, ErrBadCtx) {
		t.Fatalf("version 2: %v", err)
	}
	if _, err := DecodeCtx(make([]byte, 40)); !errors.Is(err, ErrBadCtx) {
		t.Fatalf("version 0 / zero context: %v", err)
	}
}

func TestCtxMetaEncoding(t *testing.T) {
	for _, m := range []CtxMeta{{}, {Name: "room"}, {Name: "stage", Wide: true}, {Name: "ünï", Description: strings.Repeat("d", MaxCtxDescription)}} {
		enc, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeCtxMeta(enc)
		if err != nil || got != m {
			t.Fatalf("round trip %+v: %+v, %v", m, got, err)
		}
		for i := range len(enc) {
			if _, err := DecodeCtxMeta(enc[:i]); !errors.Is(err, ErrBadCtx) {
				t.Fatalf("truncated to %d: %v", i, err)
			}
		}
		if _, err := DecodeCtxMeta(append(enc, 0)); !errors.Is(err, ErrBadCtx) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	for _, m := range []CtxMeta{
		{Name: strings.Repeat("n", MaxCtxName+1)},
		{Description: strings.Repeat("d", MaxCtxDescription+1)},
		{Name: "\xff"},
	} {
		if _, err := m.Encode(); !errors.Is(err, ErrBadCtx) {
			t.Fatalf("encode %q: %v", m.Name, err)
		}
	}
	if _, err := DecodeCtxMeta([]byte{1, 0, 1, 0, 0, 0, 0xff}); !errors.Is(err, ErrBadCtx) {
		t.Fatalf("name not UTF-8: %v", err)
	}
	if _, err := DecodeCtxMeta([]byte{1, 0, 0, 0, 0, 2}); !errors.Is(err, ErrBadCtx) {
		t.Fatalf("reserved flag set: %v", err)
	}
}

func FuzzDecodeCtx(f *testing.F) {
	var room ID
	room[3] = 1
	enc, _ := Ctx{Context: room, Body: []byte("hello")}.Encode()
	f.Add(enc)
	meta, _ := CtxMeta{Name: "n", Description: "d"}.Encode()
	f.Add(meta)
	wide, _ := CtxMeta{Name: "w", Wide: true}.Encode()
	f.Add(wide)
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := DecodeCtx(b); err == nil {
			again, err := c.Encode()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("ctx re-encodes to %x, %v; was %x", again, err, b)
			}
		}
		if m, err := DecodeCtxMeta(b); err == nil {
			again, err := m.Encode()
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("meta re-encodes to %x, %v; was %x", again, err, b)
			}
		}
	})
}
