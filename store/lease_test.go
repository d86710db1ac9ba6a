package store

import (
	"math"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// FuzzParseLease feeds arbitrary lease bodies to the store's parser: what
// it accepts must be a CID within MaxObjectIDLen that is the body's object
// ID byte for byte, with the body's end in nanoseconds.
func FuzzParseLease(f *testing.F) {
	o := newTestObject(f, 1, 3*testChunk)
	for _, until := range []time.Time{{}, testNow, time.UnixMilli(1 << 62)} {
		b, err := feed.Lease{Object: o.id.Bytes(), Until: until}.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := parseLease(b)
		if r == nil {
			return
		}
		l, err := feed.DecodeLease(b)
		if err != nil {
			t.Fatalf("parseLease accepted a body DecodeLease refuses: %v", err)
		}
		if string(r.id.Bytes()) != string(l.Object) || r.id.ByteLen() > MaxObjectIDLen {
			t.Fatalf("parseLease gave %s for object %x", r.id, l.Object)
		}
		if (r.until == 0) != l.Ended() || r.until < 0 {
			t.Fatalf("parseLease gave until %d for %v", r.until, l.Until)
		}
		if ms := l.Until.UnixMilli(); !l.Ended() {
			want := int64(math.MaxInt64) // past the year 2262
			if ms <= math.MaxInt64/int64(time.Millisecond) {
				want = ms * int64(time.Millisecond)
			}
			if r.until != want {
				t.Fatalf("parseLease gave until %d ns for %d ms, want %d", r.until, ms, want)
			}
		}
	})
}
