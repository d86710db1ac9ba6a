package rpc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/rpc/api"
)

// Defaults of Config's limits.
const (
	// DefaultMaxRequestSize fits a feed.publish of a maximal body sent as
	// text with every byte escaped (\u00XX), plus 64 KiB for the rest.
	DefaultMaxRequestSize = 64<<10 + 6*feed.MaxBodySize
	DefaultMaxConnections = 128              // WebSocket connections per server
	DefaultMaxCalls       = 16               // concurrent calls per WebSocket
	DefaultMaxSubs        = 64               // subscriptions per WebSocket
	DefaultSubBatch       = 64               // entries a subscription reads from the node at once
	DefaultCallTimeout    = time.Minute      // per call
	DefaultWriteTimeout   = 10 * time.Second // per WebSocket message
	DefaultPingInterval   = 30 * time.Second // WebSocket keepalive
)

// Config configures a Server. The zero value of every limit means its
// default.
type Config struct {
	Node Node
	// Token is the admin token: its bearer may call every method. An
	// empty Token matches no request.
	Token string
	// Tokens holds the app tokens, each limited to its scopes (nil: none;
	// the token.* methods then fail).
	Tokens Tokens
	// Pages serves every path other than api.Path and api.LoginPath,
	// without authentication (the chat page; nil: 404).
	Pages  http.Handler
	Logger *slog.Logger // nil discards

	// OriginPatterns lists the browser origins (host patterns, see
	// websocket.AcceptOptions) allowed to open a WebSocket besides the
	// server's own host.
	OriginPatterns []string

	MaxRequestSize int64         // bytes of one POST body or WebSocket message
	MaxConnections int           // concurrent WebSocket connections
	MaxCalls       int           // concurrent calls per WebSocket connection
	MaxSubs        int           // subscriptions per WebSocket connection
	SubBatch       int           // entries read from the node per step of a subscription
	CallTimeout    time.Duration // bound of one call
	WriteTimeout   time.Duration // a WebSocket message not written in this time drops the connection
	PingInterval   time.Duration // WebSocket ping period; the pong must come within it
	// MaxObjectStreams bounds the object uploads and downloads served at
	// once (each holds a batch of chunks at most).
	MaxObjectStreams int
	// Metrics, if not nil, counts and times calls by method (metrics.go).
	Metrics *Metrics

	// MaxConns and MaxConnsPerAddr bound the open connections Serve
	// accepts, in all and per remote address; AuthPolicy counts requests
	// without a valid token per address (zero fields:
	// limit.DefaultPolicy). See limits.go.
	MaxConns        int
	MaxConnsPerAddr int
	AuthPolicy      limit.Policy
}

func (c *Config) fill() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxRequestSize <= 0 {
		c.MaxRequestSize = DefaultMaxRequestSize
	}
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxCalls, DefaultMaxCalls)
	def(&c.MaxSubs, DefaultMaxSubs)
	def(&c.SubBatch, DefaultSubBatch)
	def(&c.MaxObjectStreams, DefaultMaxObjectStreams)
	def(&c.MaxConns, DefaultMaxConns)
	def(&c.MaxConnsPerAddr, DefaultMaxConnsPerAddr)
	c.AuthPolicy = c.AuthPolicy.OrDefault()
	if c.CallTimeout <= 0 {
		c.CallTimeout = DefaultCallTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
}

// Server serves the RPC. It is an http.Handler for api.Path, api.LoginPath,
// api.ObjectsPath and below it, below api.StreamsPath, and, through
// Config.Pages, every other path.
type Server struct {
	cfg    Config
	node   Node
	tokens Tokens // nil: no app tokens
	log    *slog.Logger
	token  [sha256.Size]byte // hash of cfg.Token; compared in constant time
	ctx    context.Context   // cancelled by Close; parent of every call
	stop   context.CancelFunc
	// slots holds a token per object upload or download being served
	// (capacity MaxObjectStreams).
	slots chan struct{}
	lim   *limits // per-address connection counts, strikes and refusals (limits.go)

	// authMu guards live and logins. It is held across a revocation, so
	// no WebSocket of a revoked token is registered after it.
	authMu sync.Mutex
	live   map[string]map[*context.CancelFunc]struct{} // app token ID → cancels of its open WebSockets
	logins []loginCode                                 // outstanding login codes, oldest first

	mu     sync.Mutex // guards closed and conns
	closed bool
	conns  int            // open WebSocket connections
	wg     sync.WaitGroup // every request being served, and so every goroutine of the server
}

// New returns a Server for cfg. cfg.Node must not be nil.
func New(cfg Config) *Server {
	cfg.fill()
	ctx, stop := context.WithCancel(context.Background())
	return &Server{
		cfg:    cfg,
		node:   cfg.Node,
		tokens: cfg.Tokens,
		log:    cfg.Logger,
		token:  sha256.Sum256([]byte(cfg.Token)),
		ctx:    ctx,
		stop:   stop,
		live:   make(map[string]map[*context.CancelFunc]struct{}),
		slots:  make(chan struct{}, cfg.MaxObjectStreams),
		lim:    newLimits(cfg),
	}
}

// Close cancels every call, subscription and WebSocket connection and
// waits until every request handler and goroutine of the server returned.
// Requests after Close are answered with 503.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	return nil
}

// enter registers a request being served; false after Close.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Serve runs srv on ln until ctx is done: see Server.Serve.
func Serve(ctx context.Context, ln net.Listener, srv *Server) error {
	return srv.Serve(ctx, ln)
}

// Serve serves HTTP on ln until ctx is done or ln fails, then closes the
// Server (cancelling every call and connection) and the HTTP server. It
// returns nil after ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // net/http clears it when a WebSocket hijacks the connection
		WriteTimeout:      s.cfg.CallTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.limitListener(ln)) }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("rpc: serve: %w", err)
	case <-ctx.Done():
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := hs.Shutdown(sctx); serr != nil {
		hs.Close()
	}
	if err == nil {
		<-errc // http.ErrServerClosed
	}
	return err
}

// ServeHTTP serves api.Path (POST with one JSON-RPC request, or a
// WebSocket upgrade), api.LoginPath, the object and stream endpoints, and
// passes other paths to Config.Pages.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	objects := isObjectsPath(r.URL.Path)
	streams := isStreamsPath(r.URL.Path)
	if r.URL.Path != api.Path && r.URL.Path != api.LoginPath && !objects && !streams {
		if s.cfg.Pages == nil {
			http.NotFound(w, r)
			return
		}
		s.cfg.Pages.ServeHTTP(w, r)
		return
	}
	if !s.enter() {
		writeHTTPError(w, http.StatusServiceUnavailable, api.CodeUnavailable, "server is shutting down")
		return
	}
	defer s.wg.Done()
	if r.URL.Path == api.LoginPath {
		s.serveLogin(w, r)
		return
	}
	if objects {
		s.serveObjects(w, r)
		return
	}
	if streams {
		s.serveStreams(w, r)
		return
	}
	if isWebSocket(r) {
		ctx, release, ok := s.authWS(r)
		if !ok {
			s.unauthorized(w, r)
			return
		}
		defer release()
		// serveWS derives the connection's context from r's.
		s.serveWS(w, r.WithContext(ctx))
		return
	}
	who, ok := s.authenticate(r, false)
	if !ok {
		s.unauthorized(w, r)
		return
	}
	data, ok := readPOST(w, r, s.cfg.MaxRequestSize, "use POST or a WebSocket upgrade")
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(withCaller(r.Context(), who))
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	resp, _ := s.handle(ctx, nil, data)
	if resp == nil { // a notification
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(resp)
}

// unauthorized answers a request without a valid token.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="contextd"`)
	writeHTTPError(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or wrong token (Authorization: Bearer <token>)")
}

// readPOST reads the body of a POST declared JSON, of at most limit
// bytes. When it cannot, it answers 405 (with hint), 415, 413 or 400 and
// returns false.
func readPOST(w http.ResponseWriter, r *http.Request, limit int64, hint string) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeHTTPError(w, http.StatusMethodNotAllowed, api.CodeInvalidRequest, hint)
		return nil, false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeHTTPError(w, http.StatusUnsupportedMediaType, api.CodeInvalidRequest, "Content-Type must be application/json")
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeHTTPError(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("request is larger than %d bytes", limit))
			return nil, false
		}
		writeHTTPError(w, http.StatusBadRequest, api.CodeInvalidRequest, "reading request: "+err.Error())
		return nil, false
	}
	return data, true
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// writeHTTPError writes a JSON-RPC error response (id null) with an HTTP
// status, for failures before a request could be read.
func writeHTTPError(w http.ResponseWriter, status int, code api.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(errorResponse(nil, &api.Error{Code: code, Message: msg}))
}
