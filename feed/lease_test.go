package feed

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// leaseObject is an object ID for the tests: the bytes of a raw SHA-256
// CIDv1 (the lease body treats them as opaque).
var leaseObject = bytes.Repeat([]byte{0xab}, 36)

func TestLeaseEncoding(t *testing.T) {
	until := time.UnixMilli(1_800_000_000_123)
	tests := []struct {
		name  string
		lease Lease
		hex   string // frozen body; never changes
	}{
		{"until", Lease{Object: []byte{0x01, 0x55}, Until: until}, "01" + "000001a3185c507b" + "02" + "0155"},
		{"ended", Lease{Object: []byte{0x01, 0x55}}, "01" + "0000000000000000" + "02" + "0155"},
		{"truncated to the millisecond", Lease{Object: []byte{7}, Until: until.Add(999 * time.Microsecond)}, "01" + "000001a3185c507b" + "01" + "07"},
		{"longest object ID", Lease{Object: bytes.Repeat([]byte{9}, MaxLeaseObjectLen), Until: until}, "01" + "000001a3185c507b" + "80" + strings.Repeat("09", MaxLeaseObjectLen)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.lease.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(b); got != tc.hex {
				t.Fatalf("Encode = %s, want %s", got, tc.hex)
			}
			l, err := DecodeLease(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(l.Object, tc.lease.Object) || l.Ended() != tc.lease.Ended() || !l.Until.Equal(tc.lease.Until.Truncate(time.Millisecond)) {
				t.Fatalf("DecodeLease = %+v, want %+v", l, tc.lease)
			}
			b[len(b)-1] ^= 1
			if l.Object[len(l.Object)-1] == b[len(b)-1] {
				t.Fatal("the decoded lease aliases its body")
			}
		})
	}
}

func TestLeaseBad(t *testing.T) {
	until := time.UnixMilli(1_800_000_000_000)
	for _, l := range []Lease{
		{Until: until}, // no object
		{Object: bytes.Repeat([]byte{1}, MaxLeaseObjectLen+1), Until: until},
		{Object: leaseObject, Until: time.UnixMilli(0)},
		{Object: leaseObject, Until: time.UnixMilli(-5)},
	} {
		if _, err := l.Encode(); !errors.Is(err, ErrBadLease) {
			t.Errorf("Encode(%d-byte object, until %v) = %v, want ErrBadLease", len(l.Object), l.Until, err)
		}
	}
	good, err := Lease{Object: leaseObject, Until: until}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"version 2":      mutate(func(b []byte) []byte { b[0] = 2; return b }),
		"negative until": mutate(func(b []byte) []byte { b[1] = 0x80; return b }),
		"no object":      {1, 0, 0, 0, 0, 0, 0, 0, 1, 0},
		"long object":    append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1, MaxLeaseObjectLen + 1}, bytes.Repeat([]byte{1}, MaxLeaseObjectLen+1)...),
		"trailing byte":  append(bytes.Clone(good), 0),
	} {
		if _, err := DecodeLease(b); !errors.Is(err, ErrBadLease) {
			t.Errorf("%s: DecodeLease = %v, want ErrBadLease", name, err)
		}
	}
	for n := range len(good) {
		if _, err := DecodeLease(good[:n]); !errors.Is(err, ErrBadLease) {
			t.Fatalf("DecodeLease accepted %d of %d bytes: %v", n, len(good), err)
		}
	}
}

func FuzzDecodeLease(f *testing.F) {
	for _, l := range []Lease{
		{Object: leaseObject, Until: time.UnixMilli(1_800_000_000_000)},
		{Object: []byte{1}},
	} {
		b, err := l.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := DecodeLease(b)
		if err != nil {
			if !errors.Is(err, ErrBadLease) {
				t.Fatalf("DecodeLease error %v does not wrap ErrBadLease", err)
			}
			return
		}
		again, err := l.Encode()
		if err != nil {
			t.Fatalf("a decoded lease does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("lease re-encodes as %x, decoded from %x", again, b)
		}
	})
}
