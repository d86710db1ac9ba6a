package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// call is the state of one request while it is handled.
type call struct {
	conn *wsConn // nil over HTTP POST
	// after, if set by the handler, runs once the response was written
	// (or right away for a notification). feed.subscribe and
	// context.subscribe use it to start delivering only after the client
	// has the subscription ID.
	after func()
}

// handle answers one message. It returns the encoded response, nil for a
// notification (a request without id), and the call so the caller can run
// call.after once the response is written.
func (s *Server) handle(ctx context.Context, c *wsConn, data []byte) ([]byte, *call) {
	cl := &call{conn: c}
	req, rerr := parseRequest(data)
	if rerr != nil {
		return errorResponse(req.ID, rerr), cl
	}
	res, err := s.dispatch(ctx, cl, req)
	if req.ID == nil {
		s.log.Debug("rpc: notification handled", "method", req.Method, "err", err)
		return nil, cl
	}
	if err != nil {
		return errorResponse(req.ID, toError(err)), cl
	}
	raw, merr := json.Marshal(res)
	if merr != nil {
		s.log.Error("rpc: encoding result", "method", req.Method, "err", merr)
		return errorResponse(req.ID, api.NewError(api.CodeInternal, "encoding result: %v", merr)), cl
	}
	out, _ := json.Marshal(api.Response{JSONRPC: api.Version, ID: req.ID, Result: raw})
	return out, cl
}

// parseRequest decodes and checks the envelope of one request. On error
// the returned request carries the id if it could be read.
func parseRequest(data []byte) (api.Request, *api.Error) {
	var req api.Request
	if !json.Valid(data) {
		return req, api.NewError(api.CodeParseError, "message is not valid JSON")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return req, api.NewError(api.CodeInvalidRequest, "batch requests are not supported")
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return api.Request{}, api.NewError(api.CodeInvalidRequest, "request must be an object with string jsonrpc and method: %v", err)
	}
	if req.ID != nil && !validID(req.ID) {
		req.ID = nil
		return req, api.NewError(api.CodeInvalidRequest, "id must be a string, a number or null")
	}
	if req.JSONRPC != api.Version {
		return req, api.NewError(api.CodeInvalidRequest, `jsonrpc must be "2.0"`)
	}
	if req.Method == "" {
		return req, api.NewError(api.CodeInvalidRequest, "method is missing")
	}
	return req, nil
}

// validID reports whether a JSON value is a string, a number or null.
func validID(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	switch c := raw[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	case c == 'n': // null
		return true
	}
	return false
}

// dispatch calls the method's handler, turning a panic into an internal
// error.
func (s *Server) dispatch(ctx context.Context, cl *call, req api.Request) (res any, err error) {
	m, ok := methods[req.Method]
	if !ok {
		return nil, api.NewError(api.CodeMethodNotFound, "unknown method %q", truncate(req.Method))
	}
	defer s.cfg.Metrics.called(req.Method, time.Now(), &err)
	if !callerOf(ctx).may(m.scope) {
		return nil, api.NewError(api.CodeNotAllowed, "not allowed: method %s needs scope %s", req.Method, m.scope)
	}
	if m.wsOnly && cl.conn == nil {
		return nil, api.NewError(api.CodeInvalidRequest, "%s needs a WebSocket connection", req.Method)
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("rpc: handler panicked", "method", req.Method, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, api.NewError(api.CodeInternal, "internal error in %s", req.Method)
		}
	}()
	if !m.long || cl.conn == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.CallTimeout)
		defer cancel()
	}
	s.log.Debug("rpc: call", "method", req.Method)
	return m.handle(ctx, s, cl, req.Params)
}

// toError maps an error to its JSON-RPC error object.
func toError(err error) *api.Error {
	if e, ok := errors.AsType[*api.Error](err); ok {
		return e
	}
	return &api.Error{Code: api.CodeOf(err), Message: err.Error()}
}

func errorResponse(id json.RawMessage, e *api.Error) []byte {
	if id == nil {
		id = json.RawMessage("null")
	}
	out, _ := json.Marshal(api.Response{JSONRPC: api.Version, ID: id, Error: e})
	return out
}

// decodeParams decodes params into p, which must point to a struct. Absent
// or null params leave p zero; positional (array) params and unknown fields
// are rejected. Errors are *api.Error with CodeInvalidParams naming the
// field.
func decodeParams(raw json.RawMessage, p any) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil
	}
	if trimmed[0] != '{' {
		return api.NewError(api.CodeInvalidParams, "params must be an object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	err := dec.Decode(p)
	if err == nil {
		return nil
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return api.NewError(api.CodeInvalidParams, "field %q: %s is not a valid %s", te.Field, te.Value, jsonType(te.Type))
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return api.NewError(api.CodeInvalidParams, "unknown field %s", field)
	}
	// A field's UnmarshalText failed (a bad ID or hash): find which one.
	return api.NewError(api.CodeInvalidParams, "%s", fieldError(trimmed, p, err))
}

// fieldError names the field of p whose value in raw does not decode.
func fieldError(raw []byte, p any, err error) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return err.Error()
	}
	t := reflect.TypeOf(p).Elem()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		v, ok := fields[name]
		if !ok {
			continue
		}
		if ferr := json.Unmarshal(v, reflect.New(f.Type).Interface()); ferr != nil {
			return fmt.Sprintf("field %q: %v", name, ferr)
		}
	}
	return err.Error()
}

func jsonType(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative integer"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "base64 string"
		}
		return "array"
	case reflect.Array:
		return "ID string"
	case reflect.Struct, reflect.Map:
		return "object"
	}
	return t.String()
}

// missing is the error of a required field left out.
func missing(field string) error {
	return api.NewError(api.CodeInvalidParams, "field %q is required", field)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
