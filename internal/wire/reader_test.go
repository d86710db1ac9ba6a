package wire

import (
	"errors"
	"fmt"
	"testing"
)

var errBad = errors.New("bad")

func malformed(t byte, detail string) error { return fmt.Errorf("%w: %d: %s", errBad, t, detail) }

func TestOpen(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, make([]byte, 11)} {
		if _, _, err := Open(b, 10, malformed); !errors.Is(err, errBad) {
			t.Errorf("Open(%x): %v, want the protocol's error", b, err)
		}
	}
	typ, r, err := Open([]byte{7, 0xac, 0x02, 'h', 'i', 5}, 10, malformed)
	if err != nil || typ != 7 {
		t.Fatalf("Open: %d, %v", typ, err)
	}
	if v := r.Uvarint("n"); v != 300 {
		t.Errorf("Uvarint = %d, want 300", v)
	}
	if b := r.Bytes(2, "s"); string(b) != "hi" || cap(b) != 2 {
		t.Errorf("Bytes = %q (cap %d)", b, cap(b))
	}
	if r.Len() != 1 || r.Finish() == nil {
		t.Error("a byte left over is not an error")
	}
	if v := r.Max("m", 4); v != 0 || !errors.Is(r.Err(), errBad) {
		t.Errorf("after an error: %d, %v", v, r.Err())
	}
}

func TestReaderRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		body []byte
		read func(r *Reader)
	}{
		{"non-minimal uvarint", []byte{0x81, 0x00}, func(r *Reader) { r.Uvarint("n") }},
		{"truncated uvarint", []byte{0x81}, func(r *Reader) { r.Uvarint("n") }},
		{"over the maximum", []byte{5}, func(r *Reader) { r.Max("n", 4) }},
		{"bytes past the end", []byte{5, 'x'}, func(r *Reader) { r.Bytes(int(r.Uvarint("n")), "s") }},
		{"negative length", []byte{}, func(r *Reader) { r.Bytes(-1, "s") }},
	} {
		_, r, err := Open(append([]byte{1}, c.body...), 10, malformed)
		if err != nil {
			t.Fatal(err)
		}
		c.read(r)
		if err := r.Finish(); !errors.Is(err, errBad) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}
