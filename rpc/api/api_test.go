package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

func signed(t testing.TB, body []byte) *feed.Entry {
	k, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e, err := feed.Sign(k, feed.Head{}, "post", body, time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEntryRoundTrip(t *testing.T) {
	fe := signed(t, []byte("hello"))
	b, err := json.Marshal(FromFeed(fe))
	if err != nil {
		t.Fatal(err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	back := e.Feed()
	if err := back.Validate(fe.Author, feed.Head{}); err != nil || back.ID() != e.ID || e.Text != "hello" {
		t.Fatalf("round trip %s: %v", b, err)
	}
}

func TestCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code Code
	}{
		{fmt.Errorf("x: %w", feed.ErrTooLarge), CodeTooLarge},
		{fmt.Errorf("x: %w", feed.ErrBadID), CodeInvalidParams},
		{ErrUnknownFeed, CodeUnknownFeed},
		{fmt.Errorf("x: %w", NewError(CodeLimit, "y")), CodeLimit},
		{errors.New("other"), CodeInternal},
	} {
		if got := CodeOf(tc.err); got != tc.code {
			t.Errorf("CodeOf(%v) = %d, want %d", tc.err, got, tc.code)
		}
	}
	e := NewError(CodeTooLarge, "body")
	if !errors.Is(e, feed.ErrTooLarge) || errors.Is(e, ErrNotFound) || CodeTooLarge.Sentinel() != feed.ErrTooLarge {
		t.Fatal("sentinel matching")
	}
	if CodeInternal.Sentinel() != nil || Code(1).String() != "code 1" {
		t.Fatal("codes without sentinels")
	}
}

// FuzzEntryJSON decodes arbitrary JSON as an Entry: no panic, and a
// decoded entry re-encodes to JSON that decodes to the same entry.
func FuzzEntryJSON(f *testing.F) {
	b, _ := json.Marshal(FromFeed(signed(f, []byte("hi"))))
	f.Add(b)
	f.Add([]byte(`{"seq":1,"id":"x"}`))
	f.Add([]byte(`{"sig":"AAAA","body":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e Entry
		if json.Unmarshal(data, &e) != nil {
			return
		}
		fe := e.Feed()
		_ = fe.VerifySignature()
		_ = fe.ID()
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var e2 Entry
		if err := json.Unmarshal(again, &e2); err != nil {
			t.Fatalf("%s: %v", again, err)
		}
		if e2.Seq != e.Seq || e2.ID != e.ID || !bytes.Equal(e2.Body, e.Body) || e2.Text != e.Text {
			t.Fatalf("%+v != %+v", e2, e)
		}
	})
}
