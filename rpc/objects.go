package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// The object endpoints move objects as bytes over HTTP, beside the
// JSON-RPC endpoint (docs/protocols/rpc.md, "Objects as bytes"):
//
//	POST /objects      the body is the object → ObjectPutResult
//	GET  /objects/CID  → the object's bytes, fetched from peers first if need be
//
// HTTP rather than WebSocket binary messages: a body is a stream with TCP's
// flow control, so neither end holds more than its buffers and a slow
// reader slows the writer; it takes no framing of ours, no head-of-line
// blocking of the calls and subscriptions sharing a WebSocket, and works
// with curl. Each endpoint needs the scope of the JSON-RPC method it
// stands for in the method table.

// DefaultMaxObjectStreams is the default of Config.MaxObjectStreams.
const DefaultMaxObjectStreams = 4

// uploadIdle bounds the wait for the next bytes of an upload, as the
// server's read timeout bounds any other request.
const uploadIdle = 30 * time.Second

// isObjectsPath reports whether p is an object endpoint's path.
func isObjectsPath(p string) bool {
	return p == api.ObjectsPath || strings.HasPrefix(p, api.ObjectsPath+"/")
}

// objectEndpoint serves one object endpoint; arg is the path below
// api.ObjectsPath.
type objectEndpoint func(s *Server, ctx context.Context, w http.ResponseWriter, r *http.Request, arg string)

// serveObjects authenticates and routes a request for an object endpoint,
// and bounds the transfers served at once.
func (s *Server) serveObjects(w http.ResponseWriter, r *http.Request) {
	arg, below := strings.CutPrefix(r.URL.Path, api.ObjectsPath+"/")
	var (
		method string
		serve  objectEndpoint
	)
	switch {
	case !below && r.Method == http.MethodPost:
		method, serve = api.MethodObjectPut, (*Server).servePut
	case below && r.Method == http.MethodGet:
		method, serve = api.MethodObjectGet, (*Server).serveGet
	case !below:
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPError(w, http.StatusMethodNotAllowed, api.CodeInvalidRequest, "POST an object's bytes to "+api.ObjectsPath)
		return
	default:
		w.Header().Set("Allow", http.MethodGet)
		writeHTTPError(w, http.StatusMethodNotAllowed, api.CodeInvalidRequest, "GET "+api.ObjectsPath+"/CID reads an object")
		return
	}
	ctx, release, ok := s.authorizeBytes(w, r, method, api.ObjectsPath)
	if !ok {
		return
	}
	defer release()
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		w.Header().Set("Retry-After", "1")
		writeHTTPError(w, http.StatusServiceUnavailable, api.CodeLimit,
			fmt.Sprintf("%d object transfers are running, the limit; retry later", cap(s.slots)))
		return
	}
	serve(s, ctx, w, r, arg)
}

// authorizeBytes authenticates a request for an object or stream
// endpoint (shown in errors as path) and checks that its token holds the
// scope of method, the JSON-RPC method the endpoint stands for; else it
// answers 401 or 403 and returns false. The context it returns ends with
// the request or the server's Close; the caller calls release when done.
func (s *Server) authorizeBytes(w http.ResponseWriter, r *http.Request, method, path string) (ctx context.Context, release func(), ok bool) {
	who, ok := s.authenticate(r, false)
	if !ok {
		s.unauthorized(w, r)
		return nil, nil, false
	}
	if scope := methods[method].scope; !who.may(scope) {
		writeHTTPError(w, http.StatusForbidden, api.CodeNotAllowed,
			fmt.Sprintf("not allowed: %s %s needs scope %s", r.Method, path, scope))
		return nil, nil, false
	}
	ctx, cancel := context.WithCancel(withCaller(r.Context(), who))
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }, true
}

// servePut stores the request body as an object. The node spools and
// stores it in bounded memory; the body may take as long as it needs, as
// long as its bytes keep coming.
func (s *Server) servePut(ctx context.Context, w http.ResponseWriter, r *http.Request, _ string) {
	rc := http.NewResponseController(w)
	// Storing a large object outlasts the server's write timeout, which
	// runs from the request's start: the answer gets its own below.
	rc.SetWriteDeadline(time.Time{})
	res, err := s.node.PutObject(ctx, &idleReader{r: r.Body, rc: rc})
	rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if err != nil {
		s.bytesError(w, "object put", err)
		return
	}
	s.log.Debug("rpc: object put", "cid", res.CID, "size", res.Size)
	out, _ := json.Marshal(res)
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// serveGet streams an object, which the node first fetches if it does not
// hold it. Failures before the first byte answer an error status; a
// stream that breaks later is cut short, so the client sees fewer bytes
// than Content-Length.
func (s *Server) serveGet(ctx context.Context, w http.ResponseWriter, r *http.Request, arg string) {
	id, err := parseCID(arg)
	if err != nil {
		s.bytesError(w, "object get", err)
		return
	}
	rc := http.NewResponseController(w)
	// A fetch from peers may outlast the server's write timeout: the
	// client's connection (ctx) bounds it, then each write is bounded.
	rc.SetWriteDeadline(time.Time{})
	body, size, err := s.node.OpenObject(ctx, id, nil)
	if err != nil {
		s.bytesError(w, "object get", err)
		return
	}
	defer body.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if n, err := io.Copy(&idleWriter{w: w, rc: rc, idle: s.cfg.WriteTimeout}, body); err != nil {
		s.log.Info("rpc: object stream cut short", "cid", id, "sent", n, "size", size, "err", err)
		panic(http.ErrAbortHandler) // closes the connection: the client sees the short body
	}
}

// bytesError answers a failed object or stream request (op: "object
// put", "stream"…) with the status of its code and a JSON-RPC error body.
func (s *Server) bytesError(w http.ResponseWriter, op string, err error) {
	e := toError(err)
	status := httpStatus(e.Code)
	if status == http.StatusInternalServerError {
		s.log.Info("rpc: "+op, "err", err)
	}
	writeHTTPError(w, status, e.Code, e.Message)
}

// httpStatus is the HTTP status of an error code.
func httpStatus(c api.Code) int {
	switch c {
	case api.CodeParseError, api.CodeInvalidRequest, api.CodeInvalidParams:
		return http.StatusBadRequest
	case api.CodeUnauthorized:
		return http.StatusUnauthorized
	case api.CodeNotAllowed:
		return http.StatusForbidden
	case api.CodeNotFound, api.CodeUnknownFeed:
		return http.StatusNotFound
	case api.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case api.CodeUnavailable, api.CodeLimit:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// idleReader reads an upload, allowing each read uploadIdle.
type idleReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.rc.SetReadDeadline(time.Now().Add(uploadIdle))
	return ir.r.Read(p)
}

// idleWriter writes a download, allowing each write idle: a client that
// stops reading is dropped.
type idleWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (iw *idleWriter) Write(p []byte) (int, error) {
	iw.rc.SetWriteDeadline(time.Now().Add(iw.idle))
	return iw.w.Write(p)
}
