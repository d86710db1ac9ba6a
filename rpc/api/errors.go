package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/contextd/contextd/feed"
)

// Code is a JSON-RPC error code.
type Code int

// Standard JSON-RPC 2.0 codes.
const (
	CodeParseError     Code = -32700 // the message is not JSON
	CodeInvalidRequest Code = -32600 // JSON, but not a valid request
	CodeMethodNotFound Code = -32601
	CodeInvalidParams  Code = -32602 // the message names the field
	CodeInternal       Code = -32603 // a bug or an unclassified failure
)

// Application codes, in the range JSON-RPC reserves for servers.
const (
	CodeUnavailable  Code = -32000 // the node cannot do it now (shutting down, peer unreachable, timeout)
	CodeUnknownFeed  Code = -32001 // the node holds nothing of this feed
	CodeTooLarge     Code = -32002 // a body or request over its limit
	CodeNotFound     Code = -32003 // no such subscription, entry or object
	CodeUnauthorized Code = -32004 // missing or wrong token
	CodeForked       Code = -32005 // the feed is frozen by a fork proof
	CodeLimit        Code = -32006 // a per-connection limit is reached (e.g. subscriptions)
	CodeNotJoined    Code = -32007 // the node has not joined this context
	CodeNotAllowed   Code = -32008 // the token's scope does not allow this method
	CodePruned       Code = -32009 // the entries were deleted by the retention setting
)

// Sentinel errors the node returns (wrapped with %w) for the server to map
// to codes, and that a client's errors match with errors.Is. feed.ErrTooLarge
// stands for CodeTooLarge.
var (
	ErrInvalidParams = errors.New("invalid params")
	ErrUnavailable   = errors.New("unavailable")
	ErrUnknownFeed   = errors.New("unknown feed")
	ErrNotFound      = errors.New("not found")
	ErrUnauthorized  = errors.New("unauthorized")
	ErrForked        = errors.New("feed is frozen by a fork proof")
	ErrLimit         = errors.New("limit reached")
	ErrNotJoined     = errors.New("context not joined")
	ErrNotAllowed    = errors.New("not allowed")
	ErrPruned        = errors.New("pruned")
)

// codes lists the sentinels per code, the first one canonical. CodeOf
// tries them in order.
var codes = []struct {
	code Code
	errs []error
}{
	{CodeInvalidParams, []error{ErrInvalidParams, feed.ErrBadType, feed.ErrBadID, feed.ErrBadHash, feed.ErrBadContact}},
	{CodeTooLarge, []error{feed.ErrTooLarge}},
	{CodeUnknownFeed, []error{ErrUnknownFeed}},
	{CodeNotFound, []error{ErrNotFound}},
	{CodeUnauthorized, []error{ErrUnauthorized}},
	{CodeForked, []error{ErrForked}},
	{CodeLimit, []error{ErrLimit}},
	{CodeNotJoined, []error{ErrNotJoined}},
	{CodeNotAllowed, []error{ErrNotAllowed}},
	{CodePruned, []error{ErrPruned}},
	{CodeUnavailable, []error{ErrUnavailable}},
}

// CodeOf returns the code for err: that of the first sentinel err matches,
// CodeInternal otherwise. An *Error keeps its own code.
func CodeOf(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	for _, c := range codes {
		for _, s := range c.errs {
			if errors.Is(err, s) {
				return c.code
			}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return CodeUnavailable // the call timed out or its connection ended
	}
	return CodeInternal
}

// Sentinel returns the canonical sentinel error of c, nil if it has none.
func (c Code) Sentinel() error {
	for _, e := range codes {
		if e.code == c {
			return e.errs[0]
		}
	}
	return nil
}

// Matches reports whether target is one of the sentinels of c, so that a
// client-side error with code c matches them with errors.Is.
func (c Code) Matches(target error) bool {
	for _, e := range codes {
		if e.code == c {
			for _, s := range e.errs {
				if s == target {
					return true
				}
			}
		}
	}
	return false
}

func (c Code) String() string {
	switch c {
	case CodeParseError:
		return "parse error"
	case CodeInvalidRequest:
		return "invalid request"
	case CodeMethodNotFound:
		return "method not found"
	case CodeInvalidParams:
		return "invalid params"
	case CodeInternal:
		return "internal error"
	case CodeUnavailable:
		return "unavailable"
	case CodeUnknownFeed:
		return "unknown feed"
	case CodeTooLarge:
		return "too large"
	case CodeNotFound:
		return "not found"
	case CodeUnauthorized:
		return "unauthorized"
	case CodeForked:
		return "forked"
	case CodeLimit:
		return "limit reached"
	case CodeNotJoined:
		return "context not joined"
	case CodeNotAllowed:
		return "not allowed"
	case CodePruned:
		return "pruned"
	}
	return fmt.Sprintf("code %d", int(c))
}

// Error is the error object of a JSON-RPC response.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// NewError returns an error with code c and a formatted message.
func NewError(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (%d): %s", e.Code, int(e.Code), e.Message)
}

// Is lets errors.Is match e against the sentinels of its code.
func (e *Error) Is(target error) bool { return e.Code.Matches(target) }
