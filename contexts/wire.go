package contexts

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/contextd/contextd/feed"
)

// Gossip messages (topic TopicPrefix + context ID). Every message starts
// with a kind byte; kinds only grow.
//
//	kindEntry:    kind(1) entry — the canonical encoding of a signed feed
//	              entry of type ctx (feed.Encode), at most feed.MaxEncodedSize
//	kindDatagram: kind(1) context(32) author(32) timestamp(8, Unix ms)
//	              nonce(8) body(0..MaxDatagramBody) signature(64)
//
// A datagram's signature is the author's ed25519 signature over
// datagramDomain followed by every byte of the message before the
// signature.
const (
	kindEntry    = 1
	kindDatagram = 2
)

// TopicPrefix is the gossipsub topic of a context, before its ID.
const TopicPrefix = "/contextd/ctx/1/"

// Limits of gossip messages.
const (
	// MaxDatagramBody is the largest body of a datagram, as of a message.
	MaxDatagramBody = feed.MaxCtxBody
	// MaxGossipSize bounds a gossip message of any kind.
	MaxGossipSize = 1 + feed.MaxEncodedSize
	// DatagramWindow is how far a datagram's timestamp may be from the
	// receiver's clock: older or later ones are dropped, so none is
	// replayed after the gossip layer forgot it was seen.
	DatagramWindow = time.Minute

	datagramFixed  = 1 + 32 + 32 + 8 + 8
	datagramDomain = "contextd datagram 1\x00"
)

// Errors of decoding gossip.
var (
	ErrBadGossip = errors.New("contexts: malformed gossip message")
)

// Datagram is an ephemeral, signed context message: never stored.
type Datagram struct {
	Context   feed.ID
	Author    feed.ID
	Timestamp int64 // Unix milliseconds
	Nonce     uint64
	Body      []byte
	Sig       [ed25519.SignatureSize]byte
}

// encodeEntry returns the gossip message carrying e.
func encodeEntry(e *feed.Entry) []byte {
	return e.AppendEncode(append(make([]byte, 0, 1+e.EncodedSize()), kindEntry))
}

// signDatagram builds and signs a datagram.
func signDatagram(key feed.PrivateKey, ctx feed.ID, body []byte, at time.Time, nonce uint64) (*Datagram, error) {
	if len(body) > MaxDatagramBody {
		return nil, fmt.Errorf("%w: datagram body is %d bytes, limit %d", feed.ErrTooLarge, len(body), MaxDatagramBody)
	}
	d := &Datagram{Context: ctx, Author: key.Public(), Timestamp: at.UnixMilli(), Nonce: nonce, Body: body}
	d.Sig = key.Sign(d.signed())
	return d, nil
}

// signed is what a datagram's signature covers.
func (d *Datagram) signed() []byte {
	b := make([]byte, 0, len(datagramDomain)+datagramFixed+len(d.Body))
	b = append(b, datagramDomain...)
	return d.appendUnsigned(b)
}

func (d *Datagram) appendUnsigned(b []byte) []byte {
	b = append(b, kindDatagram)
	b = append(b, d.Context[:]...)
	b = append(b, d.Author[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(d.Timestamp))
	b = binary.BigEndian.AppendUint64(b, d.Nonce)
	return append(b, d.Body...)
}

// encode returns the gossip message.
func (d *Datagram) encode() []byte {
	b := d.appendUnsigned(make([]byte, 0, datagramFixed+len(d.Body)+len(d.Sig)))
	return append(b, d.Sig[:]...)
}

// verify checks the datagram's signature.
func (d *Datagram) verify() bool { return d.Author.Verify(d.signed(), d.Sig[:]) }

// message is a decoded gossip message: exactly one of entry and dgram.
type message struct {
	entry *feed.Entry
	ctx   feed.Ctx // entry's parsed body
	dgram *Datagram
}

// decodeGossip parses a gossip message without checking signatures. An
// entry must be of type ctx with a parsable body.
func decodeGossip(b []byte) (message, error) {
	var m message
	if len(b) == 0 || len(b) > MaxGossipSize {
		return m, fmt.Errorf("%w: %d bytes", ErrBadGossip, len(b))
	}
	switch b[0] {
	case kindEntry:
		e, err := feed.Decode(b[1:])
		if err != nil {
			return m, fmt.Errorf("%w: %w", ErrBadGossip, err)
		}
		if e.Type != feed.TypeCtx {
			return m, fmt.Errorf("%w: entry of type %q", ErrBadGossip, e.Type)
		}
		if m.ctx, err = feed.DecodeCtx(e.Body); err != nil {
			return m, fmt.Errorf("%w: %w", ErrBadGossip, err)
		}
		m.entry = e
	case kindDatagram:
		if len(b) < datagramFixed+ed25519.SignatureSize {
			return m, fmt.Errorf("%w: datagram of %d bytes", ErrBadGossip, len(b))
		}
		d := &Datagram{}
		copy(d.Context[:], b[1:])
		copy(d.Author[:], b[33:])
		d.Timestamp = int64(binary.BigEndian.Uint64(b[65:]))
		d.Nonce = binary.BigEndian.Uint64(b[73:])
		end := len(b) - ed25519.SignatureSize
		d.Body = append([]byte(nil), b[datagramFixed:end]...)
		copy(d.Sig[:], b[end:])
		if len(d.Body) > MaxDatagramBody {
			return m, fmt.Errorf("%w: datagram body of %d bytes", ErrBadGossip, len(d.Body))
		}
		m.dgram = d
	default:
		return m, fmt.Errorf("%w: kind %d", ErrBadGossip, b[0])
	}
	return m, nil
}

// The ctx/1 circuit service: a node that joins a context (or links a peer
// while joined) asks the peer which authors it knows in its contexts, so
// that it replicates their feeds and so gets the history.
//
//	query:   version(1) count(2) count × context(32)          (count ≤ MaxQueryContexts)
//	answer:  version(1) context(32) count(2) count × (author(32) seq(8))   one per context asked,
//	         (count ≤ MaxAnswerMembers), then the circuit is closed
const (
	// Service is the flitlink circuit service of member exchange.
	Service = "ctx/1"
	// MaxQueryContexts bounds a query; MaxAnswerMembers an answer.
	MaxQueryContexts = 256
	MaxAnswerMembers = 4096

	membersVersion = 1
)

// encodeQuery returns a members query for ids (at most MaxQueryContexts).
func encodeQuery(ids []feed.ID) []byte {
	b := binary.BigEndian.AppendUint16([]byte{membersVersion}, uint16(len(ids)))
	for _, id := range ids {
		b = append(b, id[:]...)
	}
	return b
}

func decodeQuery(b []byte) ([]feed.ID, error) {
	if len(b) < 3 || b[0] != membersVersion {
		return nil, fmt.Errorf("%w: members query of %d bytes", ErrBadGossip, len(b))
	}
	n := int(binary.BigEndian.Uint16(b[1:]))
	if n > MaxQueryContexts || len(b) != 3+32*n {
		return nil, fmt.Errorf("%w: members query of %d bytes for %d contexts", ErrBadGossip, len(b), n)
	}
	ids := make([]feed.ID, n)
	for i := range ids {
		copy(ids[i][:], b[3+32*i:])
	}
	return ids, nil
}

// member is an author of a context and the highest seq of its messages
// the sender holds.
type member struct {
	Author feed.ID
	Seq    uint64
}

func encodeAnswer(ctx feed.ID, ms []member) []byte {
	ms = ms[:min(len(ms), MaxAnswerMembers)]
	b := append([]byte{membersVersion}, ctx[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ms)))
	for _, m := range ms {
		b = append(b, m.Author[:]...)
		b = binary.BigEndian.AppendUint64(b, m.Seq)
	}
	return b
}

func decodeAnswer(b []byte) (feed.ID, []member, error) {
	var ctx feed.ID
	if len(b) < 35 || b[0] != membersVersion {
		return ctx, nil, fmt.Errorf("%w: members answer of %d bytes", ErrBadGossip, len(b))
	}
	copy(ctx[:], b[1:])
	n := int(binary.BigEndian.Uint16(b[33:]))
	if n > MaxAnswerMembers || len(b) != 35+40*n {
		return ctx, nil, fmt.Errorf("%w: members answer of %d bytes for %d members", ErrBadGossip, len(b), n)
	}
	ms := make([]member, n)
	for i := range ms {
		off := 35 + 40*i
		copy(ms[i].Author[:], b[off:])
		ms[i].Seq = binary.BigEndian.Uint64(b[off+32:])
	}
	return ctx, ms, nil
}
