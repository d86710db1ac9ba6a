package p2plink

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"
	"github.com/quic-go/quic-go"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
)

// ProtocolID is the libp2p protocol of every stream of a flit link. The
// major version is flitlink.Version; minor features are negotiated in the
// link's hello.
const ProtocolID = "/contextd/flit/2"

// AcceptBacklog bounds incoming links waiting for Accept.
const AcceptBacklog = 32

// Stream preamble: what the opener of every stream writes first.
const (
	preambleSize = 1 + 1 + 8 // version, kind, link nonce

	kindLink      = 0 // the control stream of a new link
	kindOwnLink   = 1 // a circuit of a link the opener initiated
	kindPeersLink = 2 // a circuit of a link the receiver initiated
)

// Bounds of incoming streams: how long a preamble may take, and how many
// circuit streams may wait for their link to take them.
const (
	preambleTimeout = 10 * time.Second
	maxPending      = 64
)

// ErrClosed is returned by Dial and Accept after Close, and by a session's
// calls after it was closed.
var ErrClosed = errors.New("p2plink: transport closed")

// key names a link among a host's: the peer, the nonce its initiator
// chose, and whether this side initiated it.
type key struct {
	peer  peer.ID
	nonce uint64
	ours  bool
}

// Transport makes flit links over a libp2p host.
type Transport struct {
	h       host.Host
	cfg     flitlink.Config
	backlog chan *flitlink.Link
	done    chan struct{} // closed by Close

	mu       sync.Mutex // guards closed, sessions and sends on backlog
	closed   bool
	sessions map[key]*session
}

// New registers the flit stream handler on h. Links use cfg.
func New(h host.Host, cfg flitlink.Config) *Transport {
	t := &Transport{
		h:        h,
		cfg:      cfg,
		backlog:  make(chan *flitlink.Link, AcceptBacklog),
		done:     make(chan struct{}),
		sessions: make(map[key]*session),
	}
	h.SetStreamHandler(protocol.ID(ProtocolID), t.handle)
	return t
}

func appendPreamble(b []byte, kind byte, nonce uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, flitlink.Version, kind), nonce)
}

// handle routes an incoming stream by its preamble: the control stream of
// a new link (queued for Accept), or a circuit of a link (handed to its
// session). Streams with a bad preamble, of an unknown link or over a
// bound are reset.
func (t *Transport) handle(s network.Stream) {
	pid := s.Conn().RemotePeer()
	remote, err := feed.IDFromPeerIDBytes([]byte(pid))
	if err != nil {
		_ = s.Reset() // not a contextd peer; nothing to report back
		return
	}
	var pre [preambleSize]byte
	if err := s.SetReadDeadline(time.Now().Add(preambleTimeout)); err != nil {
		_ = s.Reset()
		return
	}
	if _, err := io.ReadFull(s, pre[:]); err != nil || pre[0] != flitlink.Version || pre[1] > kindPeersLink {
		_ = s.Reset()
		return
	}
	if err := s.SetReadDeadline(time.Time{}); err != nil {
		_ = s.Reset()
		return
	}
	k := key{peer: pid, nonce: binary.BigEndian.Uint64(pre[2:]), ours: pre[1] == kindPeersLink}

	t.mu.Lock()
	defer t.mu.Unlock()
	if pre[1] != kindLink {
		if sess := t.sessions[k]; sess == nil || !sess.deliver(s) {
			_ = s.Reset() // a circuit of a link that is gone, or too many waiting
		}
		return
	}
	if _, dup := t.sessions[k]; dup || t.closed || len(t.backlog) == cap(t.backlog) {
		_ = s.Reset()
		return
	}
	// Cannot block: only this function sends, under t.mu, after the check.
	t.backlog <- flitlink.NewLink(t.newSessionLocked(k, s), remote, false, t.cfg)
}

// Dial opens a link to the peer (connecting to it if needed, with the
// addresses in the host's peerstore): a control stream, on whose
// connection the link's circuits will run. It returns the initiator's
// link.
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
	c, err := t.newestConn(ctx, pid)
	if err != nil {
		return nil, fmt.Errorf("p2plink: dial %s: %w", to.Short(), err)
	}
	s, err := openStream(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("p2plink: dial %s: %w", to.Short(), err)
	}
	t.mu.Lock()
	k := key{peer: pid, nonce: rand.Uint64(), ours: true}
	for t.sessions[k] != nil {
		k.nonce = rand.Uint64()
	}
	sess := t.newSessionLocked(k, s)
	t.mu.Unlock()
	if _, err := s.Write(appendPreamble(nil, kindLink, k.nonce)); err != nil {
		sess.Close()
		return nil, fmt.Errorf("p2plink: dial %s: %w", to.Short(), err)
	}
	return flitlink.NewLink(sess, to, true, t.cfg), nil
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
// open, but circuits the peer opens on them from now on are not answered.
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

// session is one link's streams: its control stream and the circuit
// streams on the control stream's connection. It implements
// flitlink.Session and flitlink.RTTSampler. Closing it never closes the
// connection (node decides about connections).
type session struct {
	t        *Transport
	key      key
	ctrl     network.Stream
	incoming chan network.Stream // circuit streams the peer opened
	done     chan struct{}       // closed by Close
	once     sync.Once
}

func (t *Transport) newSessionLocked(k key, ctrl network.Stream) *session {
	s := &session{t: t, key: k, ctrl: ctrl, incoming: make(chan network.Stream, maxPending), done: make(chan struct{})}
	t.sessions[k] = s
	return s
}

func (s *session) Control() flitlink.Stream { return s.ctrl }

// deliver hands an incoming circuit stream to the session; false if it is
// closed or too many wait.
func (s *session) deliver(st network.Stream) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.incoming <- st:
		return true
	default:
		return false
	}
}

// OpenStream opens a circuit stream on the control stream's connection,
// negotiating the protocol lazily (its header leaves with the first bytes).
func (s *session) OpenStream(ctx context.Context) (flitlink.Stream, error) {
	select {
	case <-s.done:
		return nil, ErrClosed
	default:
	}
	st, err := openStream(ctx, s.ctrl.Conn())
	if err != nil {
		return nil, fmt.Errorf("p2plink: open stream: %w", err)
	}
	kind := byte(kindPeersLink)
	if s.key.ours {
		kind = kindOwnLink
	}
	if _, err := st.Write(appendPreamble(nil, kind, s.key.nonce)); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("p2plink: open stream: %w", err)
	}
	return st, nil
}

// AcceptStream returns the next circuit stream the peer opened.
func (s *session) AcceptStream(ctx context.Context) (flitlink.Stream, error) {
	select {
	case st := <-s.incoming:
		return st, nil
	case <-s.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close resets the control stream and the circuit streams not yet
// accepted, and forgets the session.
func (s *session) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.t.mu.Lock()
		if s.t.sessions[s.key] == s {
			delete(s.t.sessions, s.key)
		}
		s.t.mu.Unlock()
		_ = s.ctrl.Reset()
		for {
			select {
			case st := <-s.incoming:
				_ = st.Reset()
			default:
				return
			}
		}
	})
	return nil
}

// RTT reports the round-trip times quic-go measured on the link's
// connection; ok is false on other transports or before a sample.
func (s *session) RTT() (latest, min time.Duration, ok bool) {
	var qc *quic.Conn
	if !s.ctrl.Conn().As(&qc) || qc == nil {
		return 0, 0, false
	}
	st := qc.ConnectionStats()
	return st.LatestRTT, st.MinRTT, st.LatestRTT > 0
}

// newestConn returns the newest open connection to the peer, connecting
// (with the peerstore's addresses) when there is none. A link starts on the
// newest because libp2p's own choice prefers the connection with the most
// streams, which after a path was cut is the dead one: its gossip and DHT
// streams linger until its idle timeout, while the node's redial has just
// made a connection over a path that works.
func (t *Transport) newestConn(ctx context.Context, pid peer.ID) (network.Conn, error) {
	if err := t.h.Connect(ctx, peer.AddrInfo{ID: pid}); err != nil {
		return nil, err
	}
	var best network.Conn
	for _, c := range t.h.Network().ConnsToPeer(pid) {
		if !c.IsClosed() && (best == nil || c.Stat().Opened.After(best.Stat().Opened)) {
			best = c
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no open connection to %s", pid)
	}
	return best, nil
}

// openStream opens a stream of the flit protocol on c, negotiating the
// protocol lazily (its header leaves with the first bytes).
func openStream(ctx context.Context, c network.Conn) (*outStream, error) {
	raw, err := c.NewStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := raw.SetProtocol(protocol.ID(ProtocolID)); err != nil {
		_ = raw.Reset()
		return nil, err
	}
	return &outStream{Stream: raw, rw: msmux.NewMSSelect(raw, ProtocolID)}, nil
}

// outStream is a circuit stream this side opened, whose protocol is
// negotiated lazily through rw.
type outStream struct {
	network.Stream
	rw msmux.LazyConn
}

func (s *outStream) Read(b []byte) (int, error)  { return s.rw.Read(b) }
func (s *outStream) Write(b []byte) (int, error) { return s.rw.Write(b) }

// CloseWrite flushes the negotiation, if still pending, then ends this
// direction.
func (s *outStream) CloseWrite() error {
	_ = s.rw.Flush() // an error shows on the next read
	return s.Stream.CloseWrite()
}
