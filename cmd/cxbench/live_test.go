package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLiveSmall runs the live workload with four viewers for 3 s: every
// viewer must get every record after its first, without a stall, and the
// publisher must upload less than the viewers receive (relays carry the
// rest). The latency figures are not checked (they are measured by
// running cxbench).
func TestLiveSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := runLive(ctx, []string{"--viewers", "4", "--seconds", "3", "--rate-kbps", "1000"})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(line)
	kv, keys := parseLine(t, line, "p50_ms", "p99_ms", "publisher_upload_pct")
	want := "bench viewers rate_kbps seconds p50_ms p99_ms publisher_upload_pct stalls lost"
	if got := strings.Join(keys, " "); got != want {
		t.Fatalf("keys %q, want %q", got, want)
	}
	if kv["bench"] != "live" || kv["viewers"] != "4" || kv["rate_kbps"] != "1000" || kv["seconds"] != "3" || kv["stalls"] != "0" || kv["lost"] != "0" {
		t.Fatalf("line %q", line)
	}
	if up := number(t, kv, "publisher_upload_pct"); up >= 100 {
		t.Fatalf("the publisher uploaded %v%% of what the viewers received", up)
	}
}

func TestLiveFlags(t *testing.T) {
	for _, args := range [][]string{{"--viewers", "0"}, {"--rate-kbps", "0"}, {"--seconds", "0"}, {"--record", "10"}, {"--publisher-links", "0"}, {"extra"}} {
		if _, err := runLive(t.Context(), args); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}

// TestLiveLinks: the publisher links to the first viewers only; every
// later viewer to two distinct earlier viewers; hops count the shortest
// way from the publisher.
func TestLiveLinks(t *testing.T) {
	links := liveLinks(10, 3, rand.New(rand.NewPCG(1, 2)))
	ups := map[int][]int{}
	for _, l := range links {
		if l[0] >= l[1] {
			t.Fatalf("link %v does not go from an earlier node", l)
		}
		ups[l[1]] = append(ups[l[1]], l[0])
	}
	for j := 1; j <= 10; j++ {
		switch u := ups[j]; {
		case j <= 3 && !slices.Equal(u, []int{0}):
			t.Errorf("viewer %d links to %v, want the publisher", j, u)
		case j > 3 && (len(u) != 2 || u[0] == u[1] || slices.Contains(u, 0)):
			t.Errorf("viewer %d links to %v, want two earlier viewers", j, u)
		}
	}
	hops := liveHops(11, links)
	for j := 1; j <= 10; j++ {
		want := 1
		if j > 3 {
			want = 1 + min(hops[ups[j][0]], hops[ups[j][1]])
		}
		if hops[j] != want {
			t.Errorf("viewer %d is %d hops from the publisher, want %d", j, hops[j], want)
		}
	}
}

// TestLiveScanner: records cut anywhere, the stream joined mid-record and
// bytes lost in the middle: the scanner finds exactly the whole records.
func TestLiveScanner(t *testing.T) {
	const size = 100
	var stream []byte
	for i := range 50 {
		stream = append(stream, encodeLiveRecord(i, time.Unix(0, int64(i)), size)...)
	}
	// Join mid-record 2, lose the middle of record 20 to that of 22.
	cut := slices.Concat(stream[2*size+37:20*size+50], stream[22*size+10:])
	rng := rand.New(rand.NewPCG(3, 4))
	var sc liveScanner
	var got []int
	for len(cut) > 0 {
		n := min(len(cut), 1+rng.IntN(3*size))
		sc.scan(cut[:n], size, func(idx int, sent time.Time) {
			if sent.UnixNano() != int64(idx) {
				t.Errorf("record %d sent at %d", idx, sent.UnixNano())
			}
			got = append(got, idx)
		})
		cut = cut[n:]
	}
	var want []int
	for i := 3; i < 50; i++ {
		if i < 20 || i > 22 {
			want = append(want, i)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records %v, want %v", got, want)
	}
}

// FuzzLiveScanner: any bytes, scanned in two pieces, yield at most one
// record per record size of input, and the scanner keeps less than a
// record.
func FuzzLiveScanner(f *testing.F) {
	const size = 64
	rec := encodeLiveRecord(7, time.Unix(1, 2), size)
	f.Add(rec, 10)
	f.Add(slices.Concat([]byte("cxbpcxbp"), rec, rec[:20]), 30)
	f.Add([]byte("cxb"), 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		split = min(max(split, 0), len(b))
		var sc liveScanner
		found := 0
		for _, part := range [][]byte{b[:split], b[split:]} {
			sc.scan(part, size, func(int, time.Time) { found++ })
			if len(sc.buf) >= size {
				t.Fatalf("scanner keeps %d bytes", len(sc.buf))
			}
		}
		if found > len(b)/size {
			t.Fatalf("%d records in %d bytes", found, len(b))
		}
	})
}
