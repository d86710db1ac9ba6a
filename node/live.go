package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/live"
	"github.com/contextd/contextd/rpc/api"
)

// Live streams (package live, docs/protocols/swarm.md "Live streams"): the
// streams this node publishes and the ones it watches, which it carries
// (relays) to the peers that ask.

// Live stream bounds.
const (
	// maxLiveStreams bounds the streams a node publishes or watches at once.
	maxLiveStreams = 256
	// maxLiveDownstream bounds the live/1 sessions a node serves per
	// stream (pushing or held as a peer's backup).
	maxLiveDownstream = 16
	// maxLiveSessions bounds the live/1 circuits one peer has open to the
	// node at once (all streams).
	maxLiveSessions = 32
	// liveFindTimeout is how long WatchStream looks for a carrier.
	liveFindTimeout = 10 * time.Second
	// liveAskTimeout bounds a linked peer's answer to a join.
	liveAskTimeout = 2 * time.Second
	// liveAskAgain is the pause between rounds of asking the linked peers
	// when none carries the stream.
	liveAskAgain = 500 * time.Millisecond
	// liveWatchBuffer is the chunks queued for a watcher that reads
	// slowly; past them it falls behind the window and loses the oldest.
	liveWatchBuffer = 64
	// liveClass is the flitlink class of live/1 circuits: Voice, which the
	// link's bulk pacer does not hold back. The stream's rate is the
	// publisher's, and its latency is the point: as Video (paced like
	// Data), cxbench live (10 viewers, 4000 kbit/s, 2 shared cores) saw
	// p99 latencies of 1.6–1.7 s, as Voice about 30 ms.
	liveClass = flitlink.Voice
)

// errNotPublished is the error of writing to or closing a stream this node
// does not publish (or no longer does).
var errNotPublished = fmt.Errorf("%w: this node publishes no open stream of that ID (open one with stream.open)", api.ErrNotFound)

// carried is a stream the node publishes or watches.
type carried struct {
	s     *live.Stream
	pub   *live.Publisher // this node publishes it; nil on a viewer
	slots chan struct{}   // the live/1 sessions serving it (maxLiveDownstream)
	// ready is closed once the stream can be served: at once on the
	// publisher, when a viewer chose its first upstream.
	ready     chan struct{}
	readyOnce sync.Once
	stop      context.CancelFunc // ends a viewer's joining

	watchers int     // guarded by Node.liveMu: WatchStream calls reading it
	upstream feed.ID // guarded by Node.liveMu: the peer a viewer receives it from
}

func (c *carried) setReady() { c.readyOnce.Do(func() { close(c.ready) }) }

func (c *carried) isReady() bool {
	select {
	case <-c.ready:
		return true
	default:
		return false
	}
}

// addStreamLocked registers c as stream id, within maxLiveStreams.
func (n *Node) addStreamLocked(id feed.ID, c *carried) error {
	if len(n.streams) >= maxLiveStreams {
		return fmt.Errorf("%w: %d live streams published or watched (the limit): close or stop watching one", api.ErrLimit, maxLiveStreams)
	}
	if n.streams == nil {
		n.streams = map[feed.ID]*carried{}
	}
	n.streams[id] = c
	return nil
}

// OpenStream makes a new live stream with a fresh key; this node publishes it.
func (n *Node) OpenStream(ctx context.Context) (feed.ID, error) {
	key, err := feed.GenerateKey(rand.Reader)
	if err != nil {
		return feed.ID{}, fmt.Errorf("node: open stream: %w", err)
	}
	id := key.Public()
	s := live.NewStream(live.StreamConfig{ID: id, Origin: true})
	c := &carried{s: s, pub: live.NewPublisher(key, s), slots: make(chan struct{}, maxLiveDownstream), ready: make(chan struct{})}
	c.setReady()
	n.liveMu.Lock()
	defer n.liveMu.Unlock()
	if err := n.addStreamLocked(id, c); err != nil {
		return feed.ID{}, fmt.Errorf("node: open stream: %w", err)
	}
	n.log.Info("live stream opened", "stream", id)
	return id, nil
}

// published returns the open stream id this node publishes.
func (n *Node) published(id feed.ID) (*carried, error) {
	n.liveMu.Lock()
	defer n.liveMu.Unlock()
	if c := n.streams[id]; c != nil && c.pub != nil {
		return c, nil
	}
	return nil, fmt.Errorf("node: stream %s: %w", id.Short(), errNotPublished)
}

// WriteStream appends data (any length, cut into chunks of at most 16 KiB)
// to a stream this node publishes. Unknown or closed stream: an error
// wrapping api.ErrNotFound.
func (n *Node) WriteStream(ctx context.Context, id feed.ID, data []byte) error {
	c, err := n.published(id)
	if err != nil {
		return err
	}
	switch err := c.pub.Write(data); {
	case errors.Is(err, live.ErrClosed):
		return fmt.Errorf("node: stream %s: %w", id.Short(), errNotPublished)
	case err != nil:
		return fmt.Errorf("node: write stream %s: %w", id.Short(), err)
	}
	return nil
}

// CloseStream ends a stream this node publishes: what was written is
// flushed, and the signed END goes to every watcher and downstream peer.
func (n *Node) CloseStream(ctx context.Context, id feed.ID) error {
	c, err := n.published(id)
	if err != nil {
		return err
	}
	c.pub.Close()
	n.liveMu.Lock()
	if n.streams[id] == c {
		delete(n.streams, id)
	}
	n.liveMu.Unlock()
	n.log.Info("live stream closed", "stream", id)
	return nil
}

// WatchStream delivers the verified chunks of stream id from chunk index
// from (api.StreamLiveEdge: the live edge) in order, skipping empty
// chunks. The channel closes after the stream's END (the last StreamChunk
// has End set), when ctx ends, the node closes or stop is called. A
// watcher that falls behind by more than the window loses the oldest
// chunks: the next StreamChunk's Index jumps. On the publisher's node it
// reads the stream directly; elsewhere the node joins it through its
// linked peers (the one nearest the publisher pushes it, the others are
// backups) and carries it to peers that ask while it watches. No carrier
// found within 10 s: an error wrapping api.ErrUnavailable. The chunks'
// Data are shared with the node's window: read them, do not modify them.
func (n *Node) WatchStream(ctx context.Context, id feed.ID, from int64) (<-chan api.StreamChunk, func(), error) {
	pos := live.LiveEdge
	switch {
	case from >= 0:
		pos = uint64(from)
	case from != api.StreamLiveEdge:
		return nil, nil, fmt.Errorf("%w: stream position %d (a chunk index, or %d for the live edge)", api.ErrInvalidParams, from, api.StreamLiveEdge)
	}
	c, err := n.carry(id, pos)
	if err != nil {
		return nil, nil, fmt.Errorf("node: watch stream %s: %w", id.Short(), err)
	}
	timer := time.NewTimer(liveFindTimeout)
	defer timer.Stop()
	select {
	case <-c.ready:
	case <-timer.C:
		err = fmt.Errorf("%w: no linked peer carries stream %s (link to its publisher or to a peer that watches it)", api.ErrUnavailable, id.Short())
	case <-ctx.Done():
		err = ctx.Err()
	case <-n.ctx.Done():
		err = fmt.Errorf("%w: node closing", api.ErrUnavailable)
	}
	if err != nil {
		n.unwatch(id, c)
		return nil, nil, fmt.Errorf("node: watch stream %s: %w", id.Short(), err)
	}
	wctx, stop := context.WithCancel(ctx)
	out := make(chan api.StreamChunk, liveWatchBuffer)
	n.wg.Go(func() {
		defer n.unwatch(id, c)
		defer close(out)
		defer stop()
		defer context.AfterFunc(n.ctx, stop)()
		for ch := range c.s.Chunks(wctx, pos) {
			select {
			case out <- api.StreamChunk{Index: ch.Index, Data: ch.Data, Published: ch.Published, End: ch.End}:
			case <-wctx.Done():
				return
			}
		}
	})
	return out, stop, nil
}

// carry returns the stream id this node carries, counting one more
// watcher; a stream it does not carry yet it starts joining from pos.
func (n *Node) carry(id feed.ID, pos uint64) (*carried, error) {
	n.liveMu.Lock()
	defer n.liveMu.Unlock()
	if c := n.streams[id]; c != nil {
		c.watchers++
		return c, nil
	}
	ctx, stop := context.WithCancel(n.ctx)
	c := &carried{
		s:     live.NewStream(live.StreamConfig{ID: id}),
		slots: make(chan struct{}, maxLiveDownstream), ready: make(chan struct{}),
		stop: stop, watchers: 1,
	}
	if err := n.addStreamLocked(id, c); err != nil {
		stop()
		return nil, err
	}
	n.wg.Go(func() { n.joinStream(ctx, c, pos) })
	return c, nil
}

// unwatch counts a watcher of c gone; a viewer whose last watcher left
// stops carrying the stream.
func (n *Node) unwatch(id feed.ID, c *carried) {
	n.liveMu.Lock()
	defer n.liveMu.Unlock()
	if c.watchers--; c.watchers > 0 || c.pub != nil {
		return
	}
	if n.streams[id] == c {
		delete(n.streams, id)
	}
	c.stop()
}

// joinStream receives stream c from one linked peer at a time, from chunk
// pos at first and then from the next munro it lacks, until the stream's
// END or ctx ends. It asks every linked peer, takes the one nearest the
// publisher as its upstream and keeps the others as backups for when that
// one fails or goes silent; when none is left it asks again. A peer that
// sent something that does not verify is dropped.
func (n *Node) joinStream(ctx context.Context, c *carried, pos uint64) {
	var backups []*liveOffer
	defer func() {
		for _, b := range backups {
			b.up.Close()
		}
	}()
	for ctx.Err() == nil && !c.s.Ended() {
		if len(backups) == 0 {
			if backups = n.askCarriers(ctx, c); len(backups) == 0 {
				select {
				case <-ctx.Done():
				case <-time.After(liveAskAgain):
				}
				continue
			}
		}
		best := backups[0]
		backups = backups[1:]
		// Adopted before the stream is ready, so that the joins this
		// node answers state the upstream's munro size.
		err := best.up.Adopt()
		if err == nil {
			n.liveMu.Lock()
			c.upstream = best.peer
			n.liveMu.Unlock()
			c.s.SetHops(best.up.Hops() + 1)
			c.setReady()
			from := pos
			if next, ok := c.s.Next(); ok {
				from = next << c.s.MunroLog()
			}
			n.log.Debug("live upstream", "stream", c.s.ID(), "peer", best.peer, "hops", best.up.Hops(), "from", from, "backups", len(backups))
			err = best.up.Run(ctx, from, 0)
		}
		best.up.Close()
		n.liveMu.Lock()
		c.upstream = feed.ID{}
		n.liveMu.Unlock()
		c.s.SetHops(live.MaxHops)
		switch {
		case err == nil || ctx.Err() != nil:
		case abusive(err):
			n.drop(best.peer, err)
		default:
			n.log.Debug("live upstream lost", "stream", c.s.ID(), "peer", best.peer, "err", err)
		}
	}
}

// liveOffer is a linked peer that answered a join of a stream.
type liveOffer struct {
	peer feed.ID
	up   *live.Upstream
}

// askCarriers asks every linked peer for stream c at once and returns
// those that carry it, nearest the publisher first.
func (n *Node) askCarriers(ctx context.Context, c *carried) []*liveOffer {
	n.mu.Lock()
	links := make([]*flitlink.Link, 0, len(n.peers))
	for _, l := range n.peers {
		if !isDone(l) {
			links = append(links, l)
		}
	}
	n.mu.Unlock()
	var (
		mu     sync.Mutex
		offers []*liveOffer
		wg     sync.WaitGroup
	)
	for _, l := range links {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, liveAskTimeout)
			defer cancel()
			circ, err := l.Open(actx, live.Service, liveClass)
			if err != nil {
				return
			}
			up, err := live.Dial(actx, circ, c.s, n.metrics.live)
			if err != nil {
				circ.Close()
				n.dropIfAbusive(l.Remote(), err)
				return
			}
			mu.Lock()
			offers = append(offers, &liveOffer{peer: l.Remote(), up: up})
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(offers, func(a, b *liveOffer) int {
		return cmp.Or(cmp.Compare(a.up.Hops(), b.up.Hops()), a.peer.Compare(b.peer))
	})
	return offers
}

// serveLive serves a live/1 circuit peer p opened: the stream it names,
// if the node carries it, has it ready, is not receiving it from p, and
// serves fewer than maxLiveDownstream sessions of it; otherwise it closes
// the circuit (the peer asks others).
func (n *Node) serveLive(ctx context.Context, circ *flitlink.Circuit, p feed.ID) {
	defer circ.Close()
	h, err := live.ReadHandshake(ctx, circ, n.metrics.live)
	if err != nil {
		n.dropIfAbusive(p, err)
		return
	}
	n.liveMu.Lock()
	c := n.streams[h.Stream]
	fromPeer := c != nil && c.upstream == p
	n.liveMu.Unlock()
	if c == nil || fromPeer || !c.isReady() {
		n.log.Debug("live circuit refused: stream not carried here", "peer", p, "stream", h.Stream, "upstream", fromPeer)
		return
	}
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	default:
		n.log.Debug("live circuit refused: too many sessions", "peer", p, "stream", h.Stream, "limit", maxLiveDownstream)
		return
	}
	err = live.Serve(ctx, circ, h, c.s, n.metrics.live)
	switch {
	case err == nil:
	case abusive(err):
		n.drop(p, err)
	default:
		n.log.Debug("live session ended", "peer", p, "stream", h.Stream, "err", err)
	}
}

// StreamStats reports the bytes of live/1 messages this node sent and
// received (all streams), also exported as contextd_live_bytes_sent_total
// and contextd_live_bytes_received_total.
func (n *Node) StreamStats() api.StreamStats {
	return api.StreamStats{SentBytes: n.metrics.live.Sent(), ReceivedBytes: n.metrics.live.Received()}
}
