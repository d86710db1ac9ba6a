package swarm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/wire"
	"github.com/contextd/contextd/object"
)

// This file is the message layer of the swarm protocol (swarm/1): the
// messages, their encoding and their bounded decoding. The sessions that
// exchange them are session.go (Serve) and fetch.go (Fetch). The format is
// specified in
// docs/protocols/swarm.md.

// Service is the name of the flitlink circuit the swarm protocol runs on
// (class Data). The major version is part of the name; Capability in
// HANDSHAKE is the minor one.
const Service = "swarm/1"

// Capability is what this implementation announces in HANDSHAKE: the
// revision of the swarm/1 message set it speaks. Revision 1 is the message
// types HANDSHAKE through UNCHOKE; revision 2 adds CHUNKS, which a server
// sends only to a peer that announced 2 or more.
const Capability = 2

// CapChunks is the first capability that receives CHUNKS.
const CapChunks = 2

// Limits of the wire format. Decode rejects a message that exceeds them
// before it allocates anything.
const (
	// MaxMessageSize is the largest message either side sends or accepts:
	// flitlink's default message limit.
	MaxMessageSize = 1 << 20
	// MaxDataSize is the largest chunk a DATA message carries, and so the
	// largest chunk size a HANDSHAKE may announce: the largest power of two
	// that fits in one message with its header.
	MaxDataSize = 1 << 19
	// MaxObjectIDSize is the longest object ID (CID bytes) in HANDSHAKE.
	MaxObjectIDSize = 128
	// MaxRequestsInFlight is the largest number of requested chunks a
	// HANDSHAKE may say its sender accepts in flight.
	MaxRequestsInFlight = 1 << 16
	// MaxRanges is the most chunk ranges one HAVE, REQUEST or CANCEL carries.
	MaxRanges = 8192
	// MaxUncles is the most hashes one INTEGRITY message carries: more than
	// the height of any tree (MaxChunkIndex+1 chunks make a tree of height 53).
	MaxUncles = 64
	// MaxRunUncles is the most hashes one CHUNKS message carries: what a
	// run of chunks anywhere in the largest tree may need
	// (object.MaxRangeUncles).
	MaxRunUncles = object.MaxRangeUncles
	// MaxHashSize is the largest hash size Decode accepts for INTEGRITY.
	MaxHashSize = 64
	// MaxPeers is the most peers one PEX message carries.
	MaxPeers = 256
	// MaxAddrSize is the longest multiaddr (binary form) of a PEX peer.
	MaxAddrSize = 256
	// MaxChunkIndex is the largest chunk index on the wire: an object is at
	// most 2^63−1 bytes (object.Info.Size is an int64) cut into chunks of at least
	// object.MinChunkSize.
	MaxChunkIndex = math.MaxInt64 / object.MinChunkSize
	// MaxBin is the largest bin on the wire: the bin of chunk MaxChunkIndex.
	// Every bin of a tree of MaxChunkIndex+1 chunks is at most MaxBin (its
	// root, layer 53, is bin 2^53−1).
	MaxBin = object.Bin(2 * MaxChunkIndex)
)

// PeerIDSize is the length of a peer ID in PEX: the binary libp2p peer ID of
// an ed25519 key (feed.ID.PeerIDBytes).
const PeerIDSize = 38

// ErrMalformed reports a message that breaks the swarm/1 wire format. It is
// a protocol violation: the session ends.
var ErrMalformed = errors.New("swarm: malformed message")

// MsgType is the first byte of every message. Types only grow; 0 is
// invalid; a reader ignores a type it does not know (Decode returns it as
// Unknown).
type MsgType byte

// Message types.
const (
	TypeHandshake MsgType = 0x01
	TypeHave      MsgType = 0x02
	TypeRequest   MsgType = 0x03
	TypeIntegrity MsgType = 0x04
	TypeData      MsgType = 0x05
	TypeCancel    MsgType = 0x06
	TypePex       MsgType = 0x07
	TypeChoke     MsgType = 0x08
	TypeUnchoke   MsgType = 0x09
	TypeChunks    MsgType = 0x0a
)

// String returns the message type's name, "type(0x..)" for an unknown one.
func (t MsgType) String() string {
	switch t {
	case TypeHandshake:
		return "HANDSHAKE"
	case TypeHave:
		return "HAVE"
	case TypeRequest:
		return "REQUEST"
	case TypeIntegrity:
		return "INTEGRITY"
	case TypeData:
		return "DATA"
	case TypeCancel:
		return "CANCEL"
	case TypePex:
		return "PEX"
	case TypeChoke:
		return "CHOKE"
	case TypeUnchoke:
		return "UNCHOKE"
	case TypeChunks:
		return "CHUNKS"
	}
	return fmt.Sprintf("type(%#02x)", byte(t))
}

// Message is one swarm/1 message. Append appends its encoding, type byte
// first, to dst. Append does not check the limits: a message built past
// them is rejected by its receiver.
type Message interface {
	Type() MsgType
	Append(dst []byte) []byte
}

// Handshake is the first message each side sends: the object the session is
// about and how it is cut and hashed.
type Handshake struct {
	Capability uint64      // the sender's revision of swarm/1 (Capability)
	ObjectID   []byte      // the object's CID (cid.Cid.Bytes), 1…MaxObjectIDSize bytes
	Hash       object.Hash // object.SHA256 or object.SHA1
	ChunkSize  int         // a power of two from object.MinChunkSize to MaxDataSize
	Size       int64       // the object's size in bytes, ≥ 0
	// MaxRequests is how many requested chunks the sender accepts in flight
	// from this peer (≤ MaxRequestsInFlight); 0: it serves no chunks.
	MaxRequests uint64
}

// Range is the chunks First through Last, both included (First ≤ Last ≤
// MaxChunkIndex).
type Range struct {
	First, Last uint64
}

// Len returns the number of chunks in r.
func (r Range) Len() uint64 { return r.Last - r.First + 1 }

// Have announces chunks the sender holds and has verified.
type Have struct{ Ranges []Range }

// Request asks for chunks, in the order the requester prefers.
type Request struct{ Ranges []Range }

// Cancel withdraws requests for chunks not yet sent.
type Cancel struct{ Ranges []Range }

// Integrity carries the uncle hashes of a chunk that the receiver lacks; it
// precedes the DATA it authenticates.
type Integrity struct{ Hashes []object.BinHash }

// Data is one chunk: Bin is a chunk's bin (layer 0), Data its bytes.
type Data struct {
	Bin  object.Bin
	Data []byte
}

// Chunks carries a run of consecutive chunks (capability 2): First is the
// first one's index, Hashes the uncles the receiver lacks to verify the
// run (object.Info.RangeUncles, less those already sent in the session),
// Data the chunks' bytes concatenated. How many chunks Data holds follows
// from its length, the handshake's chunk size and the object's size, which
// the receiver checks (object.Info.VerifyRange).
type Chunks struct {
	First  uint64
	Hashes []object.BinHash
	Data   []byte
}

// PexPeer is a peer another peer may ask for the object.
type PexPeer struct {
	ID   feed.ID
	Addr []byte // binary multiaddr, ≤ MaxAddrSize bytes; empty: none known
}

// Pex tells the receiver of other peers in the swarm.
type Pex struct{ Peers []PexPeer }

// Choke tells the receiver its requests will not be served until UNCHOKE.
type Choke struct{}

// Unchoke tells the receiver it may send requests.
type Unchoke struct{}

// Unknown is a message of a type this implementation does not know. Readers
// ignore it; it keeps its body so that it re-encodes to the same bytes.
type Unknown struct {
	MsgType MsgType
	Body    []byte
}

func (Handshake) Type() MsgType { return TypeHandshake }
func (Have) Type() MsgType      { return TypeHave }
func (Request) Type() MsgType   { return TypeRequest }
func (Cancel) Type() MsgType    { return TypeCancel }
func (Integrity) Type() MsgType { return TypeIntegrity }
func (Data) Type() MsgType      { return TypeData }
func (Pex) Type() MsgType       { return TypePex }
func (Choke) Type() MsgType     { return TypeChoke }
func (Unchoke) Type() MsgType   { return TypeUnchoke }
func (Chunks) Type() MsgType    { return TypeChunks }
func (u Unknown) Type() MsgType { return u.MsgType }

// Append encodes the handshake.
func (m Handshake) Append(dst []byte) []byte {
	dst = append(dst, byte(TypeHandshake))
	dst = binary.AppendUvarint(dst, m.Capability)
	dst = binary.AppendUvarint(dst, uint64(len(m.ObjectID)))
	dst = append(dst, m.ObjectID...)
	dst = binary.AppendUvarint(dst, uint64(m.Hash))
	dst = binary.AppendUvarint(dst, uint64(m.ChunkSize))
	dst = binary.AppendUvarint(dst, uint64(m.Size))
	return binary.AppendUvarint(dst, m.MaxRequests)
}

func appendRanges(dst []byte, t MsgType, rs []Range) []byte {
	dst = append(dst, byte(t))
	dst = binary.AppendUvarint(dst, uint64(len(rs)))
	for _, r := range rs {
		dst = binary.AppendUvarint(dst, r.First)
		dst = binary.AppendUvarint(dst, r.Last-r.First)
	}
	return dst
}

// Append encodes the HAVE message.
func (m Have) Append(dst []byte) []byte { return appendRanges(dst, TypeHave, m.Ranges) }

// Append encodes the REQUEST message.
func (m Request) Append(dst []byte) []byte { return appendRanges(dst, TypeRequest, m.Ranges) }

// Append encodes the CANCEL message.
func (m Cancel) Append(dst []byte) []byte { return appendRanges(dst, TypeCancel, m.Ranges) }

// Append encodes the INTEGRITY message. Every hash must have the
// handshake's hash size.
func (m Integrity) Append(dst []byte) []byte {
	return appendHashes(append(dst, byte(TypeIntegrity)), m.Hashes)
}

// Append encodes the DATA message.
func (m Data) Append(dst []byte) []byte {
	return append(appendDataHeader(dst, m.Bin, len(m.Data)), m.Data...)
}

// Append encodes the CHUNKS message. Every hash must have the
// handshake's hash size.
func (m Chunks) Append(dst []byte) []byte {
	return append(appendChunksHeader(dst, m.First, m.Hashes, len(m.Data)), m.Data...)
}

// appendChunksHeader appends what precedes the n bytes of chunks of a
// CHUNKS message.
func appendChunksHeader(dst []byte, first uint64, hashes []object.BinHash, n int) []byte {
	dst = append(dst, byte(TypeChunks))
	dst = binary.AppendUvarint(dst, first)
	dst = appendHashes(dst, hashes)
	return binary.AppendUvarint(dst, uint64(n))
}

// appendHashes appends a count and the bins and hashes.
func appendHashes(dst []byte, hashes []object.BinHash) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(hashes)))
	for _, h := range hashes {
		dst = binary.AppendUvarint(dst, uint64(h.Bin))
		dst = append(dst, h.Hash...)
	}
	return dst
}

// appendDataHeader appends what precedes the bytes of an n-byte chunk in
// a DATA message.
func appendDataHeader(dst []byte, b object.Bin, n int) []byte {
	dst = append(dst, byte(TypeData))
	dst = binary.AppendUvarint(dst, uint64(b))
	return binary.AppendUvarint(dst, uint64(n))
}

// Append encodes the PEX message.
func (m Pex) Append(dst []byte) []byte {
	dst = append(dst, byte(TypePex))
	dst = binary.AppendUvarint(dst, uint64(len(m.Peers)))
	for _, p := range m.Peers {
		dst = append(dst, p.ID.PeerIDBytes()...)
		dst = binary.AppendUvarint(dst, uint64(len(p.Addr)))
		dst = append(dst, p.Addr...)
	}
	return dst
}

// Append encodes the CHOKE message.
func (Choke) Append(dst []byte) []byte { return append(dst, byte(TypeChoke)) }

// Append encodes the UNCHOKE message.
func (Unchoke) Append(dst []byte) []byte { return append(dst, byte(TypeUnchoke)) }

// Append re-encodes the unknown message as it was received.
func (u Unknown) Append(dst []byte) []byte { return append(append(dst, byte(u.MsgType)), u.Body...) }

// Minimum encoded sizes of list items, to bound counts by the bytes present.
const (
	minRangeSize   = 1 + 1          // two one-byte uvarints
	minPexPeerSize = PeerIDSize + 1 // peer ID + empty address length
	minUncleSize   = 1              // one-byte bin; plus the hash size
	minHashSize    = 1              // smallest hash size Decode accepts
)

// Decode parses one message. hashSize is the digest length of the
// session's hash (object.Hash.Size() of the handshake's hash), or 0 before the
// handshake: INTEGRITY and CHUNKS need it and are malformed without it. Every count and
// length is checked against its limit and against the bytes present before
// anything is allocated; integers must be minimal uvarints and the message
// must be consumed exactly, so a decoded message re-encodes to the same
// bytes. An unknown type decodes to Unknown (the caller ignores it). Byte
// slices in the result alias b. Errors wrap ErrMalformed.
func Decode(b []byte, hashSize int) (Message, error) {
	t, r, err := wire.Open(b, MaxMessageSize, malformed)
	if err != nil {
		return nil, err
	}
	d := decoder{r}
	var m Message
	switch MsgType(t) {
	case TypeHandshake:
		m = d.handshake()
	case TypeHave:
		m = Have{Ranges: d.ranges()}
	case TypeRequest:
		m = Request{Ranges: d.ranges()}
	case TypeCancel:
		m = Cancel{Ranges: d.ranges()}
	case TypeIntegrity:
		m = d.integrity(hashSize)
	case TypeData:
		m = d.data()
	case TypePex:
		m = d.pex()
	case TypeChoke:
		m = Choke{}
	case TypeUnchoke:
		m = Unchoke{}
	case TypeChunks:
		m = d.chunks(hashSize)
	default:
		return Unknown{MsgType: MsgType(t), Body: b[1:len(b):len(b)]}, nil
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return m, nil
}

// malformed is the error of a malformed message of type t (0: the frame).
func malformed(t byte, detail string) error {
	if t == 0 {
		return fmt.Errorf("%w: %s", ErrMalformed, detail)
	}
	return fmt.Errorf("%w: %v: %s", ErrMalformed, MsgType(t), detail)
}

// decoder reads one message body (internal/wire's bounded reader): the
// first error sticks and every later read returns zero values.
type decoder struct{ *wire.Reader }

// count reads a list length, at most max and at most what the bytes left can
// hold with items of at least minSize bytes.
func (d decoder) count(what string, max, minSize int) int {
	c := d.Uvarint(what)
	if d.Err() == nil && (c > uint64(max) || c > uint64(d.Len()/minSize)) {
		d.Fail("%d %s (limit %d) in %d bytes", c, what, max, d.Len())
		return 0
	}
	return int(c)
}

func (d decoder) bin(what string) object.Bin {
	b := object.Bin(d.Uvarint(what))
	if d.Err() == nil && b > MaxBin {
		d.Fail("%s %d past the largest bin", what, uint64(b))
	}
	return b
}

func (d decoder) handshake() Message {
	var m Handshake
	m.Capability = d.Uvarint("capability")
	n := d.Uvarint("object ID length")
	if d.Err() == nil && (n == 0 || n > MaxObjectIDSize) {
		d.Fail("object ID of %d bytes (limit %d)", n, MaxObjectIDSize)
	}
	m.ObjectID = d.Bytes(int(min(n, MaxObjectIDSize)), "object ID")
	m.Hash = object.Hash(d.Uvarint("hash"))
	if d.Err() == nil && !m.Hash.Valid() {
		d.Fail("hash %v", m.Hash)
	}
	cs := d.Uvarint("chunk size")
	if d.Err() == nil && (cs > MaxDataSize || object.CheckChunkSize(int(cs)) != nil) {
		d.Fail("chunk size %d (a power of two from %d to %d)", cs, object.MinChunkSize, MaxDataSize)
	}
	m.ChunkSize = int(cs)
	size := d.Uvarint("object size")
	if d.Err() == nil && size > math.MaxInt64 {
		d.Fail("object size %d", size)
	}
	m.Size = int64(size)
	m.MaxRequests = d.Uvarint("max requests")
	if d.Err() == nil && m.MaxRequests > MaxRequestsInFlight {
		d.Fail("max requests %d (limit %d)", m.MaxRequests, MaxRequestsInFlight)
	}
	return m
}

func (d decoder) ranges() []Range {
	c := d.count("ranges", MaxRanges, minRangeSize)
	if d.Err() != nil {
		return nil
	}
	rs := make([]Range, c)
	for i := range rs {
		first := d.Uvarint("range start")
		span := d.Uvarint("range length")
		if d.Err() != nil {
			return nil
		}
		if first > MaxChunkIndex || span > MaxChunkIndex-first {
			d.Fail("range %d+%d past chunk %d", first, span, uint64(MaxChunkIndex))
			return nil
		}
		rs[i] = Range{First: first, Last: first + span}
	}
	return rs
}

func (d decoder) integrity(hashSize int) Message {
	return Integrity{Hashes: d.hashes(hashSize, MaxUncles)}
}

// hashes reads a count (at most max) of bins with their hashes.
func (d decoder) hashes(hashSize, max int) []object.BinHash {
	if hashSize < minHashSize || hashSize > MaxHashSize {
		d.Fail("hash size %d (before the handshake?)", hashSize)
		return nil
	}
	c := d.count("hashes", max, minUncleSize+hashSize)
	if d.Err() != nil {
		return nil
	}
	hs := make([]object.BinHash, c)
	for i := range hs {
		hs[i].Bin = d.bin("bin")
		hs[i].Hash = d.Bytes(hashSize, "hash")
	}
	return hs
}

func (d decoder) chunks(hashSize int) Message {
	first := d.Uvarint("first chunk")
	if d.Err() == nil && first > MaxChunkIndex {
		d.Fail("chunk %d past chunk %d", first, uint64(MaxChunkIndex))
	}
	m := Chunks{First: first, Hashes: d.hashes(hashSize, MaxRunUncles)}
	n := d.Uvarint("chunks length")
	if d.Err() == nil && n > MaxMessageSize {
		d.Fail("chunks of %d bytes (limit %d)", n, MaxMessageSize)
	}
	if data := d.Bytes(int(min(n, MaxMessageSize)), "chunks"); len(data) > 0 {
		m.Data = data
	}
	return m
}

func (d decoder) data() Message {
	b := d.bin("bin")
	if d.Err() == nil && !b.IsBase() {
		d.Fail("bin %v is not a chunk", b)
	}
	n := d.Uvarint("chunk length")
	if d.Err() == nil && n > MaxDataSize {
		d.Fail("chunk of %d bytes (limit %d)", n, MaxDataSize)
	}
	m := Data{Bin: b}
	if chunk := d.Bytes(int(min(n, MaxDataSize)), "chunk"); len(chunk) > 0 {
		m.Data = chunk
	}
	return m
}

func (d decoder) pex() Message {
	c := d.count("peers", MaxPeers, minPexPeerSize)
	if d.Err() != nil {
		return nil
	}
	ps := make([]PexPeer, c)
	for i := range ps {
		raw := d.Bytes(PeerIDSize, "peer ID")
		if d.Err() != nil {
			return nil
		}
		id, err := feed.IDFromPeerIDBytes(raw)
		if err != nil {
			d.Fail("peer %d: %v", i, err)
			return nil
		}
		ps[i].ID = id
		n := d.Uvarint("address length")
		if d.Err() == nil && n > MaxAddrSize {
			d.Fail("address of %d bytes (limit %d)", n, MaxAddrSize)
		}
		if addr := d.Bytes(int(min(n, MaxAddrSize)), "address"); len(addr) > 0 {
			ps[i].Addr = addr
		}
	}
	return Pex{Peers: ps}
}
