package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/multiformats/go-multihash"

	"github.com/contextd/contextd/contexts"
	"github.com/contextd/contextd/ebt"
	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/flitlink"
	"github.com/contextd/contextd/flitlink/p2plink"
	"github.com/contextd/contextd/object"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/swarm"
)

// floodOrder tells the hostile process whom to flood and how hard.
type floodOrder struct {
	Target     string   // the target's multiaddr, ending in /p2p/ID
	RPC        string   // host:port of the target's RPC API
	Context    feed.ID  // a context the target has joined
	GossipRate float64  // forged gossip messages per second
	RPCConns   int      // token-less RPC requests, WebSocket dials and slowloris connections, each
	Attacks    []string // of floodAttacks, the ones to run
}

// floodAttacks names the attacks, for --attacks.
var floodAttacks = []string{"notes", "chunks", "frames", "gossip", "rpc"}

// runs reports whether the order includes attack a.
func (o floodOrder) runs(a string) bool { return slices.Contains(o.Attacks, a) }

// floodReport is what the hostile process did and saw.
type floodReport struct {
	Notes         int64  // EBT notes sent, each for a random feed
	EBTSessions   int64  // EBT circuits opened for them (the target may end each)
	Chunks        int64  // unrequested swarm DATA chunks sent
	SwarmCircuits int64  // swarm circuits opened for them (the target may end each)
	Frames        int64  // oversized flitlink frames sent, one per link
	FramesReset   int64  // of those links, the ones the target closed
	Gossip        int64  // forged context entries published while the target was a topic peer
	GossipHuge    int64  // of them, about 1 MiB ones
	RPCRefused    int64  // token-less requests and dials the RPC API refused
	RPCAccepted   int64  // token-less requests and dials it served
	Slowloris     int    // connections sending a request header a byte at a time
	SlowlorisOpen int    // of them, still open at the end
	LinkClosed    string // why the flood link (notes, chunks) ended, if the target ended it
	ConnClosed    bool   // the target closed the libp2p connection of the flooding host
	GossipPruned  bool   // the target no longer counts in the hostile host's topic peers
}

// dropped reports whether the target cut the flooding host off: it closed
// its flood link or its connection. (The links of the oversized frames,
// which break the wire format, count apart: FramesReset.)
func (r floodReport) dropped() bool { return r.LinkClosed != "" || r.ConnClosed }

func init() {
	if os.Getenv(quicRoleEnv) != floodRoleHostile {
		return
	}
	var o floodOrder
	line, err := bufio.NewReader(os.Stdin).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &o)
	}
	if err != nil {
		fmt.Println(fmt.Errorf("%w: %v", errHostileUsage, err))
		os.Exit(1)
	}
	rep, err := hostile(o, os.Stdin, os.Stdout)
	if err != nil {
		fmt.Println("error:", err) // the parent waits for one line
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	os.Exit(0)
}

// hostileLimit bounds the hostile process's life should its parent never
// close its stdin.
const hostileLimit = 30 * time.Minute

// newHost starts a libp2p host over QUIC on 127.0.0.1 with a fresh ed25519
// identity and connects it to the target.
func newHost(ctx context.Context, target *peer.AddrInfo) (host.Host, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.Transport(quic.NewTransport),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("start libp2p: %w", err)
	}
	if err := h.Connect(ctx, *target); err != nil {
		h.Close()
		return nil, fmt.Errorf("connect to the target: %w", err)
	}
	return h, nil
}

// hostile floods the target until in ends: one host links the target and
// floods EBT notes, unrequested swarm chunks and forged gossip; another
// sends oversized frames on new links; the RPC API gets token-less
// requests and slowloris connections.
func hostile(o floodOrder, in io.Reader, out io.Writer) (floodReport, error) {
	var rep floodReport
	ctx, cancel := context.WithTimeout(context.Background(), hostileLimit)
	defer cancel()
	target, err := peer.AddrInfoFromString(o.Target)
	if err != nil {
		return rep, fmt.Errorf("target address: %w", err)
	}
	targetID, err := feed.IDFromPeerIDBytes([]byte(target.ID))
	if err != nil {
		return rep, fmt.Errorf("target address: %w", err)
	}
	h, err := newHost(ctx, target)
	if err != nil {
		return rep, err
	}
	defer h.Close()
	ps, err := pubsub.NewGossipSub(ctx, h, contexts.GossipOptions(contexts.Lean)...)
	if err != nil {
		return rep, fmt.Errorf("gossipsub: %w", err)
	}
	topic, err := ps.Join(contexts.Topic(o.Context))
	if err != nil {
		return rep, fmt.Errorf("join the context's topic: %w", err)
	}
	defer topic.Close()
	tr := p2plink.New(h, flitlink.Config{})
	defer tr.Close()
	link, err := tr.Dial(ctx, targetID)
	if err != nil {
		return rep, fmt.Errorf("link the target: %w", err)
	}
	defer link.Close()

	fctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var st floodStats
	wg.Go(func() { drainCircuits(fctx, link) })
	if o.runs("notes") {
		wg.Go(func() { floodNotes(fctx, link, &st) })
	}
	if o.runs("chunks") {
		wg.Go(func() { floodChunks(fctx, link, &st) })
	}
	if o.runs("frames") {
		wg.Go(func() { floodFrames(fctx, target, &st) })
	}
	if o.runs("gossip") {
		wg.Go(func() { floodGossip(fctx, topic, target.ID, o, &st) })
	}
	var slow []net.Conn
	if o.runs("rpc") && o.RPCConns > 0 {
		wg.Go(func() { floodRPC(fctx, o, &st) })
		slow = slowloris(fctx, o.RPC, o.RPCConns)
		wg.Go(func() { dribble(fctx, slow) })
	}
	fmt.Fprintln(out, "flooding")
	io.Copy(io.Discard, in) // until the parent closes our stdin

	// What the target did to us, before we close anything ourselves.
	select {
	case <-link.Done():
		rep.LinkClosed = fmt.Sprint(link.Err())
	default:
	}
	rep.ConnClosed = h.Network().Connectedness(target.ID) != network.Connected
	rep.GossipPruned = true
	for _, p := range topic.ListPeers() {
		if p == target.ID {
			rep.GossipPruned = false
		}
	}
	rep.Slowloris = len(slow)
	for _, c := range slow {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			rep.SlowlorisOpen++
		}
	}
	stop()
	wg.Wait()
	for _, c := range slow {
		c.Close()
	}
	rep.Notes, rep.EBTSessions = st.notes.Load(), st.ebtSessions.Load()
	rep.Chunks, rep.SwarmCircuits = st.chunks.Load(), st.swarmCircuits.Load()
	rep.Frames, rep.FramesReset = st.frames.Load(), st.framesReset.Load()
	rep.Gossip, rep.GossipHuge = st.gossip.Load(), st.gossipHuge.Load()
	rep.RPCRefused, rep.RPCAccepted = st.rpcRefused.Load(), st.rpcAccepted.Load()
	return rep, nil
}

// floodStats are the counters the flooders share.
type floodStats struct {
	notes, ebtSessions      atomic.Int64
	chunks, swarmCircuits   atomic.Int64
	frames, framesReset     atomic.Int64
	gossip, gossipHuge      atomic.Int64
	rpcRefused, rpcAccepted atomic.Int64
}

// drainCircuits accepts the circuits the target opens on the link (its own
// EBT session, members exchanges) and reads them to their end.
func drainCircuits(ctx context.Context, l *flitlink.Link) {
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			return
		}
		go drain(ctx, c)
	}
}

func drain(ctx context.Context, c *flitlink.Circuit) {
	for {
		if _, err := c.Recv(ctx); err != nil {
			return
		}
	}
}

// EBT messages the flood sends (docs/protocols/ebt.md; ebt keeps its
// encoders to itself): HELLO is type 1 and a uvarint capability, NOTES
// type 2, a uvarint count and count × (feed ID, varint note).
const (
	ebtHello = 0x01
	ebtNotes = 0x02
)

// floodNotes opens EBT sessions on the link and sends NOTES for random
// feeds, ebt.MaxNotes per message, each asking to be sent the feed, until
// ctx ends or the link dies.
func floodNotes(ctx context.Context, l *flitlink.Link, st *floodStats) {
	msg := make([]byte, 0, 1+binary.MaxVarintLen64+ebt.MaxNotes*(32+binary.MaxVarintLen64))
	for ctx.Err() == nil {
		c, err := l.Open(ctx, ebt.Service, flitlink.Data)
		if err != nil {
			return
		}
		st.ebtSessions.Add(1)
		go drain(ctx, c)
		if err := c.Send(ctx, binary.AppendUvarint([]byte{ebtHello}, ebt.Capability)); err != nil {
			continue
		}
		for ctx.Err() == nil {
			msg = randomNotes(msg[:0], ebt.MaxNotes)
			if err := c.Send(ctx, msg); err != nil {
				break
			}
			st.notes.Add(ebt.MaxNotes)
		}
	}
}

// randomNotes appends a NOTES message of n notes for random feeds, each
// claiming 1 to 256 entries and asking to be sent the feed.
func randomNotes(dst []byte, n int) []byte {
	dst = binary.AppendUvarint(append(dst, ebtNotes), uint64(n))
	var id [32]byte
	for range n {
		rand.Read(id[:])
		dst = append(dst, id[:]...)
		dst = binary.AppendVarint(dst, int64(ebt.MakeNote(uint64(id[0])+1, true)))
	}
	return dst
}

// floodChunks opens swarm circuits on the link, each announcing a random
// object, and sends 16 KiB DATA chunks nobody asked for until the target
// ends the circuit (then opens another), ctx ends or the link dies.
func floodChunks(ctx context.Context, l *flitlink.Link, st *floodStats) {
	const chunk = 16 << 10
	data := make([]byte, chunk)
	rand.Read(data)
	for ctx.Err() == nil {
		c, err := l.Open(ctx, swarm.Service, flitlink.Data)
		if err != nil {
			return
		}
		st.swarmCircuits.Add(1)
		go drain(ctx, c)
		mh, _ := multihash.Sum(data, multihash.SHA2_256, -1)
		hs := swarm.Handshake{Capability: swarm.Capability, ObjectID: cid.NewCidV1(cid.Raw, mh).Bytes(),
			Hash: object.SHA256, ChunkSize: chunk, Size: 1 << 40, MaxRequests: swarm.DefaultMaxRequests}
		if err := c.Send(ctx, hs.Append(nil)); err != nil {
			continue
		}
		for i := uint64(0); ctx.Err() == nil; i++ {
			if err := c.Send(ctx, swarm.Data{Bin: object.ChunkBin(i), Data: data}.Append(nil)); err != nil {
				break
			}
			st.chunks.Add(1)
		}
		data[0]++ // the next circuit announces another object
	}
}

// floodFrames links the target from a new host every half second and
// sends a valid HELLO then a control message announcing 4 GiB, far over
// any bound; it counts the links the target closes within 5 s.
func floodFrames(ctx context.Context, target *peer.AddrInfo, st *floodStats) {
	for ctx.Err() == nil {
		func() {
			h, err := newHost(ctx, target)
			if err != nil {
				return
			}
			defer h.Close()
			s, err := h.NewStream(ctx, target.ID, protocol.ID(p2plink.ProtocolID))
			if err != nil {
				return
			}
			defer s.Reset()
			// The link's control stream (flitlink v2): preamble (version 2,
			// kind 0, a nonce), a HELLO (version 2, capability 1, max
			// message 1 MiB), then a control message announcing 2^32−1
			// bytes, far over the 256 allowed.
			frame := []byte{flitlink.Version, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 8, 0x01, flitlink.Version, 0, 1}
			frame = binary.BigEndian.AppendUint32(frame, 1<<20)
			frame = append(frame, 0xff, 0xff, 0xff, 0xff)
			frame = append(frame, make([]byte, 64<<10)...)
			s.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := s.Write(frame); err != nil {
				st.frames.Add(1)
				st.framesReset.Add(1)
				return
			}
			st.frames.Add(1)
			// The target's HELLO may come first; a reset or EOF is the drop.
			if _, err := io.Copy(io.Discard, s); !errors.Is(err, os.ErrDeadlineExceeded) {
				st.framesReset.Add(1)
			}
		}()
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// floodGossip publishes forged context entries on the context's topic at
// o.GossipRate per second (forgedEntry), one in 50 huge, while the target
// is among the topic's peers.
func floodGossip(ctx context.Context, topic *pubsub.Topic, target peer.ID, o floodOrder, st *floodStats) {
	key, err := feed.GenerateKey(nil)
	if err != nil {
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.GossipRate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !slices.Contains(topic.ListPeers(), target) {
			continue // not yet, or no longer, a topic peer: it would go nowhere
		}
		huge := i%50 == 49
		msg, _, err := forgedEntry(key, o.Context, huge)
		if err != nil {
			return
		}
		if err := topic.Publish(ctx, msg); err != nil {
			continue
		}
		st.gossip.Add(1)
		if huge {
			st.gossipHuge.Add(1)
		}
	}
}

// forgedEntry returns a gossip message of kind ENTRY (1) holding entry 1
// of key's feed, of type ctx for context cx with a random app body,
// validly encoded and signed, then with one signature byte flipped (the
// signature is the entry's last field), and where the entry ends in it;
// huge pads the message after the entry to about 1 MiB (pubsub's limit).
func forgedEntry(key feed.PrivateKey, cx feed.ID, huge bool) (msg []byte, end int, err error) {
	app := make([]byte, 64)
	rand.Read(app)
	body, err := feed.Ctx{Context: cx, Body: app}.Encode()
	if err != nil {
		return nil, 0, err
	}
	e, err := feed.Sign(key, feed.Head{}, feed.TypeCtx, body, time.Now())
	if err != nil {
		return nil, 0, err
	}
	msg = e.AppendEncode([]byte{1})
	end = len(msg)
	msg[end-1] ^= 0xff
	if huge {
		msg = append(msg, make([]byte, (1<<20)-end-4096)...)
	}
	return msg, end, nil
}

// floodRPC sends o.RPCConns POSTs and as many WebSocket dials to the RPC
// API without a token, 16 at a time, and counts the refused and the
// served.
func floodRPC(ctx context.Context, o floodOrder, st *floodStats) {
	client := &http.Client{Timeout: 10 * time.Second}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range 2 * o.RPCConns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			url := "http://" + o.RPC + api.Path
			var code int
			if i%2 == 0 {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"node.info"}`))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			} else {
				dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				c, resp, err := websocket.Dial(dctx, "ws://"+o.RPC+api.Path, nil)
				cancel()
				if err == nil {
					c.CloseNow()
					code = http.StatusSwitchingProtocols
				} else if resp != nil {
					code = resp.StatusCode
				} else {
					return
				}
			}
			if code == http.StatusUnauthorized || code == http.StatusForbidden {
				st.rpcRefused.Add(1)
			} else {
				st.rpcAccepted.Add(1)
			}
		})
	}
	wg.Wait()
}

// slowloris opens n TCP connections to the RPC API, each sending the
// start of a request header.
func slowloris(ctx context.Context, addr string, n int) []net.Conn {
	var d net.Dialer
	var out []net.Conn
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			continue
		}
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n", api.Path, addr); err != nil {
			c.Close()
			continue
		}
		out = append(out, c)
	}
	return out
}

// dribble sends one more header byte on each slowloris connection every
// 5 s until ctx ends.
func dribble(ctx context.Context, conns []net.Conn) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		for _, c := range conns {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write([]byte("X"))
		}
	}
}
