package daemon

import (
	"crypto/sha256"
	"os"
	"testing"
)

// TestProcessCPU checks that this process's CPU time grows while it
// computes, and that an unknown process is an error.
func TestProcessCPU(t *testing.T) {
	start, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// 10^8 hashes take tens of CPU seconds, far above the kernel's 10 ms.
	const most = 100_000_000
	sum := sha256.Sum256(nil)
	for i := 1; ; i++ {
		sum = sha256.Sum256(sum[:])
		if i == most {
			t.Fatalf("cpu time still %v after %d hashes", start, most)
		}
		if i%100000 != 0 {
			continue
		}
		now, err := ProcessCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now < start {
			t.Fatalf("cpu time went from %v to %v", start, now)
		}
		if now > start {
			break
		}
	}
	if _, err := ProcessCPU(-1); err == nil {
		t.Error("pid -1: no error")
	}
}

// TestProcessPeakRSS checks that this process's peak RSS covers memory it
// has touched, and that an unknown process is an error.
func TestProcessPeakRSS(t *testing.T) {
	const size = 64 << 20
	b := make([]byte, size)
	for i := range b {
		b[i] = 1
	}
	rss, err := ProcessPeakRSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < size {
		t.Errorf("peak rss %d bytes after touching %d", rss, size)
	}
	if b[size-1] != 1 {
		t.Fatal("lost the touched memory")
	}
	if _, err := ProcessPeakRSS(-1); err == nil {
		t.Error("pid -1: no error")
	}
}
