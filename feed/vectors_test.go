package feed

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"
)

// TestFrozenVectors pins the canonical encoding: each stored encoding must
// decode, validate in its feed, carry the stored ID, and be reproduced
// byte for byte by signing the same fields with the same key.
func TestFrozenVectors(t *testing.T) {
	f, err := os.Open("testdata/entries.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	heads := map[string]Head{}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Fatalf("bad vector line %q", line)
		}
		label, wantID := fields[0], fields[1]
		enc, err := hex.DecodeString(fields[2])
		if err != nil {
			t.Fatal(err)
		}
		e, err := Decode(enc)
		if err != nil {
			t.Fatalf("%s: %v", wantID, err)
		}
		if e.ID().String() != wantID {
			t.Fatalf("ID %s, frozen %s", e.ID(), wantID)
		}
		k := testKey(t, label)
		if err := e.Validate(k.Public(), heads[label]); err != nil {
			t.Fatalf("%s: %v", wantID, err)
		}
		again, err := Sign(k, heads[label], e.Type, e.Body, time.UnixMilli(e.Timestamp))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again.Encode(), enc) {
			t.Fatalf("signing %s again gives different bytes", wantID)
		}
		heads[label] = e.Next()
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Fatalf("read %d vectors, want 5", n)
	}
}
