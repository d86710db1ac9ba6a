package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/multiformats/go-multiaddr"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/dht"
	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/p2plink"
	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/live"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/store"
	"github.com/contextd/contextd/swarm"
)

// Version is the daemon's version, reported by node.info.
const Version = "0.1.0-dev"

// Errors callers branch on.
// Each wraps the api sentinel the RPC layer maps to an error code.
var (
	ErrReservedType = fmt.Errorf("%w: entry type is reserved; use the graph or object calls", api.ErrInvalidParams)
	ErrSelf         = fmt.Errorf("%w: that is this node's own ID", api.ErrInvalidParams)
	ErrBlocked      = fmt.Errorf("%w: peer is blocked", api.ErrInvalidParams)
	// ErrOwnFeedBehind refuses a publish while peers hold more of the
	// node's own feed than it does.
	ErrOwnFeedBehind = fmt.Errorf("%w: own feed is behind", api.ErrUnavailable)
)

// Config configures a Node. Zero fields mean the defaults.
type Config struct {
	Home       string        // required: key, config and store live here
	Listen     []string      // libp2p multiaddrs; default DefaultListen
	Hops       int           // replication scope; default 1
	EBTTimeout time.Duration // EBT stall timeout; default 3 s
	// Bootstrap are the DHT peers to join through: multiaddrs ending in
	// /p2p/<id>. None: the node is the first of its network.
	Bootstrap []string
	// CacheBytes bounds the chunk bytes of the objects the node holds
	// neither pinned nor leased; default DefaultCacheBytes. Negative is
	// an error.
	CacheBytes int64
	// ObjectDirs are the directories in which PutObjectFile may read and
	// GetObject may write files by path (objects.go). None: every path is
	// refused; objects travel only as bytes (PutObject, OpenObject).
	ObjectDirs []string
	// Storage bounds what the node stores: quotas and context history
	// retention (bounds.go, retention.go).
	Storage StorageConfig
	// Limits are the per-peer abuse limits (limits.go).
	Limits Limits
	// Flit are the link options (flitlink.Config); their Logger and
	// Metrics are the node's.
	Flit flitlink.Config
	// Now is the clock leases are written and judged by, and retention
	// by; default time.Now. Tests move it instead of sleeping.
	Now    func() time.Time
	Logger *slog.Logger // default: discard
}

// Node is a running contextd peer: a libp2p host speaking flitlink over
// QUIC, a Badger store, and EBT replication, with the calls the RPC API
// exposes.
type Node struct {
	cfg   Config
	log   *slog.Logger
	key   feed.PrivateKey
	id    feed.ID
	store *store.Badger
	host  host.Host
	links *p2plink.Transport
	repl  *ebt.Replicator
	dht   *dht.DHT
	ctxs  *contexts.Manager

	metrics *metrics // the node's Prometheus registry and each package's metrics (metrics.go)

	pubMu sync.Mutex // serialises appends to the feeds the node writes (its own, its contexts')

	feedSig signals // head moved, per feed
	ctxSig  signals // messages added, per context
	linkSig signals // a new link adopted, per peer (links.go)

	leaseMu   sync.Mutex    // serialises reading the own leases with writing them (pins.go)
	evictKick chan struct{} // asks runObjects for an eviction pass (pins.go)
	useMu     sync.Mutex
	inUse     map[string]int // guarded by useMu: objects being put or read out, by id.KeyString()
	// growths: the swarm/1 sessions serving an object that is still being
	// fetched, signalled as its chunks are stored (fetch.go)
	growMu  sync.Mutex
	growths map[string]map[*swarm.Growth]struct{} // guarded by growMu, by id.KeyString()
	recent  swarmPeers                            // who the node had swarm/1 sessions with (sources.go)

	ctx       context.Context // the node's lifetime: links and sessions run under it
	cancel    context.CancelFunc
	closeOnce sync.Once

	bans      *limit.Bans[feed.ID] // peers dropped for abuse, refused until their cool-down ends (limits.go)
	swarmLim  *swarm.Limiter       // each peer's limits as a swarm/1 seeder
	pingSlots chan struct{}        // the ping/1 circuits being served (ping.go)

	liveMu  sync.Mutex
	streams map[feed.ID]*carried // guarded by liveMu: the live streams published or watched (live.go)

	mu      sync.Mutex
	peers   map[feed.ID]*flitlink.Link // guarded by mu: the one live link to each peer
	dialing map[feed.ID]chan struct{}  // guarded by mu: the peers being dialed, closed when done (links.go)
	redials map[feed.ID]*redialState   // guarded by mu: the peers being redialed or lately relinked (links.go)
	wg      sync.WaitGroup             // link and session goroutines
}

// New opens the store and builds the host of the node whose home is
// cfg.Home. Nothing runs until Run; Close releases what New opened if Run
// is never called.
func New(cfg Config) (*Node, error) {
	if cfg.Home == "" {
		return nil, errors.New("node: Config.Home is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Listen) == 0 {
		cfg.Listen = []string{DefaultListen}
	}
	switch {
	case cfg.CacheBytes < 0:
		return nil, fmt.Errorf("node: cache size %d bytes is negative", cfg.CacheBytes)
	case cfg.CacheBytes == 0:
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits.fill()
	key, err := LoadKey(cfg.Home)
	if err != nil {
		return nil, err
	}
	var boot []peer.AddrInfo
	for _, a := range cfg.Bootstrap {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return nil, fmt.Errorf("node: bootstrap %q is not a peer address (want a multiaddr ending in /p2p/<id>): %w", a, err)
		}
		boot = append(boot, *ai)
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		key:       key,
		id:        key.Public(),
		peers:     map[feed.ID]*flitlink.Link{},
		dialing:   map[feed.ID]chan struct{}{},
		redials:   map[feed.ID]*redialState{},
		bans:      limit.NewBans[feed.ID](maxBans),
		swarmLim:  swarm.NewLimiter(cfg.Limits.swarm()),
		pingSlots: make(chan struct{}, maxPingSessions),
		evictKick: make(chan struct{}, 1),
		inUse:     map[string]int{},
		growths:   map[string]map[*swarm.Growth]struct{}{},
		recent:    swarmPeers{peers: map[string]map[peer.ID]time.Time{}},
		metrics:   newMetrics(),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.store, err = store.OpenBadger(StoreDir(cfg.Home), store.BadgerOptions{Logger: cfg.Logger, Metrics: n.metrics.store})
	if err != nil {
		return nil, err
	}
	if err := n.setupStorage(); err != nil {
		n.store.Close()
		return nil, err
	}
	n.host, err = newHost(key, cfg.Listen, libp2p.ConnectionGater(gater{n}))
	if err != nil {
		n.store.Close()
		return nil, err
	}
	flit := cfg.Flit
	flit.Logger, flit.Metrics = cfg.Logger, n.metrics.links
	n.links = p2plink.New(n.host, flit)
	n.dht, err = dht.New(n.ctx, n.host, dht.Config{Bootstrap: boot, Logger: cfg.Logger})
	if err != nil {
		n.Close()
		return nil, err
	}
	n.repl, err = ebt.New(ebt.Config{
		Self:    n.id,
		Store:   ctxStore{n.store, n}, // wakes feed and context readers
		Hops:    cfg.Hops,
		Timeout: cfg.EBTTimeout,
		Logger:  cfg.Logger,
		Metrics: n.metrics.ebt,
		Limits:  cfg.Limits.ebt(),
	})
	if err != nil {
		n.Close()
		return nil, err
	}
	n.ctxs, err = contexts.New(contexts.Config{Key: key, Host: n.host, Node: ctxNode{n}, Logger: cfg.Logger, Metrics: n.metrics.contexts,
		Limits: cfg.Limits.contexts(), Drop: n.drop})
	if err != nil {
		n.Close()
		return nil, err
	}
	joined, err := n.store.Joined()
	if err == nil {
		for _, id := range joined {
			if err = n.ctxs.Join(id, n.contextFanout(id)); err != nil {
				break
			}
		}
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("node: rejoin contexts: %w", err)
	}
	return n, nil
}

// newHost builds a libp2p host that speaks QUIC only, listens on listen,
// and reaches nobody it is not told to: no relays, no port mapping, no
// discovery, no global metrics; extra options follow (the node's
// connection gater, which refuses dropped peers).
func newHost(key feed.PrivateKey, listen []string, extra ...libp2p.Option) (host.Host, error) {
	priv, err := crypto.UnmarshalEd25519PrivateKey(key.Ed25519())
	if err != nil {
		return nil, fmt.Errorf("node: libp2p key: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.Transport(quic.NewTransport),
		libp2p.ListenAddrStrings(listen...),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("contextd/" + Version),
	}
	h, err := libp2p.New(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("node: start libp2p on %v: %w", listen, err)
	}
	return h, nil
}

// ID returns the node's identity.
func (n *Node) ID() feed.ID { return n.id }

// Run runs replication and accepts peers' links until ctx is done or the
// node is closed. Links dialed with Connect are served from New on.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.ctx, cancel)()

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := n.repl.Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Error("replication stopped", "err", err)
		}
	})
	wg.Go(func() { n.joinDHT(ctx) })
	wg.Go(func() { n.runObjects(ctx) })
	wg.Go(func() { n.runRetention(ctx) })
	wg.Go(func() { n.exchangeMembers(ctx) })
	for _, id := range n.ctxs.Rooms() {
		wg.Go(func() { n.discover(ctx, id) })
	}
	wg.Go(func() {
		for {
			l, err := n.links.Accept(ctx)
			if err != nil {
				return
			}
			n.startLink(l)
		}
	})
	n.log.Info("node running", "id", n.id, "addrs", n.addrs())
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Close shuts the node down in order: listeners, links and sessions, the
// host, the store last. It waits for every goroutine the node started.
func (n *Node) Close() error {
	var errs []error
	n.closeOnce.Do(func() {
		n.cancel()
		if n.links != nil {
			errs = append(errs, n.links.Close())
		}
		if n.ctxs != nil {
			errs = append(errs, n.ctxs.Close())
		}
		if n.dht != nil {
			errs = append(errs, n.dht.Close())
		}
		n.mu.Lock()
		for _, l := range n.peers {
			l.Close()
		}
		n.mu.Unlock()
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		n.wg.Wait()
		errs = append(errs, n.store.Close())
	})
	return errors.Join(errs...)
}

// startLink adopts a new link to a peer, keeping one link per peer: of two
// links dialed by different sides, both ends keep the one dialed by the
// smaller ID; of two dialed by the same side, the newer (the dialer
// dials again only when it saw the old one die, which the other end may
// not have seen yet: a peer killed and restarted, a cut path).
func (n *Node) startLink(l *flitlink.Link) {
	p := l.Remote()
	if n.refused(p) {
		n.log.Debug("refusing link: peer dropped, cool-down not over", "peer", p)
		l.Close()
		return
	}
	if rel, err := n.store.Relation(n.id, p); err != nil || rel == feed.RelBlock {
		n.log.Info("refusing link", "peer", p, "blocked", rel == feed.RelBlock, "err", err)
		l.Close()
		return
	}
	n.mu.Lock()
	if old := n.peers[p]; old != nil && !isDone(old) {
		if n.dialer(l).Compare(n.dialer(old)) > 0 {
			n.mu.Unlock()
			l.Close()
			return
		}
		old.Close()
	}
	n.peers[p] = l
	n.mu.Unlock()
	n.linkSig.notify(p)

	n.wg.Go(func() { n.serveLink(n.ctx, l) })
}

// dialer returns the ID of the side that dialed l.
func (n *Node) dialer(l *flitlink.Link) feed.ID {
	if l.Initiator() {
		return n.id
	}
	return l.Remote()
}

// serveLink runs the circuits of one link until it dies.
func (n *Node) serveLink(ctx context.Context, l *flitlink.Link) {
	p := l.Remote()
	start := time.Now()
	defer func() {
		l.Close()
		n.dropIfAbusive(p, l.Err())
		n.mu.Lock()
		current := n.peers[p] == l
		if current {
			delete(n.peers, p)
		}
		n.mu.Unlock()
		n.log.Info("peer gone", "peer", p, "replaced", !current)
		if current {
			n.linkLost(l, time.Since(start))
		}
	}()
	n.log.Info("peer linked", "peer", p, "dialed", l.Initiator())
	n.askNewPeer(l)
	if l.Initiator() {
		c, err := l.Open(ctx, ebt.Service, flitlink.Data)
		if err != nil {
			n.log.Info("open ebt circuit", "peer", p, "err", err)
			return
		}
		n.wg.Go(func() { n.serveEBT(ctx, c, p, false) })
	}
	// A peer gets at most maxSwarmSessions swarm/1 sessions and
	// maxLiveSessions live/1 sessions at once: each may hold a circuit
	// window of unread messages here.
	swarmSlots := make(chan struct{}, maxSwarmSessions)
	liveSlots := make(chan struct{}, maxLiveSessions)
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			return
		}
		switch c.Service() {
		case ebt.Service:
			n.wg.Go(func() { n.serveEBT(ctx, c, p, true) })
		case contexts.Service:
			n.wg.Go(func() { n.serveMembers(ctx, c, p) })
		case swarm.Service:
			n.serveInSlot(swarmSlots, c, p, func() { n.serveSwarm(ctx, c, p) })
		case live.Service:
			n.serveInSlot(liveSlots, c, p, func() { n.serveLive(ctx, c, p) })
		case pingService:
			n.serveInSlot(n.pingSlots, c, p, func() { n.servePing(ctx, c, p) })
		default:
			n.log.Debug("unknown circuit service", "peer", p, "service", c.Service())
			c.Close()
		}
	}
}

// serveInSlot runs serve for circuit c of peer p in a goroutine if one of
// slots is free, and frees it when serve returns; with none free (too many
// sessions of the service open, the peer's or, for ping/1, the node's),
// c is closed.
func (n *Node) serveInSlot(slots chan struct{}, c *flitlink.Circuit, p feed.ID, serve func()) {
	select {
	case slots <- struct{}{}:
		n.wg.Go(func() {
			defer func() { <-slots }()
			serve()
		})
	default:
		n.log.Debug("circuit refused: too many sessions", "peer", p, "service", c.Service(), "limit", cap(slots))
		c.Close()
	}
}

func (n *Node) serveEBT(ctx context.Context, c *flitlink.Circuit, p feed.ID, acceptor bool) {
	defer c.Close()
	if err := n.repl.Serve(ctx, c, p, acceptor); err != nil && ctx.Err() == nil {
		n.log.Info("ebt session ended", "peer", p, "err", err)
		n.dropIfAbusive(p, err)
	}
}

func isDone(l *flitlink.Link) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

// Connect dials the peer at addr, a multiaddr ending in /p2p/<id>, and
// starts replicating with it.
func (n *Node) Connect(ctx context.Context, addr string) error {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return fmt.Errorf("node: %q is not a peer address (want a multiaddr ending in /p2p/<id>): %w", addr, err)
	}
	_, err = n.link(ctx, *ai)
	return err
}

// link returns the live link to the peer ai, dialing it (and so starting
// replication with it) if there is none.
func (n *Node) link(ctx context.Context, ai peer.AddrInfo) (*flitlink.Link, error) {
	id, err := feed.IDFromPeerIDBytes([]byte(ai.ID))
	if err != nil {
		return nil, err
	}
	if id == n.id {
		return nil, ErrSelf
	}
	if rel, err := n.store.Relation(n.id, id); err != nil {
		return nil, err
	} else if rel == feed.RelBlock {
		return nil, fmt.Errorf("%w: %s", ErrBlocked, id)
	}
	if len(ai.Addrs) > 0 {
		// New addresses are worth knowing even with a live link: a
		// redial tries them.
		n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	}
	return n.dial(ctx, id, ai)
}

// addrs returns the node's listen addresses with its /p2p/ID.
func (n *Node) addrs() []string {
	suffix, err := multiaddr.NewMultiaddr("/p2p/" + peer.ID(n.id.PeerIDBytes()).String())
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.Encapsulate(suffix).String())
	}
	return out
}

// Info describes the node.
func (n *Node) Info() api.NodeInfo {
	return api.NodeInfo{ID: n.id, Addrs: n.addrs(), Version: Version}
}

// Peers lists the peers the node has a live link with.
func (n *Node) Peers() []api.Peer {
	n.mu.Lock()
	ids := make([]feed.ID, 0, len(n.peers))
	for id, l := range n.peers {
		if !isDone(l) {
			ids = append(ids, id)
		}
	}
	n.mu.Unlock()
	slices.SortFunc(ids, feed.ID.Compare)
	out := make([]api.Peer, 0, len(ids))
	for _, id := range ids {
		p := api.Peer{ID: id}
		if conns := n.host.Network().ConnsToPeer(peer.ID(id.PeerIDBytes())); len(conns) > 0 {
			p.Addr = conns[0].RemoteMultiaddr().String()
		}
		out = append(out, p)
	}
	return out
}
