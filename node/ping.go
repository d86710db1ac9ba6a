package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/rpc/api"
)

// The ping/1 service measures round trips on a link the way chat and
// session control see them: on a Control circuit, which is never queued
// behind bulk in the node and is not paced. The opener sends messages of
// 1 to api.MaxPingSize bytes; the acceptor sends each one back unchanged,
// in order. Anything larger ends the circuit.
const pingService = "ping/1"

const (
	// maxPingSessions bounds the ping/1 circuits the node serves at once,
	// over all peers; more are closed at once.
	maxPingSessions = 16
	// pingReplyWait is how long Ping waits for the replies still missing
	// after its last ping.
	pingReplyWait = 5 * time.Second
)

// servePing answers one ping/1 circuit until it ends; serveLink runs it
// in one of the node's maxPingSessions slots (pingSlots).
func (n *Node) servePing(ctx context.Context, c *flitlink.Circuit, p feed.ID) {
	defer c.Close()
	if c.Class() != flitlink.Control {
		n.log.Debug("ping circuit refused: not control class", "peer", p, "class", c.Class())
		return
	}
	for {
		msg, err := c.Recv(ctx)
		if err != nil {
			return
		}
		if len(msg) > api.MaxPingSize {
			n.log.Debug("ping circuit closed: message too large", "peer", p, "size", len(msg))
			return
		}
		if err := c.Send(ctx, msg); err != nil {
			return
		}
	}
}

// Ping sends count pings of size bytes to peer p, one every interval (on
// schedule, whether or not the replies keep up), on a ping/1 circuit of
// the link to p (dialed if there is none), and returns each ping's round
// trip, -1 for one whose reply did not come within pingReplyWait of the
// last ping. Out-of-range arguments wrap api.ErrInvalidParams; a peer it
// cannot reach, or that does not answer, wraps api.ErrUnavailable.
func (n *Node) Ping(ctx context.Context, p feed.ID, size, count int, interval time.Duration) ([]time.Duration, error) {
	switch {
	case size < 1 || size > api.MaxPingSize:
		return nil, fmt.Errorf("%w: ping size %d: want 1 to %d bytes", api.ErrInvalidParams, size, api.MaxPingSize)
	case count < 1 || count > api.MaxPingCount:
		return nil, fmt.Errorf("%w: ping count %d: want 1 to %d", api.ErrInvalidParams, count, api.MaxPingCount)
	case interval < api.MinPingInterval*time.Millisecond || interval > api.MaxPingInterval*time.Millisecond:
		return nil, fmt.Errorf("%w: ping interval %v: want %dms to %dms", api.ErrInvalidParams, interval, api.MinPingInterval, api.MaxPingInterval)
	}
	l, err := n.link(ctx, peer.AddrInfo{ID: peer.ID(p.PeerIDBytes())})
	if err != nil {
		return nil, fmt.Errorf("%w: ping %s: %w", api.ErrUnavailable, p, err)
	}
	c, err := l.Open(ctx, pingService, flitlink.Control)
	if err != nil {
		return nil, fmt.Errorf("%w: ping %s: open circuit: %w", api.ErrUnavailable, p, err)
	}
	defer c.Close()

	rtts := make([]time.Duration, count)
	for i := range rtts {
		rtts[i] = -1
	}
	sentAt := make(chan time.Time, count) // the send times, in order; read by the receiver
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvd := make(chan error, 1)
	go func() { // the receiver: replies come in order
		for i := range count {
			msg, err := c.Recv(rctx)
			if err != nil {
				recvd <- err
				return
			}
			if len(msg) != size {
				recvd <- fmt.Errorf("reply %d is %d bytes, want %d", i, len(msg), size)
				return
			}
			// The reply's ping was sent, unless the peer answers unasked:
			// then its send time may never come.
			var at time.Time
			select {
			case at = <-sentAt:
			case <-rctx.Done():
				recvd <- rctx.Err()
				return
			}
			rtts[i] = time.Since(at)
		}
		recvd <- nil
	}()

	msg := make([]byte, size)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var serr error
	for i := range count {
		if i > 0 {
			select {
			case <-tick.C:
			case <-ctx.Done():
				serr = ctx.Err()
			case serr = <-recvd:
				serr = cmp.Or(serr, errors.New("circuit ended"))
			}
			if serr != nil {
				break
			}
		}
		sentAt <- time.Now()
		if serr = c.Send(ctx, msg); serr != nil {
			break
		}
	}
	if serr != nil {
		return nil, fmt.Errorf("%w: ping %s: %w", api.ErrUnavailable, p, serr)
	}
	wait := time.NewTimer(pingReplyWait)
	defer wait.Stop()
	var rerr error
	select {
	case rerr = <-recvd:
	case <-wait.C: // the missing replies stay -1
		cancel()
		<-recvd
	case <-ctx.Done():
		rerr = ctx.Err()
		<-recvd
	}
	if rerr != nil {
		return nil, fmt.Errorf("%w: ping %s: %w", api.ErrUnavailable, p, rerr)
	}
	return rtts, nil
}
