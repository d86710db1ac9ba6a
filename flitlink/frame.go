package flitlink

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"
)

// Wire constants. They are part of the protocol (docs/protocols/flitlink.md)
// and never change within major version 1.
const (
	// Version is the major protocol version, also carried in the protocol
	// ID ("/contextd/flit/1") and checked in the hello.
	Version = 1
	// Capability is the feature level this implementation speaks. Each side
	// announces its own in the hello; a link runs at the smaller of the two.
	// It only grows.
	Capability = 1

	// HeaderSize is the size of a frame header: circuit id (4), flags (1),
	// payload length (3).
	HeaderSize = 8
	// MaxControlSize bounds the payload of a frame on the control circuit.
	MaxControlSize = 256
	// MaxServiceLen bounds a circuit's service name.
	MaxServiceLen = 64
	// MaxCircuits bounds the circuits one side may have open on a link at
	// once (counted until both sides have sent CLOSE, or until REFUSE).
	MaxCircuits = 1024

	// MinFlitSize and MaxFlitSize bound Config.FlitSize and the flit size a
	// peer may announce.
	MinFlitSize = 512
	MaxFlitSize = 1 << 20
	// MaxMessageLimit bounds Config.MaxMessageSize and the announced maximum.
	MaxMessageLimit = 64 << 20
	// MaxWindow bounds Config.Window and the announced window.
	MaxWindow = 64 << 20
)

// Frame flags.
const (
	flagFirst  = 0x01 // FFGM: first fragment of a message
	flagMore   = 0x02 // MFGM: more fragments of this message follow
	flagCancel = 0x04 // the sender abandoned the partial message on this circuit
	flagsKnown = flagFirst | flagMore | flagCancel
)

// Control message types (payload byte 0 on circuit 0). The enum only grows.
const (
	ctlHello  = 0x01
	ctlOpen   = 0x02
	ctlAccept = 0x03
	ctlRefuse = 0x04
	ctlClose  = 0x05
	ctlCredit = 0x06
)

// Sizes of control messages, type byte included.
const (
	helloSize  = 1 + 1 + 2 + 4 + 4 + 4 // type, version, capability, flit, max message, window
	openMin    = 1 + 4 + 1 + 1         // type, circuit, class, name length (+ name)
	acceptSize = 1 + 4
	refuseSize = 1 + 4 + 1
	closeSize  = 1 + 4
	creditSize = 1 + 4 + 4
)

// header is a decoded frame header.
type header struct {
	circuit uint32
	flags   uint8
	length  int
}

func (h header) first() bool  { return h.flags&flagFirst != 0 }
func (h header) more() bool   { return h.flags&flagMore != 0 }
func (h header) cancel() bool { return h.flags&flagCancel != 0 }

// appendHeader appends the encoding of h to b.
func appendHeader(b []byte, h header) []byte {
	b = binary.BigEndian.AppendUint32(b, h.circuit)
	return append(b, h.flags, byte(h.length>>16), byte(h.length>>8), byte(h.length))
}

// parseHeader decodes and validates a frame header. maxData is the largest
// payload accepted on a data circuit (the receiver's flit size). Nothing is
// allocated; the payload length is checked before the caller reads it.
func parseHeader(b *[HeaderSize]byte, maxData int) (header, error) {
	h := header{
		circuit: binary.BigEndian.Uint32(b[0:4]),
		flags:   b[4],
		length:  int(b[5])<<16 | int(b[6])<<8 | int(b[7]),
	}
	if h.flags&^flagsKnown != 0 {
		return h, fmt.Errorf("%w: unknown frame flags %#02x", ErrProtocol, h.flags)
	}
	if h.circuit == 0 {
		if h.flags != flagFirst {
			return h, fmt.Errorf("%w: control frame with flags %#02x", ErrProtocol, h.flags)
		}
		if h.length == 0 || h.length > MaxControlSize {
			return h, fmt.Errorf("%w: control frame of %d bytes", ErrProtocol, h.length)
		}
		return h, nil
	}
	switch {
	case h.cancel():
		if h.flags != flagCancel || h.length != 0 {
			return h, fmt.Errorf("%w: cancel frame with flags %#02x and %d bytes", ErrProtocol, h.flags, h.length)
		}
	case h.length > maxData:
		return h, fmt.Errorf("%w: frame of %d bytes exceeds flit size %d", ErrProtocol, h.length, maxData)
	case h.length == 0 && h.flags != flagFirst:
		// Only a whole empty message may have an empty payload.
		return h, fmt.Errorf("%w: empty fragment with flags %#02x", ErrProtocol, h.flags)
	}
	return h, nil
}

// readFrame reads one frame from r into buf, which must hold at least
// max(maxData, MaxControlSize) bytes. The returned payload aliases buf.
func readFrame(r io.Reader, hb *[HeaderSize]byte, buf []byte, maxData int) (header, []byte, error) {
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return header{}, nil, err
	}
	h, err := parseHeader(hb, maxData)
	if err != nil {
		return h, nil, err
	}
	p := buf[:h.length]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return h, nil, err
	}
	return h, p, nil
}

// control is a decoded control message. Which fields are meaningful depends
// on typ.
type control struct {
	typ     uint8
	circuit uint32
	// hello
	version    uint8
	capability uint16
	flitSize   uint32
	maxMessage uint32
	window     uint32
	// open
	class   Class
	service string
	// refuse
	reason RefuseReason
	// credit
	credit uint32
}

// appendControl appends the encoding of m to b.
func appendControl(b []byte, m *control) []byte {
	b = append(b, m.typ)
	switch m.typ {
	case ctlHello:
		b = append(b, m.version)
		b = binary.BigEndian.AppendUint16(b, m.capability)
		b = binary.BigEndian.AppendUint32(b, m.flitSize)
		b = binary.BigEndian.AppendUint32(b, m.maxMessage)
		b = binary.BigEndian.AppendUint32(b, m.window)
	case ctlOpen:
		b = binary.BigEndian.AppendUint32(b, m.circuit)
		b = append(b, byte(m.class), byte(len(m.service)))
		b = append(b, m.service...)
	case ctlAccept, ctlClose:
		b = binary.BigEndian.AppendUint32(b, m.circuit)
	case ctlRefuse:
		b = binary.BigEndian.AppendUint32(b, m.circuit)
		b = append(b, byte(m.reason))
	case ctlCredit:
		b = binary.BigEndian.AppendUint32(b, m.circuit)
		b = binary.BigEndian.AppendUint32(b, m.credit)
	}
	return b
}

// parseControl decodes a control message. Known types must have their exact
// size (HELLO may carry trailing bytes from a later capability, which are
// ignored). An unknown type is returned with typ set and no error, so the
// caller can skip it. The service name is the only allocation.
func parseControl(p []byte) (control, error) {
	var m control
	if len(p) == 0 {
		return m, fmt.Errorf("%w: empty control message", ErrProtocol)
	}
	m.typ = p[0]
	want := 0
	switch m.typ {
	case ctlHello:
		if len(p) < helloSize {
			return m, fmt.Errorf("%w: hello of %d bytes", ErrProtocol, len(p))
		}
		m.version = p[1]
		m.capability = binary.BigEndian.Uint16(p[2:4])
		m.flitSize = binary.BigEndian.Uint32(p[4:8])
		m.maxMessage = binary.BigEndian.Uint32(p[8:12])
		m.window = binary.BigEndian.Uint32(p[12:16])
		return m, nil
	case ctlOpen:
		if len(p) < openMin {
			return m, fmt.Errorf("%w: open of %d bytes", ErrProtocol, len(p))
		}
		n := int(p[6])
		if n == 0 || n > MaxServiceLen || len(p) != openMin+n {
			return m, fmt.Errorf("%w: open with service name of %d bytes in %d", ErrProtocol, n, len(p))
		}
		name := p[openMin:]
		if !utf8.Valid(name) {
			return m, fmt.Errorf("%w: service name is not UTF-8", ErrProtocol)
		}
		m.circuit = binary.BigEndian.Uint32(p[1:5])
		m.class = Class(p[5])
		m.service = string(name)
		if m.circuit == 0 {
			return m, fmt.Errorf("%w: open of circuit 0", ErrProtocol)
		}
		if m.class >= numClasses {
			return m, fmt.Errorf("%w: open with unknown class %d", ErrProtocol, m.class)
		}
		return m, nil
	case ctlAccept:
		want = acceptSize
	case ctlRefuse:
		want = refuseSize
	case ctlClose:
		want = closeSize
	case ctlCredit:
		want = creditSize
	default:
		return m, nil
	}
	if len(p) != want {
		return m, fmt.Errorf("%w: control type %d of %d bytes, want %d", ErrProtocol, m.typ, len(p), want)
	}
	m.circuit = binary.BigEndian.Uint32(p[1:5])
	switch m.typ {
	case ctlRefuse:
		m.reason = RefuseReason(p[5])
	case ctlCredit:
		m.credit = binary.BigEndian.Uint32(p[5:9])
		if m.credit == 0 {
			return m, fmt.Errorf("%w: credit of 0 bytes", ErrProtocol)
		}
	}
	if m.circuit == 0 {
		return m, fmt.Errorf("%w: control type %d names circuit 0", ErrProtocol, m.typ)
	}
	return m, nil
}
