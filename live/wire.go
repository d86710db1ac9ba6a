package live

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/wire"
	"github.com/contextd/contextd/object"
)

// This file is the message layer of the live protocol (live/1): the
// messages, their encoding, their bounded decoding, and what the publisher
// signs. The sessions that exchange them are session.go. The format is
// specified in docs/protocols/swarm.md, "Live streams (live/1)".

// Service is the name of the flitlink circuit the live protocol runs on
// (the node opens it as class Voice: docs/protocols/swarm.md). The major
// version is part of the name; Capability in HANDSHAKE is the minor one.
const Service = "live/1"

// Capability is what this implementation announces in HANDSHAKE: the
// revision of the live/1 message set it speaks. Revision 1 is the message
// types HANDSHAKE through END.
const Capability = 1

// Limits of the wire format. Decode rejects a message that exceeds them
// before it allocates anything.
const (
	// MaxChunkSize is the largest chunk of a stream.
	MaxChunkSize = 16 << 10
	// MaxMunroLog is the largest k: a munro is at most 2^MaxMunroLog chunks.
	MaxMunroLog = 4
	// DefaultMunroLog is the k publishers use: munros of 4 chunks.
	DefaultMunroLog = 2
	// MaxMessageSize is the largest message either side sends or accepts:
	// a MUNRO of 2^MaxMunroLog full chunks with its header fits.
	MaxMessageSize = 1<<MaxMunroLog*(MaxChunkSize+3) + 128
	// MaxMunro is the largest munro index on the wire: the chunk indices
	// of every munro fit in an int64 at every k.
	MaxMunro = math.MaxInt64 >> MaxMunroLog
	// MaxHops is the largest hop count a HANDSHAKE states; a node that
	// does not know its distance to the publisher states MaxHops.
	MaxHops = 255
)

// Errors callers branch on with errors.Is.
var (
	// ErrMalformed reports a message that breaks the live/1 wire format. It
	// is a protocol violation: the session ends and the peer is dropped.
	ErrMalformed = errors.New("live: malformed message")
	// ErrBadMunro reports a munro or END whose signature or root does not
	// verify against the stream's key: the peer that sent it forged or
	// altered it, and is dropped.
	ErrBadMunro = errors.New("live: munro does not verify")
)

// MsgType is the first byte of every message. Types only grow; 0 is
// invalid; a reader ignores a type it does not know (Decode returns it as
// Unknown).
type MsgType byte

// Message types.
const (
	TypeHandshake MsgType = 0x01
	TypeStart     MsgType = 0x02
	TypeMunro     MsgType = 0x03
	TypeKeepalive MsgType = 0x04
	TypeEnd       MsgType = 0x05
)

// String returns the message type's name, "type(0x..)" for an unknown one.
func (t MsgType) String() string {
	switch t {
	case TypeHandshake:
		return "HANDSHAKE"
	case TypeStart:
		return "START"
	case TypeMunro:
		return "MUNRO"
	case TypeKeepalive:
		return "KEEPALIVE"
	case TypeEnd:
		return "END"
	}
	return fmt.Sprintf("type(%#02x)", byte(t))
}

// Message is one live/1 message. Append appends its encoding, type byte
// first, to dst. Append does not check the limits: a message built past
// them is rejected by its receiver.
type Message interface {
	Type() MsgType
	Append(dst []byte) []byte
}

// Handshake is the first message each side sends.
type Handshake struct {
	Capability uint64  // the sender's revision of live/1 (Capability)
	Stream     feed.ID // the stream: its publisher's key
	// MunroLog is k: munros of 2^k chunks (0..MaxMunroLog). The serving
	// side states the stream's; the joining side states the one it expects.
	MunroLog int
	// Hops is the sender's distance to the publisher (the publisher 0,
	// MaxHops: unknown).
	Hops int
}

// Start asks the serving side to push the stream from chunk From (LiveEdge:
// from the newest munro it holds). It follows HANDSHAKE, once.
type Start struct{ From uint64 }

// LiveEdge is Start.From for "from the newest munro held".
const LiveEdge uint64 = math.MaxUint64

// Munro is one signed munro: 2^k chunks, chunk indices Index·2^k onwards.
type Munro struct {
	Index     uint64                      // the munro index m
	Published int64                       // when it was signed, unix microseconds
	Sig       [ed25519.SignatureSize]byte // the publisher's signature (SigInput)
	Chunks    [][]byte                    // 2^k chunks, each ≤ MaxChunkSize bytes (nil if empty)
}

// Keepalive tells the joining side that the stream is alive though no
// munro came for a while.
type Keepalive struct{}

// End is the publisher's signed mark that the stream ended after Munros
// munros (indices 0..Munros−1).
type End struct {
	Munros uint64
	Sig    [ed25519.SignatureSize]byte
}

// Unknown is a message of a type this implementation does not know. Readers
// ignore it; it keeps its body so that it re-encodes to the same bytes.
type Unknown struct {
	MsgType MsgType
	Body    []byte
}

func (Handshake) Type() MsgType { return TypeHandshake }
func (Start) Type() MsgType     { return TypeStart }
func (Munro) Type() MsgType     { return TypeMunro }
func (Keepalive) Type() MsgType { return TypeKeepalive }
func (End) Type() MsgType       { return TypeEnd }
func (u Unknown) Type() MsgType { return u.MsgType }

// Append encodes the handshake.
func (m Handshake) Append(dst []byte) []byte {
	dst = append(dst, byte(TypeHandshake))
	dst = binary.AppendUvarint(dst, m.Capability)
	dst = append(dst, m.Stream[:]...)
	dst = binary.AppendUvarint(dst, uint64(m.MunroLog))
	return binary.AppendUvarint(dst, uint64(m.Hops))
}

// Append encodes the START message: From+1, 0 for LiveEdge.
func (m Start) Append(dst []byte) []byte {
	return binary.AppendUvarint(append(dst, byte(TypeStart)), m.From+1)
}

// Append encodes the munro.
func (m Munro) Append(dst []byte) []byte {
	dst = append(dst, byte(TypeMunro))
	dst = binary.AppendUvarint(dst, m.Index)
	dst = binary.AppendUvarint(dst, uint64(m.Published))
	dst = append(dst, m.Sig[:]...)
	for _, c := range m.Chunks {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	return dst
}

// Append encodes the KEEPALIVE message.
func (Keepalive) Append(dst []byte) []byte { return append(dst, byte(TypeKeepalive)) }

// Append encodes the END message.
func (m End) Append(dst []byte) []byte {
	dst = binary.AppendUvarint(append(dst, byte(TypeEnd)), m.Munros)
	return append(dst, m.Sig[:]...)
}

// Append re-encodes the unknown message as it was received.
func (u Unknown) Append(dst []byte) []byte { return append(append(dst, byte(u.MsgType)), u.Body...) }

// Domains of the signatures: no munro signature is a valid END signature
// or anything else signed with a feed key.
const (
	munroDomain = "contextd live munro v1\x00"
	endDomain   = "contextd live end v1\x00"
)

// SigInput returns what the publisher of stream signs for munro m of 2^k
// chunks with the given root: the domain, the stream ID (32 bytes), m (8
// bytes, big-endian), k (1 byte), the root (32 bytes) and the publish time
// (8 bytes, big-endian unix microseconds).
func SigInput(stream feed.ID, m uint64, k int, root []byte, published int64) []byte {
	b := make([]byte, 0, len(munroDomain)+len(stream)+8+1+len(root)+8)
	b = append(b, munroDomain...)
	b = append(b, stream[:]...)
	b = binary.BigEndian.AppendUint64(b, m)
	b = append(b, byte(k))
	b = append(b, root...)
	return binary.BigEndian.AppendUint64(b, uint64(published))
}

// endInput returns what the publisher of stream signs to end it after
// munros munros: the domain, the stream ID and munros (8 bytes, big-endian).
func endInput(stream feed.ID, munros uint64) []byte {
	b := append([]byte(endDomain), stream[:]...)
	return binary.BigEndian.AppendUint64(b, munros)
}

// Root returns the munro's root: the SHA-256 subtree root of its chunks.
func (m Munro) Root() ([]byte, error) { return object.SHA256.SubtreeRoot(m.Chunks) }

// Sign signs the munro, a munro of 2^k chunks of the stream key publishes.
func (m *Munro) Sign(key feed.PrivateKey, k int) error {
	root, err := m.Root()
	if err != nil {
		return fmt.Errorf("live: sign munro %d: %w", m.Index, err)
	}
	m.Sig = key.Sign(SigInput(key.Public(), m.Index, k, root, m.Published))
	return nil
}

// Verify checks that the munro is one of stream's munros of 2^k chunks:
// its chunk count, its root recomputed from its chunks, and the
// publisher's signature. Errors wrap ErrBadMunro.
func (m Munro) Verify(stream feed.ID, k int) error {
	if len(m.Chunks) != 1<<k {
		return fmt.Errorf("%w: munro %d has %d chunks, want %d", ErrBadMunro, m.Index, len(m.Chunks), 1<<k)
	}
	root, err := m.Root()
	if err != nil {
		return fmt.Errorf("%w: munro %d: %v", ErrBadMunro, m.Index, err)
	}
	if !stream.Verify(SigInput(stream, m.Index, k, root, m.Published), m.Sig[:]) {
		return fmt.Errorf("%w: munro %d: bad signature", ErrBadMunro, m.Index)
	}
	return nil
}

// Sign signs the END mark of the stream key publishes.
func (m *End) Sign(key feed.PrivateKey) { m.Sig = key.Sign(endInput(key.Public(), m.Munros)) }

// Verify checks the publisher's signature of the END mark. Errors wrap
// ErrBadMunro.
func (m End) Verify(stream feed.ID) error {
	if !stream.Verify(endInput(stream, m.Munros), m.Sig[:]) {
		return fmt.Errorf("%w: END after %d munros: bad signature", ErrBadMunro, m.Munros)
	}
	return nil
}

// Decode parses one message. k is the session's munro log (from the
// handshake), which fixes the chunk count of MUNRO. Every length is checked
// against its limit and against the bytes present before anything is
// allocated; integers must be minimal uvarints and the message must be
// consumed exactly, so a decoded message re-encodes to the same bytes. An
// unknown type decodes to Unknown (the caller ignores it). Byte slices in
// the result alias b. Errors wrap ErrMalformed.
func Decode(b []byte, k int) (Message, error) {
	t, r, err := wire.Open(b, MaxMessageSize, malformed)
	if err != nil {
		return nil, err
	}
	var m Message
	switch MsgType(t) {
	case TypeHandshake:
		m = handshake(r)
	case TypeStart:
		m = Start{From: r.Uvarint("position") - 1}
	case TypeMunro:
		m = munro(r, k)
	case TypeKeepalive:
		m = Keepalive{}
	case TypeEnd:
		e := End{Munros: r.Max("munro count", MaxMunro+1)}
		copy(e.Sig[:], r.Bytes(len(e.Sig), "signature"))
		m = e
	default:
		return Unknown{MsgType: MsgType(t), Body: b[1:len(b):len(b)]}, nil
	}
	if err := r.Finish(); err != nil {
		return nil, err
	}
	return m, nil
}

func malformed(t byte, detail string) error {
	if t == 0 {
		return fmt.Errorf("%w: %s", ErrMalformed, detail)
	}
	return fmt.Errorf("%w: %v: %s", ErrMalformed, MsgType(t), detail)
}

func handshake(r *wire.Reader) Message {
	var m Handshake
	m.Capability = r.Uvarint("capability")
	copy(m.Stream[:], r.Bytes(len(m.Stream), "stream ID"))
	m.MunroLog = int(r.Max("munro log", MaxMunroLog))
	m.Hops = int(r.Max("hops", MaxHops))
	return m
}

func munro(r *wire.Reader, k int) Message {
	if k < 0 || k > MaxMunroLog {
		r.Fail("munro log %d (before the handshake?)", k)
		return nil
	}
	m := Munro{Index: r.Max("munro index", MaxMunro), Published: int64(r.Max("publish time", math.MaxInt64))}
	copy(m.Sig[:], r.Bytes(len(m.Sig), "signature"))
	if r.Err() != nil {
		return nil
	}
	m.Chunks = make([][]byte, 1<<k)
	for i := range m.Chunks {
		n := r.Max("chunk length", MaxChunkSize)
		if c := r.Bytes(int(n), "chunk"); len(c) > 0 {
			m.Chunks[i] = c
		}
	}
	return m
}
