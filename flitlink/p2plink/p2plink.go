package p2plink

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

// ProtocolID is the libp2p protocol of a flit link. The major version is
// flitlink.Version; minor features are negotiated in the link's hello.
const ProtocolID = "/contextd/flit/1"

// AcceptBacklog bounds incoming links waiting for Accept.
const AcceptBacklog = 32

// ErrClosed is returned by Dial and Accept after Close.
var ErrClosed = errors.New("p2plink: transport closed")

// Transport makes flit links over a libp2p host.
type Transport struct {
	h       host.Host
	cfg     flitlink.Config
	backlog chan *flitlink.Link
	done    chan struct{} // closed by Close

	mu     sync.Mutex // guards closed and sends on backlog
	closed bool
}

// New registers the flit stream handler on h. Links use cfg.
func New(h host.Host, cfg flitlink.Config) *Transport {
	t := &Transport{
		h:       h,
		cfg:     cfg,
		backlog: make(chan *flitlink.Link, AcceptBacklog),
		done:    make(chan struct{}),
	}
	h.SetStreamHandler(protocol.ID(ProtocolID), t.handle)
	return t
}

// handle turns an incoming stream into a link waiting for Accept.
func (t *Transport) handle(s network.Stream) {
	remote, err := feed.IDFromPeerIDBytes([]byte(s.Conn().RemotePeer()))
	if err != nil {
		_ = s.Reset() // not a contextd peer; nothing to report back
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || len(t.backlog) == cap(t.backlog) {
		_ = s.Reset()
		return
	}
	// Cannot block: only this function sends, under t.mu, after the check.
	t.backlog <- flitlink.NewLink(conn{s}, remote, false, t.cfg)
}

// Dial opens a flit stream to the peer (connecting to it if needed, with
// the addresses in the host's peerstore) and returns the initiator's link.
func (t *Transport) Dial(ctx context.Context, to feed.ID) (*flitlink.Link, error) {
	select {
	case <-t.done:
		return nil, ErrClosed
	default:
	}
	pid, err := peer.IDFromBytes(to.PeerIDBytes())
	if err != nil {
		return nil, fmt.Errorf("p2plink: dial %s: %w", to.Short(), err)
	}
	s, err := t.h.NewStream(ctx, pid, protocol.ID(ProtocolID))
	if err != nil {
		return nil, fmt.Errorf("p2plink: dial %s: %w", to.Short(), err)
	}
	return flitlink.NewLink(conn{s}, to, true, t.cfg), nil
}

// Accept returns the next link a peer dialled to this host.
func (t *Transport) Accept(ctx context.Context) (*flitlink.Link, error) {
	select {
	case l := <-t.backlog:
		return l, nil
	case <-t.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close removes the stream handler and closes links not yet accepted.
// Links already returned by Dial or Accept belong to the caller and stay
// open.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.h.RemoveStreamHandler(protocol.ID(ProtocolID))
	close(t.done)
	for {
		select {
		case l := <-t.backlog:
			l.Close()
		default:
			return nil
		}
	}
}

// conn adapts a stream to the link. Close resets the stream: a link closes
// abruptly anyway (frames not yet written are dropped), and a plain stream
// Close can block, on a Write stalled on flow control, or for go-libp2p's
// 10 s negotiation timeout while it waits to read the remote's protocol
// acknowledgement of a lazily negotiated stream it dialed.
type conn struct{ network.Stream }

func (c conn) Close() error { return c.Stream.Reset() }
