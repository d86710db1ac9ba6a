package node

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

// Files under a node's home directory.
const (
	keyFile    = "key"         // hex seed of the node's ed25519 key, mode 0600
	configFile = "config.json" // FileConfig
	tokenFile  = "rpc.token"   // bearer token for the RPC API, mode 0600
	addrFile   = "rpc.addr"    // host:port the running daemon's RPC listens on
	dbDir      = "db"          // Badger store
)

// configVersion is the version of config.json this build writes and reads.
const configVersion = 1

// Default addresses. The RPC API is for local apps only, so it binds to
// loopback; peers reach the node over QUIC on every interface.
const (
	DefaultListen = "/ip4/0.0.0.0/udp/4077/quic-v1"
	DefaultRPC    = "127.0.0.1:4078"
)

// ErrNoHome reports a home directory without a key: run `contextd init`.
var ErrNoHome = errors.New("node: home is not initialised")

// FileConfig is the on-disk configuration, HOME/config.json. Zero fields
// mean the defaults.
type FileConfig struct {
	Version int      `json:"version"`
	Listen  []string `json:"listen,omitempty"` // libp2p multiaddrs to listen on
	RPC     string   `json:"rpc,omitempty"`    // host:port of the RPC API
	Hops    int      `json:"hops,omitempty"`   // replication scope: 1 = follows, 2 = friends of friends
	// Bootstrap are DHT peers to join through, multiaddrs ending in
	// /p2p/<id> (optional; added in version 1 without a version change).
	Bootstrap []string `json:"bootstrap,omitempty"`
	// CacheBytes bounds the bytes of the objects held neither pinned nor
	// leased (Config.CacheBytes; default DefaultCacheBytes; added in
	// version 1 without a version change).
	CacheBytes int64 `json:"cache_bytes,omitempty"`
	// ObjectDirs are the directories (absolute) in which object.put may
	// read and object.get may write files by path (Config.ObjectDirs;
	// none by default: objects then travel only as bytes over the API;
	// added in version 1 without a version change).
	ObjectDirs []string `json:"object_dirs,omitempty"`
	// Limits are the per-peer abuse limits (Config.Limits; zero fields
	// mean the defaults, which init writes; added in version 1 without a
	// version change).
	Limits Limits `json:"limits,omitzero"`
	// Storage bounds what the node stores (Config.Storage; zero fields
	// mean the defaults; added in version 1 without a version change).
	Storage StorageConfig `json:"storage,omitzero"`
	// Flit are the link options (Config.Flit; zero fields mean the
	// defaults; added in version 1 without a version change).
	Flit FlitConfig `json:"flit,omitzero"`
}

// FlitConfig is config.json "flit": how links carry bulk.
type FlitConfig struct {
	// Unmanaged turns off the delay-based controller that holds bulk
	// (replication, objects) just below the path's bottleneck; bulk then
	// fills the bottleneck's queue and chat waits behind it.
	Unmanaged bool `json:"unmanaged,omitempty"`
	// QueueTargetMs is the queueing delay in milliseconds the controller
	// aims for (0: flitlink.DefaultQueueTarget, 3 ms).
	QueueTargetMs float64 `json:"queue_target_ms,omitempty"`
}

// Link returns the flitlink options f stands for.
func (f FlitConfig) Link() flitlink.Config {
	return flitlink.Config{
		Unmanaged:   f.Unmanaged,
		QueueTarget: time.Duration(f.QueueTargetMs * float64(time.Millisecond)),
	}
}

// Init creates home (if needed) with a new key and a default config, and
// returns the node's ID. An existing key and config are kept, so Init is
// safe to repeat.
func Init(home string) (feed.ID, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return feed.ID{}, fmt.Errorf("node: create home: %w", err)
	}
	key, err := LoadKey(home)
	if errors.Is(err, ErrNoHome) {
		key, err = feed.GenerateKey(rand.Reader)
		if err == nil {
			err = writeFileExcl(filepath.Join(home, keyFile), []byte(hex.EncodeToString(key.Seed())+"\n"))
		}
	}
	if err != nil {
		return feed.ID{}, err
	}
	if _, err := os.Stat(filepath.Join(home, configFile)); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.MarshalIndent(FileConfig{Version: configVersion, Listen: []string{DefaultListen}, RPC: DefaultRPC, Hops: 1, CacheBytes: DefaultCacheBytes, Limits: DefaultLimits()}, "", "  ")
		if err := writeFileExcl(filepath.Join(home, configFile), append(b, '\n')); err != nil {
			return feed.ID{}, err
		}
	}
	return key.Public(), nil
}

// StoreDir is where the node whose home is home keeps its Badger store.
func StoreDir(home string) string { return filepath.Join(home, dbDir) }

// ReadID returns the ID of the node whose home is home.
func ReadID(home string) (feed.ID, error) {
	k, err := LoadKey(home)
	if err != nil {
		return feed.ID{}, err
	}
	return k.Public(), nil
}

// LoadKey returns the private key of the node whose home is home, for tools
// that write to the node's feed while it is stopped (cxbench fills feeds
// this way). Never log or print it.
func LoadKey(home string) (feed.PrivateKey, error) {
	path := filepath.Join(home, keyFile)
	k, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return feed.PrivateKey{}, fmt.Errorf("%w: no %s (run `contextd init --home %s`)", ErrNoHome, path, home)
	}
	return k, err
}

// readKeyFile reads a key file: the hex seed of an ed25519 key. A missing
// file is an error matching fs.ErrNotExist.
func readKeyFile(path string) (feed.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return feed.PrivateKey{}, fmt.Errorf("node: read key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		return feed.PrivateKey{}, fmt.Errorf("node: key file %s is not hex", path)
	}
	return feed.PrivateKeyFromSeed(seed)
}

// LoadFileConfig reads HOME/config.json; a missing file gives the defaults.
func LoadFileConfig(home string) (FileConfig, error) {
	var c FileConfig
	b, err := os.ReadFile(filepath.Join(home, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return FileConfig{Version: configVersion}, nil
	}
	if err != nil {
		return c, fmt.Errorf("node: read config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("node: parse %s: %w", filepath.Join(home, configFile), err)
	}
	if c.Version != configVersion {
		return c, fmt.Errorf("node: %s has version %d; this build reads version %d", filepath.Join(home, configFile), c.Version, configVersion)
	}
	for _, d := range c.ObjectDirs {
		if !filepath.IsAbs(d) {
			return c, fmt.Errorf("node: %s: object_dirs: %q is not an absolute path", filepath.Join(home, configFile), d)
		}
	}
	return c, nil
}

// Token returns the RPC bearer token stored in home, creating it (mode
// 0600) on first use.
func Token(home string) (string, error) {
	tok, err := ReadToken(home)
	if !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tok = hex.EncodeToString(raw[:])
	if err := writeFileExcl(filepath.Join(home, tokenFile), []byte(tok+"\n")); err != nil {
		return "", err
	}
	return tok, nil
}

// WriteRPCAddr records where the running daemon's RPC API listens.
func WriteRPCAddr(home, addr string) error {
	tmp := filepath.Join(home, addrFile+".tmp")
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: write rpc address: %w", err)
	}
	return os.Rename(tmp, filepath.Join(home, addrFile))
}

// RemoveRPCAddr removes the record written by WriteRPCAddr.
func RemoveRPCAddr(home string) { os.Remove(filepath.Join(home, addrFile)) }

// ReadRPCAddr returns the RPC address the daemon running in home wrote.
func ReadRPCAddr(home string) (string, error) {
	b, err := os.ReadFile(filepath.Join(home, addrFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no daemon is running with home %s (no %s; start one with `contextd run`)", home, addrFile)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func writeFileExcl(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("node: create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("node: sync %s: %w", path, err)
	}
	return f.Close()
}

// ReadToken returns the RPC bearer token of the daemon in home without
// creating one.
func ReadToken(home string) (string, error) {
	b, err := os.ReadFile(filepath.Join(home, tokenFile))
	if err != nil {
		return "", fmt.Errorf("read the RPC token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
