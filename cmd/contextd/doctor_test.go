package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/node"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/store"
)

// doctorHome makes a home whose config listens on loopback ports the
// system picks, bootstrapping through bootstrap.
func doctorHome(t *testing.T, bootstrap ...string) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	if _, err := node.Init(home); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(node.FileConfig{Version: 1, Listen: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}, RPC: "127.0.0.1:0", Bootstrap: bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// runDoctor runs `contextd doctor` on home and returns its output and
// whether it exited 0.
func runDoctor(t *testing.T, home string, args ...string) (string, bool) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetArgs(append([]string{"--home", home, "doctor"}, args...))
	cmd.SetOut(&out)
	err := cmd.ExecuteContext(t.Context())
	t.Logf("doctor: %v\n%s", err, out.String())
	return out.String(), err == nil
}

// checkLines checks that every line of out starts with a status and that
// the lines of each check in want have the status given.
func checkLines(t *testing.T, out string, want map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		status, rest, _ := strings.Cut(line, " ")
		check, _, _ := strings.Cut(strings.TrimSpace(rest), ":")
		if w, ok := want[check]; ok {
			seen[check] = true
			if status != w {
				t.Errorf("line %q: status %s, want %s", line, status, w)
			}
		}
	}
	for check := range want {
		if !seen[check] {
			t.Errorf("no %s line", check)
		}
	}
}

func TestDoctorFreshHome(t *testing.T) {
	home := doctorHome(t)
	out, ok := runDoctor(t, home)
	if !ok || strings.Contains(out, "problem") {
		t.Fatal("doctor on a fresh home found problems")
	}
	checkLines(t, out, map[string]string{"home": "ok", "key": "ok", "config": "ok", "daemon": "ok", "store": "ok", "rpc": "ok", "listen": "ok", "bootstrap": "ok"})

	// A store with a feed and an object verifies.
	s, err := store.OpenBadger(node.StoreDir(home), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key, err := node.LoadKey(home)
	if err != nil {
		t.Fatal(err)
	}
	var head feed.Head
	for i := range 3 {
		e, err := feed.Sign(key, head, "post", []byte{byte(i)}, time.Unix(1_800_000_000, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Append([]*feed.Entry{e}); err != nil {
			t.Fatal(err)
		}
		head = e.Next()
	}
	// While another process holds the store, doctor says so.
	out, ok = runDoctor(t, home)
	if ok || !strings.Contains(out, "another process has") {
		t.Errorf("doctor with the store held: exit 0 = %v, want a problem naming the store open", ok)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, ok = runDoctor(t, home, "--chunks", "-1")
	if !ok || !strings.Contains(out, "feeds=1 entries=3 ") {
		t.Errorf("doctor on a home with a store: exit 0 = %v, want ok and the feed counted", ok)
	}
}

func TestDoctorOpenKey(t *testing.T) {
	home := doctorHome(t)
	key := filepath.Join(home, "key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	out, ok := runDoctor(t, home)
	if ok {
		t.Error("doctor exited 0 with a world-readable key")
	}
	if !strings.Contains(out, "fix: chmod 600 "+key) {
		t.Errorf("output does not say chmod 600 %s", key)
	}
	checkLines(t, out, map[string]string{"home": "problem", "key": "ok", "store": "ok"})
}

func TestDoctorBootstrap(t *testing.T) {
	h, err := libp2p.New(libp2p.NoTransports, libp2p.Transport(quic.NewTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	good := addrs[0].String()
	out, ok := runDoctor(t, doctorHome(t, good), "--timeout", "1m") // a loaded machine is slow, not unreachable
	if !ok || !strings.Contains(out, good+": reachable") {
		t.Errorf("doctor with a reachable bootstrap peer: exit 0 = %v, want it reachable", ok)
	}

	// The right address with another peer's ID fails the handshake.
	other, err := peer.Decode("12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq")
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: other, Addrs: h.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	out, ok = runDoctor(t, doctorHome(t, good, wrong[0].String(), "not-an-address"))
	if ok {
		t.Error("doctor exited 0 with unreachable bootstrap peers")
	}
	if n := strings.Count(out, "problem  bootstrap"); n != 2 {
		t.Errorf("%d bootstrap problems, want 2", n)
	}
}

// TestDoctorDamagedStore plants what the store takes without checking (a
// chunk that does not match its object's root, an entry whose signature
// fails) and checks that doctor names them with the commands that fix them.
func TestDoctorDamagedStore(t *testing.T) {
	home := doctorHome(t)
	s, err := store.OpenBadger(node.StoreDir(home), store.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := object.Build(bytes.NewReader(bytes.Repeat([]byte("chunk"), 1000)), object.Config{ChunkSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	obj := tree.ID()
	if err := s.PutObject(obj, tree.Info()); err != nil {
		t.Fatal(err)
	}
	if err := object.PutTreeHashes(s, obj, tree); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChunk(obj, 1, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	key, err := feed.PrivateKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e, err := feed.Sign(key, feed.Head{}, "post", []byte("signed"), time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	e.Body = []byte("altered")
	if err := s.Append([]*feed.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	out, ok := runDoctor(t, home, "--chunks", "-1")
	if ok {
		t.Error("doctor exited 0 on a damaged store")
	}
	author := key.Public()
	for _, want := range []string{
		fmt.Sprintf("problem  store: object %s chunk 1: ", obj),
		fmt.Sprintf("`contextd object rm --force %s`, then `contextd get %s`", obj, obj),
		fmt.Sprintf("problem  store: feed %s entry 1: ", author),
		fmt.Sprintf("`contextd unfollow --forget %s`, then `contextd follow %s`", author, author),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
