package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// module is the module whose packages the rules are about.
const module = "github.com/contextd/contextd"

// Import path prefixes of the third-party stacks the rules keep out of
// some packages.
const (
	libp2p = "github.com/libp2p/"
	quic   = "github.com/quic-go/"
	badger = "github.com/dgraph-io/"
)

// pkg is what the go command lists of one package of the module.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string // without tests
	Deps       []string // every package it imports, however indirectly
	Error      *struct{ Err string }
}

// rel returns p's path inside the module ("" for the root).
func (p *pkg) rel() string {
	return strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
}

// mod is the import path of a package of the module.
func mod(rel string) string { return module + "/" + rel }

// listModule lists every package of the module with its dependencies,
// as the go command sees them (tests' imports left out).
func listModule(t *testing.T) []*pkg {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the dependency rules need the go command: %v", err)
	}
	cmd := exec.Command(goTool, "list", "-e", "-json=ImportPath,Dir,GoFiles,Deps,Error", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Logf("stderr: %s", ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []*pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		p := new(pkg)
		if err := dec.Decode(p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// match reports whether p is one of patterns: a package's path inside the
// module, "x/..." for x and the packages below it, or "..." for all.
func match(p *pkg, patterns []string) bool {
	r := p.rel()
	for _, pat := range patterns {
		if pat == "..." || pat == r {
			return true
		}
		if base, ok := strings.CutSuffix(pat, "/..."); ok && (r == base || strings.HasPrefix(r, base+"/")) {
			return true
		}
	}
	return false
}

// check finds what breaks a rule in one package.
type check func(t *testing.T, p *pkg) []string

// pathMatch reports whether import path ip is pattern: a pattern ending
// in "/" is a prefix (libp2p's modules), one ending in "/..." a package
// and the packages below it, any other one package.
func pathMatch(ip, pattern string) bool {
	if strings.HasSuffix(pattern, "/") {
		return strings.HasPrefix(ip, pattern)
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return ip == base || strings.HasPrefix(ip, base+"/")
	}
	return ip == pattern
}

// noDeps forbids the packages that match one of patterns (see pathMatch).
func noDeps(patterns ...string) check {
	return func(t *testing.T, p *pkg) []string {
		var bad []string
		for _, d := range p.Deps {
			if slices.ContainsFunc(patterns, func(f string) bool { return pathMatch(d, f) }) {
				bad = append(bad, d)
			}
		}
		return bad
	}
}

// stdlibOnly forbids every package outside the standard library, whose
// paths have no dot in their first element.
func stdlibOnly(t *testing.T, p *pkg) []string {
	var bad []string
	for _, d := range p.Deps {
		if first, _, _ := strings.Cut(d, "/"); strings.Contains(first, ".") {
			bad = append(bad, d)
		}
	}
	return bad
}

// cliException is a file of cmd/contextd allowed to import what the
// other files reach only through the SDK.
type cliException struct {
	// node, if not nil, is all the file may use of package node; nil
	// allows anything.
	node []string
}

// cliExceptions are the files of cmd/contextd that do not go through the
// SDK, and what they may use instead.
var cliExceptions = map[string]cliException{
	// The daemon itself: it builds the node and serves the API.
	"run.go": {},
	// doctor checks a home whose daemon is stopped: it opens the store
	// read-only and dials peers from a throwaway libp2p host.
	"doctor.go": {},
	// Known breaks of "the CLI goes through the SDK", kept to node's
	// home-file helpers: init and id read or create the key, and every
	// command finds the daemon (and token.go's ui its URL) through the
	// home's rpc.addr and rpc.token. The fix is a small package for the
	// home's files that node, sdk and the CLI share.
	"main.go":  {node: []string{"Init", "ReadID", "ReadRPCAddr", "ReadToken"}},
	"token.go": {node: []string{"ReadRPCAddr"}},
}

// cliForbidden is what the CLI's files reach only through the SDK: the
// node and what it wires, the API's server side, and the network and
// storage stacks (see pathMatch).
var cliForbidden = []string{
	mod("node"), mod("store"), mod("rpc"), mod("tokens"), mod("ui"), mod("ebt"), mod("contexts"),
	mod("dht"), mod("flitlink/..."), libp2p, quic, badger,
}

// cliThroughSDK checks each file of cmd/contextd (not its tests) against
// cliForbidden and cliExceptions. Files may use feed, rpc/api, sdk and
// object (hash computes an object's tree, offline).
func cliThroughSDK(t *testing.T, p *pkg) []string {
	var bad []string
	fset := token.NewFileSet()
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ex, excepted := cliExceptions[name]
		nodeName := ""
		for _, spec := range f.Imports {
			ip, _ := strconv.Unquote(spec.Path.Value)
			if ip == mod("node") {
				nodeName = path.Base(ip)
				if spec.Name != nil {
					nodeName = spec.Name.Name
				}
			}
			if excepted || !slices.ContainsFunc(cliForbidden, func(f string) bool { return pathMatch(ip, f) }) {
				continue
			}
			bad = append(bad, name+" imports "+ip)
		}
		if !excepted || ex.node == nil || nodeName == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == nodeName && !slices.Contains(ex.node, sel.Sel.Name) {
				bad = append(bad, name+" uses node."+sel.Sel.Name)
			}
			return true
		})
	}
	return bad
}

// TestDependencyRules checks the dependency rules of docs/ARCHITECTURE.md
// against what the go command lists.
func TestDependencyRules(t *testing.T) {
	rules := []struct {
		name   string
		pkgs   []string // the packages the rule is about (see match)
		except []string
		check  check
	}{
		{"feed is pure: the standard library only", []string{"feed"}, nil, stdlibOnly},
		{"flitlink is below the protocols", []string{"flitlink/..."}, nil,
			noDeps(mod("ebt"), mod("swarm"), mod("live"), mod("contexts"), mod("dht"), mod("store"), mod("node"), mod("rpc/..."))},
		{"ebt and swarm are siblings: ebt does not import swarm", []string{"ebt"}, nil, noDeps(mod("swarm"))},
		{"ebt and swarm are siblings: swarm does not import ebt", []string{"swarm"}, nil, noDeps(mod("ebt"))},
		{"protocol code runs over a circuit, not over libp2p", []string{"flitlink", "flitlink/memlink", "ebt", "swarm", "live"}, nil,
			noDeps(libp2p, quic)},
		{"live runs over a small Conn: no flitlink, store or Badger", []string{"live"}, nil, noDeps(mod("flitlink/..."), mod("store"), badger)},
		{"only node wires: nothing but cmd/ imports node", []string{"..."}, []string{"node", "cmd/..."}, noDeps(mod("node"))},
		{"store holds no network code", []string{"store"}, nil,
			noDeps(libp2p, quic, mod("flitlink/..."), mod("ebt"), mod("swarm"), mod("contexts"), mod("dht"))},
		{"object is the format alone: no protocol, store or network", []string{"object"}, nil,
			noDeps(libp2p, quic, badger, mod("flitlink/..."), mod("ebt"), mod("swarm"), mod("contexts"), mod("dht"), mod("store"), mod("feed"))},
		{"rpc declares what it serves: it imports none of node, tokens and store", []string{"rpc"}, nil,
			noDeps(mod("node"), mod("tokens"), mod("store"))},
		{"sdk and rpc/api are free of libp2p, QUIC and Badger", []string{"sdk", "rpc/api"}, nil, noDeps(libp2p, quic, badger)},
		{"ui is the chat page over the public API: it imports nothing of the module", []string{"ui"}, nil, noDeps(module + "/")},
		{"the CLI goes through the SDK", []string{"cmd/contextd"}, nil, cliThroughSDK},
	}
	pkgs := listModule(t)
	if len(pkgs) < 15 {
		t.Fatalf("go list listed only %d packages", len(pkgs))
	}
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			n := 0
			for _, p := range pkgs {
				if !match(p, r.pkgs) || match(p, r.except) {
					continue
				}
				n++
				for _, b := range r.check(t, p) {
					t.Errorf("%s: %s", p.ImportPath, b)
				}
			}
			if n == 0 {
				t.Fatalf("no package matches %v: the rule checks nothing", r.pkgs)
			}
		})
	}
}

// TestChecks shows that each kind of check finds what breaks it.
func TestChecks(t *testing.T) {
	p := &pkg{ImportPath: mod("x"), Deps: []string{"fmt", "crypto/internal/entropy/v1.0.0", mod("rpc/api"), "github.com/libp2p/go-libp2p/core"}}
	for _, tc := range []struct {
		name  string
		check check
		want  []string
	}{
		{"stdlib only", stdlibOnly, []string{mod("rpc/api"), "github.com/libp2p/go-libp2p/core"}},
		{"a package", noDeps(mod("rpc")), nil},
		{"a package and below", noDeps(mod("rpc/...")), []string{mod("rpc/api")}},
		{"a prefix", noDeps(libp2p), []string{"github.com/libp2p/go-libp2p/core"}},
	} {
		if got := tc.check(t, p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}

	dir := t.TempDir()
	files := map[string]string{
		"feeds.go": `package main; import "` + mod("node") + `"; var _ = node.ReadID`,
		"main.go":  `package main; import n "` + mod("node") + `"; var _, _ = n.ReadID, n.New`,
		"run.go":   `package main; import "` + mod("store") + `"; var _ = store.OpenBadger`,
		"sync.go":  `package main; import "` + mod("sdk") + `"; var _ = sdk.Dial`,
		"put.go":   `package main; import "github.com/dgraph-io/badger/v4"; var _ = badger.Open`,
	}
	cli := &pkg{ImportPath: mod("cmd/contextd"), Dir: dir}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		cli.GoFiles = append(cli.GoFiles, name)
	}
	slices.Sort(cli.GoFiles)
	want := []string{"feeds.go imports " + mod("node"), "main.go uses node.New", "put.go imports github.com/dgraph-io/badger/v4"}
	if got := cliThroughSDK(t, cli); !slices.Equal(got, want) {
		t.Errorf("the CLI check found %q, want %q", got, want)
	}
}
