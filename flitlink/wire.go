package flitlink

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"
)

// Wire constants. They are part of the protocol (docs/protocols/flitlink.md)
// and never change within major version 2.
const (
	// Version is the major protocol version, also carried in the protocol
	// ID ("/contextd/flit/2") and checked in the hello.
	Version = 2
	// Capability is the feature level this implementation speaks. Each side
	// announces its own in the hello; a link runs at the smaller of the two.
	// It only grows.
	Capability = 1

	// LengthSize is the size of the length prefix of every message.
	LengthSize = 4
	// MaxControlSize bounds a message on the control stream.
	MaxControlSize = 256
	// MaxServiceLen bounds a circuit's service name.
	MaxServiceLen = 64
	// MaxCircuitHeader bounds the header that opens a circuit stream.
	MaxCircuitHeader = 2 + MaxServiceLen
	// MaxCircuits bounds the circuits one side may have open on a link at
	// once (counted until Close, or until a refusal).
	MaxCircuits = 1024
	// MaxMessageLimit bounds Config.MaxMessageSize and the announced maximum.
	MaxMessageLimit = 64 << 20
)

// Control message types (payload byte 0 on the control stream). The enum
// only grows.
const (
	ctlHello     = 0x01
	ctlKeepAlive = 0x02
)

// helloSize is the size of a HELLO: type, version, capability, max message.
const helloSize = 1 + 1 + 2 + 4

// replyAccept is the acceptor's answer to a circuit it queued; any other
// reply byte is a RefuseReason.
const replyAccept = 0

// appendMessage appends msg with its length prefix to b.
func appendMessage(b, msg []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	return append(b, msg...)
}

// parseLength decodes a length prefix and checks it against limit, before
// anything is allocated or read for the message.
func parseLength(b *[LengthSize]byte, limit int) (int, error) {
	n := binary.BigEndian.Uint32(b[:])
	if uint64(n) > uint64(limit) {
		return 0, fmt.Errorf("%w: %w: a message of %d bytes, the limit is %d", ErrProtocol, ErrTooLarge, n, limit)
	}
	return int(n), nil
}

// hello is a decoded HELLO.
type hello struct {
	version    uint8
	capability uint16
	maxMessage uint32
}

func appendHello(b []byte, h hello) []byte {
	b = append(b, ctlHello, h.version)
	b = binary.BigEndian.AppendUint16(b, h.capability)
	return binary.BigEndian.AppendUint32(b, h.maxMessage)
}

// parseControl decodes a control message: its type and, for HELLO, its
// fields. HELLO may carry trailing bytes from a later capability, which are
// ignored; KEEPALIVE is exactly its type byte. An unknown type is returned
// with no error, so the caller can skip it.
func parseControl(p []byte) (typ uint8, h hello, err error) {
	if len(p) == 0 {
		return 0, h, fmt.Errorf("%w: empty control message", ErrProtocol)
	}
	switch typ = p[0]; typ {
	case ctlHello:
		if len(p) < helloSize {
			return typ, h, fmt.Errorf("%w: hello of %d bytes", ErrProtocol, len(p))
		}
		h.version = p[1]
		h.capability = binary.BigEndian.Uint16(p[2:4])
		h.maxMessage = binary.BigEndian.Uint32(p[4:8])
		switch {
		case h.version != Version:
			return typ, h, fmt.Errorf("%w: peer speaks version %d, want %d", ErrProtocol, h.version, Version)
		case h.capability == 0:
			return typ, h, fmt.Errorf("%w: hello with capability 0", ErrProtocol)
		case h.maxMessage < 1 || h.maxMessage > MaxMessageLimit:
			return typ, h, fmt.Errorf("%w: hello with max message size %d", ErrProtocol, h.maxMessage)
		}
	case ctlKeepAlive:
		if len(p) != 1 {
			return typ, h, fmt.Errorf("%w: keepalive of %d bytes", ErrProtocol, len(p))
		}
	}
	return typ, h, nil
}

// appendCircuitHeader appends the header that opens a circuit stream:
// class, name length, name.
func appendCircuitHeader(b []byte, service string, class Class) []byte {
	b = append(b, byte(class), byte(len(service)))
	return append(b, service...)
}

// validService reports whether service may name a circuit.
func validService(service string) bool {
	return len(service) > 0 && len(service) <= MaxServiceLen && utf8.ValidString(service)
}

// readCircuitHeader reads and checks a circuit header from r. It reads
// at most MaxCircuitHeader bytes.
func readCircuitHeader(r io.Reader) (service string, class Class, err error) {
	var buf [MaxCircuitHeader]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return "", 0, err
	}
	class, n := Class(buf[0]), int(buf[1])
	if class >= numClasses {
		return "", 0, fmt.Errorf("%w: circuit of unknown class %d", ErrProtocol, buf[0])
	}
	if n == 0 || n > MaxServiceLen {
		return "", 0, fmt.Errorf("%w: circuit with a service name of %d bytes", ErrProtocol, n)
	}
	if _, err := io.ReadFull(r, buf[2:2+n]); err != nil {
		return "", 0, err
	}
	service = string(buf[2 : 2+n])
	if !utf8.ValidString(service) {
		return "", 0, fmt.Errorf("%w: circuit service name is not UTF-8", ErrProtocol)
	}
	return service, class, nil
}
