package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	kad "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/p2p/protocol/identify"

	"github.com/contextd/contextd/feed"
)

// Prefix is the application prefix of contextd's DHT protocols; it keeps the
// DHT apart from the public IPFS one (/ipfs/kad/1.0.0).
const Prefix protocol.ID = "/contextd"

// Protocol is the one protocol the DHT speaks and serves.
const Protocol protocol.ID = Prefix + "/kad/1.0.0"

// Bounds on what one call may ask of the network.
const (
	// MaxProviders caps FindProviders; a non-positive or larger max means this.
	MaxProviders = 64
	// ReprovideConcurrency is how many provides Reprovide runs at once.
	ReprovideConcurrency = 8
)

// Errors callers branch on.
var (
	// ErrNotFound reports a peer the DHT could not locate.
	ErrNotFound = errors.New("dht: not found")
	// ErrNoBootstrap reports that none of Config.Bootstrap could be reached.
	ErrNoBootstrap = errors.New("dht: no bootstrap peer reachable")
	// ErrClosed reports a call after Close.
	ErrClosed = errors.New("dht: closed")
)

// Config configures a DHT. The zero value is a DHT that knows nobody until
// other peers connect to it (the first node of a network).
type Config struct {
	// Bootstrap are the peers the DHT joins through, and reconnects to
	// when its routing table empties. Only these are ever dialled unasked;
	// there are no default (public) bootstrap peers.
	Bootstrap []peer.AddrInfo
	Logger    *slog.Logger // default: discard
}

// DHT is a running private Kademlia DHT on a libp2p host.
type DHT struct {
	cfg  Config
	log  *slog.Logger
	host host.Host
	kad  *kad.IpfsDHT

	closeOnce sync.Once
	closeErr  error
}

// New starts a DHT on h. ctx bounds construction only; the DHT runs until
// Close. h stays the caller's: Close does not close it. The DHT starts
// dialling Config.Bootstrap in the background at once (and again whenever its
// routing table empties); call Bootstrap to wait until it has joined.
func New(ctx context.Context, h host.Host, cfg Config) (*DHT, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dht: new: %w", err)
	}
	if h == nil {
		return nil, errors.New("dht: new: host is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Bootstrap = slices.Clone(cfg.Bootstrap)
	opts := []kad.Option{
		kad.ProtocolPrefix(Prefix),
		// Server mode: every contextd node answers DHT queries. ModeAuto
		// and ModeAutoServer follow AutoNAT and drop to client mode when a
		// node looks unreachable from the internet, which on loopback or a
		// LAN is always, leaving a private network with no servers.
		kad.Mode(kad.ModeServer),
		// Provider records in memory: they are re-announced (Reprovide).
		kad.Datastore(dssync.MutexWrap(ds.NewMapDatastore())),
		// No value records until a contextd record type needs them; this
		// also keeps peers from parking /pk and /ipns records on us.
		kad.DisableValues(),
	}
	if len(cfg.Bootstrap) > 0 {
		opts = append(opts, kad.BootstrapPeers(cfg.Bootstrap...))
	}
	k, err := kad.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("dht: new: %w", err)
	}
	return &DHT{cfg: cfg, log: cfg.Logger, host: h, kad: k}, nil
}

// Bootstrap joins the network: it connects to every Config.Bootstrap peer
// that answers, adds those that speak Protocol to the routing table, and
// waits for one routing table refresh (a lookup of our own ID and of each
// bucket) so the table holds the peers they know. With no bootstrap peers
// it returns nil at once. It fails with ErrNoBootstrap if none is reachable.
func (d *DHT) Bootstrap(ctx context.Context) error {
	if err := d.kad.Context().Err(); err != nil {
		return ErrClosed
	}
	if len(d.cfg.Bootstrap) == 0 {
		return nil
	}
	errs := make([]error, len(d.cfg.Bootstrap))
	var wg sync.WaitGroup
	for i, ai := range d.cfg.Bootstrap {
		wg.Go(func() { errs[i] = d.join(ctx, ai) })
	}
	wg.Wait()
	joined := 0
	for i, err := range errs {
		if err == nil {
			joined++
			continue
		}
		d.log.Warn("dht: bootstrap peer unreachable", "peer", d.cfg.Bootstrap[i].ID, "err", err)
	}
	if joined == 0 {
		return fmt.Errorf("%w: %w", ErrNoBootstrap, errors.Join(errs...))
	}
	select {
	case err := <-d.kad.RefreshRoutingTable():
		// A refresh that finds little is normal in a small network; the
		// routing table already holds the bootstrap peers.
		if err != nil {
			d.log.Debug("dht: routing table refresh", "err", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("dht: bootstrap: %w", ctx.Err())
	}
	d.log.Debug("dht: bootstrapped", "peers", joined, "table", d.kad.RoutingTable().Size())
	return nil
}

// join connects to ai and puts it in the routing table once identify has
// told us its protocols. Adding it here rather than waiting for the DHT's
// own asynchronous liveness check makes the table usable as soon as
// Bootstrap returns.
func (d *DHT) join(ctx context.Context, ai peer.AddrInfo) error {
	if err := d.host.Connect(ctx, ai); err != nil {
		return err
	}
	if err := d.identified(ctx, ai.ID); err != nil {
		return err
	}
	p, err := d.host.Peerstore().FirstSupportedProtocol(ai.ID, Protocol)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("peer %s does not speak %s", ai.ID, Protocol)
	}
	_, err = d.kad.RoutingTable().TryAddPeer(ai.ID, true, true)
	return err
}

// identified waits until identify has run on a connection to p. The host's
// Connect waits for it only on a connection it dials itself: when the DHT's
// background bootstrap dial (or p) connected first, Connect returns at once
// and p's protocols may not be in the peerstore yet.
func (d *DHT) identified(ctx context.Context, p peer.ID) error {
	h, ok := d.host.(interface{ IDService() identify.IDService })
	if !ok {
		return nil
	}
	conns := d.host.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return fmt.Errorf("dht: no connection to %s", p)
	}
	select {
	case <-h.IDService().IdentifyWait(conns[0]):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dht: identify %s: %w", p, ctx.Err())
	}
}

// Provide announces that this node holds object c.
func (d *DHT) Provide(ctx context.Context, c cid.Cid) error {
	if err := d.kad.Provide(ctx, c, true); err != nil {
		return fmt.Errorf("dht: provide %s: %w", c, err)
	}
	return nil
}

// FindProviders returns up to max peers (other than this node) that
// announced c, with the addresses they were announced with. max is capped at
// MaxProviders. It returns when max are found, the lookup ends, or ctx ends;
// in the last case it returns what it found with ctx's error.
func (d *DHT) FindProviders(ctx context.Context, c cid.Cid, max int) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for ai := range d.StreamProviders(ctx, c, max) {
		out = append(out, ai)
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("dht: find providers of %s: %w", c, err)
	}
	return out, nil
}

// StreamProviders is FindProviders delivering each provider as the lookup
// finds it. The channel closes when max are found, the lookup ends, or ctx
// ends; the caller must read it to the end or end ctx.
func (d *DHT) StreamProviders(ctx context.Context, c cid.Cid, max int) <-chan peer.AddrInfo {
	if max <= 0 || max > MaxProviders {
		max = MaxProviders
	}
	out := make(chan peer.AddrInfo)
	go func() {
		defer close(out)
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // stops the lookup once we have enough
		self := d.host.ID()
		n := 0
		// Ask for one more than max: this node may be among the providers.
		for ai := range d.kad.FindProvidersAsync(ctx, c, max+1) {
			if ai.ID == self {
				continue
			}
			select {
			case out <- ai:
			case <-ctx.Done():
				return
			}
			if n++; n == max {
				return
			}
		}
	}()
	return out
}

// FindPeer returns the addresses of the node whose identity is id. It fails
// with ErrNotFound if no peer in the DHT knows them.
func (d *DHT) FindPeer(ctx context.Context, id feed.ID) (peer.AddrInfo, error) {
	if id.IsZero() {
		return peer.AddrInfo{}, errors.New("dht: find peer: zero ID")
	}
	p, err := peer.IDFromBytes(id.PeerIDBytes())
	if err != nil {
		return peer.AddrInfo{}, fmt.Errorf("dht: find peer %s: %w", id.Short(), err)
	}
	ai, err := d.kad.FindPeer(ctx, p)
	switch {
	case errors.Is(err, routing.ErrNotFound):
		return peer.AddrInfo{}, fmt.Errorf("%w: peer %s", ErrNotFound, id.Short())
	case err != nil:
		return peer.AddrInfo{}, fmt.Errorf("dht: find peer %s: %w", id.Short(), err)
	}
	return ai, nil
}

// Reprovide announces every object in cids, ReprovideConcurrency at a time.
// It keeps going past failures and returns an error naming how many failed
// and the first failure; it stops early when ctx ends.
func (d *DHT) Reprovide(ctx context.Context, cids []cid.Cid) error {
	work := make(chan cid.Cid)
	var (
		mu     sync.Mutex // guards failed, first
		failed int
		first  error
		wg     sync.WaitGroup
	)
	for range min(ReprovideConcurrency, len(cids)) {
		wg.Go(func() {
			for c := range work {
				if err := d.Provide(ctx, c); err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, c := range cids {
		select {
		case work <- c:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dht: reprovide: %w", err)
	}
	if failed > 0 {
		return fmt.Errorf("dht: reprovide: %d of %d failed, first: %w", failed, len(cids), first)
	}
	return nil
}

// Close stops the DHT and waits for its goroutines. The host stays open.
func (d *DHT) Close() error {
	d.closeOnce.Do(func() {
		if err := d.kad.Close(); err != nil {
			d.closeErr = fmt.Errorf("dht: close: %w", err)
		}
	})
	return d.closeErr
}
