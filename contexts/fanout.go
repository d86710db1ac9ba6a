package contexts

import (
	"crypto/sha256"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Fanout is how widely a context's gossip spreads: the mesh each member
// keeps with other members. gossipsub has one mesh size per router, so a
// node runs one router per fanout, each on its own protocol IDs, and a
// context's members meet on the router of the context's fanout.
type Fanout uint8

const (
	// Lean is the fanout of rooms: a mesh of one or two peers. The
	// publisher sends to every member it is linked to (flood publishing),
	// the mesh carries the message on to the others, and EBT fills what
	// gossip loses, so members receive few copies beyond the first.
	Lean Fanout = iota
	// Wide is the fanout of contexts with a large audience (a broadcast, a
	// stream, a person's followers): a mesh of 8 to 12, so a message
	// crosses a thousand members in a few hops, at the price of more
	// copies per member.
	Wide
	numFanouts
)

func (f Fanout) String() string {
	if f == Wide {
		return "wide"
	}
	return "lean"
}

// WideProtocol is the protocol ID of the wide router; the lean router
// speaks gossipsub's own (/meshsub/…).
const WideProtocol = protocol.ID("/contextd/meshsub-wide/1.2.0")

// wideFeatures is the gossipsub feature test of WideProtocol: gossipsub
// v1.2 (mesh, peer exchange, IDONTWANT).
func wideFeatures(feat pubsub.GossipSubFeature, proto protocol.ID) bool {
	if proto != WideProtocol {
		return false
	}
	switch feat {
	case pubsub.GossipSubFeatureMesh, pubsub.GossipSubFeaturePX, pubsub.GossipSubFeatureIdontwant:
		return true
	}
	return false
}

// GossipOptions are the go-libp2p-pubsub options of fanout f's router:
// entries are signed by their authors, so gossip messages carry no libp2p
// signature, author or seqno, and a message's ID is the SHA-256 of its
// bytes (the same entry gossiped twice is one message); the publisher
// sends to every peer in the topic, not only its mesh (the first hop is as
// short as it can be, and a message published before the mesh formed
// still goes out); the gossipsub parameters are GossipParams(f).
func GossipOptions(f Fanout) []pubsub.Option {
	opts := []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string {
			h := sha256.Sum256(m.Data)
			return string(h[:])
		}),
		pubsub.WithPeerExchange(false),
		pubsub.WithMaxMessageSize(1 << 20),
		pubsub.WithSeenMessagesTTL(2 * DatagramWindow),
		pubsub.WithGossipSubParams(GossipParams(f)),
		pubsub.WithFloodPublish(true),
	}
	if f == Wide {
		opts = append(opts, pubsub.WithGossipSubProtocols([]protocol.ID{WideProtocol}, wideFeatures))
	}
	return opts
}

// GossipParams are the gossipsub parameters of fanout f: a mesh of D 2
// (1 to 2) for Lean, D 10 (8 to 12) for Wide, and IDONTWANT for every
// message, not only for large ones. Gossip is the fast path only: EBT
// fills whatever it loses. docs/BENCHMARKS.md (contexts) has the
// measurements behind the numbers.
func GossipParams(f Fanout) pubsub.GossipSubParams {
	p := pubsub.DefaultGossipSubParams()
	if f == Wide {
		p.D, p.Dlo, p.Dhi = 10, 8, 12
		p.Dscore, p.Dout = 4, 2
	} else {
		p.D, p.Dlo, p.Dhi = 2, 1, 2
		p.Dscore, p.Dout = 1, 0
	}
	p.IDontWantMessageThreshold = 1
	return p
}
