package flitlink

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Class is a circuit's quality-of-service class. Control and Voice
// circuits never wait for bulk in this package; Video and Data (bulk) are
// paced by the link's delay-based controller unless Config.Unmanaged.
type Class uint8

// Classes, highest priority first. The values are on the wire.
const (
	Control Class = 0 // small, must not wait: session control, notes
	Voice   Class = 1 // small, latency-critical: chat lines, live datagrams
	Video   Class = 2 // rate- and delay-sensitive streams
	Data    Class = 3 // reliable bulk: replication, objects

	numClasses = 4
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

// bulk reports whether c is paced by the bulk controller.
func (c Class) bulk() bool { return c == Video || c == Data }

// Defaults for the zero Config.
const (
	DefaultMaxMessageSize = 1 << 20
	DefaultAcceptBacklog  = 32
	DefaultKeepAlive      = 250 * time.Millisecond
	DefaultDeadAfter      = 1250 * time.Millisecond
)

// Config tunes a link. The zero value means the defaults; values out of range
// are clamped to the limits named in the comments.
type Config struct {
	// MaxMessageSize is the largest message this side accepts and sends
	// ([1, MaxMessageLimit]; 0 = 1 MiB). Send rejects messages above the
	// smaller of both sides' sizes.
	MaxMessageSize int
	// AcceptBacklog bounds circuits the peer opened that Accept has not yet
	// returned; further opens are refused ([1, MaxCircuits]; 0 = 32).
	AcceptBacklog int
	// KeepAlive is how often the link sends a keepalive on its control
	// stream (0 = 250 ms; at least 1 ms).
	KeepAlive time.Duration
	// DeadAfter fails the link (ErrTimeout) when nothing at all has been
	// received on any of its streams for this long (0 = 1.25 s, five
	// keepalives; at least twice KeepAlive).
	DeadAfter time.Duration
	// Unmanaged turns off the delay-based controller of bulk (Video, Data)
	// circuits: they then send as fast as the transport takes their bytes.
	Unmanaged bool
	// QueueTarget is the queueing delay the bulk controller aims for
	// ([MinQueueTarget, MaxQueueTarget]; 0 = DefaultQueueTarget, 3 ms).
	QueueTarget time.Duration
	// Logger receives link events at Debug level (nil = discard).
	Logger *slog.Logger
	// Metrics, if not nil, counts bytes and send delay per class
	// (metrics.go); links may share one.
	Metrics *Metrics
}

// withDefaults returns cfg with defaults filled in and values clamped.
func (cfg Config) withDefaults() Config {
	cfg.MaxMessageSize = clamp(cfg.MaxMessageSize, DefaultMaxMessageSize, 1, MaxMessageLimit)
	cfg.AcceptBacklog = clamp(cfg.AcceptBacklog, DefaultAcceptBacklog, 1, MaxCircuits)
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	cfg.KeepAlive = max(cfg.KeepAlive, time.Millisecond)
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	cfg.DeadAfter = max(cfg.DeadAfter, 2*cfg.KeepAlive)
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
	// violation, ErrTimeout, or a local Close).
	ErrLinkClosed = errors.New("flitlink: link closed")
	// ErrTimeout is the cause of a link on which nothing was received for
	// Config.DeadAfter (the path is probably cut).
	ErrTimeout = errors.New("flitlink: nothing received from the peer in time")
	// ErrRefused is returned by Open when the remote refused the circuit;
	// the error is a *RefusedError carrying the reason.
	ErrRefused = errors.New("flitlink: circuit refused")
	// ErrTooLarge is returned by Send for a message above the link's
	// maximum message size; a peer that sends one kills the link with it.
	ErrTooLarge = errors.New("flitlink: message too large")
	// ErrCircuitClosed is returned by Send after CloseWrite or Close, and by
	// Recv after Close.
	ErrCircuitClosed = errors.New("flitlink: circuit closed")
	// ErrCircuitReset is returned by Send and Recv on a circuit whose
	// stream was aborted: by the peer, or by a Send that gave up in the
	// middle of a message (its context ended).
	ErrCircuitReset = errors.New("flitlink: circuit reset")
	// ErrTooManyCircuits is returned by Open when MaxCircuits circuits
	// opened by this side are still open.
	ErrTooManyCircuits = errors.New("flitlink: too many circuits")
	// ErrBadService is returned by Open for an empty, over-long or non-UTF-8
	// service name, or an unknown class.
	ErrBadService = errors.New("flitlink: bad service name or class")
	// ErrProtocol is the cause of a link killed because the peer broke the
	// protocol.
	ErrProtocol = errors.New("flitlink: protocol violation")

	// errLocalClose is the cause of a link closed by Link.Close.
	errLocalClose = errors.New("closed locally")
	// errPeerClosed is the cause of a link whose control stream ended
	// cleanly (io.EOF is not wrapped, so that errors.Is(err, io.EOF) stays
	// the circuit-level end-of-stream signal).
	errPeerClosed = errors.New("control stream closed by peer")
)

// RefuseReason says why a circuit was refused. The values are on the wire.
type RefuseReason uint8

// Refuse reasons. The enum only grows; unknown values are reported as is.
const (
	RefuseBacklogFull RefuseReason = 1 // the acceptor's backlog was full
	RefuseClosing     RefuseReason = 2 // the acceptor is shutting down
	RefuseTooMany     RefuseReason = 3 // the opener has MaxCircuits circuits open
)

// String returns a short description of the reason.
func (r RefuseReason) String() string {
	switch r {
	case RefuseBacklogFull:
		return "accept backlog full"
	case RefuseClosing:
		return "closing"
	case RefuseTooMany:
		return "too many circuits open"
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
