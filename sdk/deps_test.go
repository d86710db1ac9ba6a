package sdk

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps sdk and rpc/api light: no libp2p, Badger or QUIC, however
// indirectly. Like tailscale's cmd/tailscaled/deps_test.go, it asks the go
// command for the packages' full dependency lists.
func TestDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	forbidden := []string{"github.com/libp2p/", "github.com/dgraph-io/", "github.com/quic-go/"}
	for _, pkg := range []string{"github.com/contextd/contextd/sdk", "github.com/contextd/contextd/rpc/api"} {
		out, err := exec.Command(goTool, "list", "-deps", "-json", pkg).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Logf("stderr: %s", ee.Stderr)
			}
			t.Fatalf("go list %s: %v", pkg, err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		n := 0
		for {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			n++
			for _, f := range forbidden {
				if strings.HasPrefix(p.ImportPath, f) {
					t.Errorf("%s depends on %s", pkg, p.ImportPath)
				}
			}
		}
		if n < 5 {
			t.Fatalf("go list %s listed only %d packages", pkg, n)
		}
	}
}
