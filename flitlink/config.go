package flitlink

import (
	"errors"
	"fmt"
	"log/slog"
)

// Class is a circuit's quality-of-service class. The scheduler serves
// Control before Voice before Video and Data, and shares the link between
// Video and Data by weight (VideoWeight:DataWeight, in bytes).
type Class uint8

// Classes, highest priority first. The values are on the wire.
const (
	Control Class = 0 // small, must not wait: session control, notes
	Voice   Class = 1 // small, latency-critical: chat lines, live datagrams
	Video   Class = 2 // rate- and delay-sensitive streams
	Data    Class = 3 // reliable bulk: replication, objects

	numClasses = 4
)

// Scheduler weights of the classes that share the link.
const (
	VideoWeight = 3
	DataWeight  = 1
)

// String returns the class name.
func (c Class) String() string {
	switch c {
	case Control:
		return "control"
	case Voice:
		return "voice"
	case Video:
		return "video"
	case Data:
		return "data"
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Defaults for the zero Config.
const (
	// DefaultFlitSize leaves room for a message header next to 16 KiB of
	// payload, so that a 16 KiB swarm chunk in its DATA message travels
	// as one frame rather than a full flit and a 16-byte one.
	DefaultFlitSize       = 16<<10 + 64
	DefaultMaxMessageSize = 1 << 20
	// DefaultWindow is sized for bulk over fast paths: on loopback QUIC a
	// 256 KiB window held 16 KiB-message circuits to ~60% of what 1 MiB
	// allows (BenchmarkQUICLink).
	DefaultWindow        = 1 << 20
	DefaultAcceptBacklog = 32
)

// Config tunes a link. The zero value means the defaults; values out of range
// are clamped to the limits named in the comments.
type Config struct {
	// FlitSize is the largest frame payload this side accepts and sends
	// ([MinFlitSize, MaxFlitSize]; 0 = DefaultFlitSize, 16 KiB + 64 B). A link sends flits of the
	// smaller of both sides' sizes.
	FlitSize int
	// MaxMessageSize is the largest message this side accepts and sends
	// ([1, MaxMessageLimit]; 0 = 1 MiB). Send rejects messages above the
	// smaller of both sides' sizes.
	MaxMessageSize int
	// Window is the receive credit granted to the peer per circuit, in
	// payload bytes ([1, MaxWindow]; 0 = 1 MiB).
	Window int
	// AcceptBacklog bounds circuits the peer opened that Accept has not yet
	// returned; further OPENs are refused ([1, MaxCircuits]; 0 = 32).
	AcceptBacklog int
	// Logger receives link events at Debug level (nil = discard).
	Logger *slog.Logger
	// Metrics, if not nil, counts bytes and queueing delay per class
	// (metrics.go); links may share one.
	Metrics *Metrics
}

// withDefaults returns cfg with defaults filled in and values clamped.
func (cfg Config) withDefaults() Config {
	cfg.FlitSize = clamp(cfg.FlitSize, DefaultFlitSize, MinFlitSize, MaxFlitSize)
	cfg.MaxMessageSize = clamp(cfg.MaxMessageSize, DefaultMaxMessageSize, 1, MaxMessageLimit)
	cfg.Window = clamp(cfg.Window, DefaultWindow, 1, MaxWindow)
	cfg.AcceptBacklog = clamp(cfg.AcceptBacklog, DefaultAcceptBacklog, 1, MaxCircuits)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

func clamp(v, def, lo, hi int) int {
	if v <= 0 {
		return def
	}
	return min(max(v, lo), hi)
}

// Errors callers branch on with errors.Is.
var (
	// ErrLinkClosed is returned by every blocked or later call on a dead
	// link. It wraps the cause (a read or write error, a protocol
	// violation, or a local Close).
	ErrLinkClosed = errors.New("flitlink: link closed")
	// ErrRefused is returned by Open when the remote refused the circuit;
	// the error is a *RefusedError carrying the reason.
	ErrRefused = errors.New("flitlink: circuit refused")
	// ErrTooLarge is returned by Send for a message above the link's
	// maximum message size; a peer that sends one kills the link with it.
	ErrTooLarge = errors.New("flitlink: message too large")
	// ErrCircuitClosed is returned by Send after CloseWrite or Close, and by
	// Recv after Close.
	ErrCircuitClosed = errors.New("flitlink: circuit closed")
	// ErrTooManyCircuits is returned by Open when MaxCircuits circuits
	// opened by this side are still open (or circuit ids ran out).
	ErrTooManyCircuits = errors.New("flitlink: too many circuits")
	// ErrBadService is returned by Open for an empty, over-long or non-UTF-8
	// service name, or an unknown class.
	ErrBadService = errors.New("flitlink: bad service name or class")
	// ErrProtocol is the cause of a link killed because the peer broke the
	// protocol.
	ErrProtocol = errors.New("flitlink: protocol violation")

	// errLocalClose is the cause of a link closed by Link.Close.
	errLocalClose = errors.New("closed locally")
	// errPeerClosed is the cause of a link whose connection ended cleanly
	// (io.EOF is not wrapped, so that errors.Is(err, io.EOF) stays the
	// circuit-level end-of-stream signal).
	errPeerClosed = errors.New("connection closed by peer")
)

// RefuseReason says why a circuit was refused. The values are on the wire.
type RefuseReason uint8

// Refuse reasons. The enum only grows; unknown values are reported as is.
const (
	RefuseBacklogFull RefuseReason = 1 // the acceptor's backlog was full
	RefuseClosing     RefuseReason = 2 // the acceptor is shutting down
)

// String returns a short description of the reason.
func (r RefuseReason) String() string {
	switch r {
	case RefuseBacklogFull:
		return "accept backlog full"
	case RefuseClosing:
		return "closing"
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// RefusedError is the error Open returns when the remote refused the
// circuit. errors.Is(err, ErrRefused) holds.
type RefusedError struct {
	Service string
	Reason  RefuseReason
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("flitlink: circuit %q refused: %v", e.Service, e.Reason)
}

// Is reports whether target is ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }
