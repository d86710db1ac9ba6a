package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/contextd/contextd/rpc/api"
)

// Defaults of Config.
const (
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 5 * time.Second
	DefaultPingInterval = 30 * time.Second
	DefaultSubBuffer    = 256
	// writeTimeout bounds writing one request; a connection that cannot
	// take a small message in this time is dropped and redialled.
	writeTimeout = 10 * time.Second
)

var (
	// ErrClosed is returned by calls on a closed Client or Subscription.
	ErrClosed = errors.New("sdk: closed")
	// ErrDisconnected is returned by a call whose connection dropped before
	// its response came: the call may or may not have taken effect.
	ErrDisconnected = errors.New("sdk: connection lost before the response")
)

// Error is an error the server answered: a JSON-RPC error code and its
// message. errors.Is matches it against the api sentinels of its code
// (api.ErrUnknownFeed, feed.ErrTooLarge, ...).
type Error struct {
	Method  string // the RPC method, or "dial"
	Code    api.Code
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (%s, code %d)", e.Method, e.Message, e.Code, int(e.Code))
}

// Is reports whether target is an api sentinel of e's code.
func (e *Error) Is(target error) bool { return e.Code.Matches(target) }

// Config configures a Client. Zero values mean defaults.
type Config struct {
	// Addr is the daemon's RPC address, "host:port"; a ws:// or wss://
	// URL is used as is.
	Addr   string
	Token  string
	Logger *slog.Logger

	// Reconnect backoff: the first retry waits MinBackoff, each next one
	// twice as long, up to MaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is the keepalive period; a pong must come within it.
	PingInterval time.Duration
	// SubBuffer is how many entries a Subscription buffers for Next. A
	// subscriber that falls further behind is detached from the server
	// and resumed from its cursor once it catches up.
	SubBuffer  int
	HTTPClient *http.Client
}

func (c *Config) fill() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(DefaultMaxBackoff, c.MinBackoff)
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.SubBuffer <= 0 {
		c.SubBuffer = DefaultSubBuffer
	}
}

// Client is a connection to a contextd daemon over WebSocket. It redials
// when the connection drops and resumes its subscriptions from their
// cursors. It is safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	url    string
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // run, pingers, subscription managers

	mu      sync.Mutex    // guards the fields below
	conn    *conn         // nil while redialling
	ready   chan struct{} // closed once conn is set
	subs    map[subscriber]struct{}
	lastErr error // of the last failed dial
	failed  error // set when the daemon refused the token: the Client is done
	nextID  uint64
	// progress maps an object.get's progress token to its callback.
	progress map[string]func(done, total int64)
}

// conn is one WebSocket connection; its reader is run's loop.
type conn struct {
	ws     *websocket.Conn
	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	mu      sync.Mutex // guards pending and subs
	pending map[uint64]*pending
	subs    map[string]subscriber // server subscription ID → subscription
}

type pending struct {
	resp chan api.Response // capacity 1
	// onResult runs in the reader, before any later message is read (used
	// to attach a subscription before its first notification).
	onResult func(*conn, api.Response)
}

// Dial connects to the daemon at addr ("host:port") with token.
func Dial(ctx context.Context, addr, token string) (*Client, error) {
	return DialConfig(ctx, Config{Addr: addr, Token: token})
}

// DialConfig connects as configured by cfg. The first connection must
// succeed; later ones are retried with backoff until Close.
func DialConfig(ctx context.Context, cfg Config) (*Client, error) {
	cfg.fill()
	url := cfg.Addr
	if !strings.Contains(url, "://") {
		url = "ws://" + url + api.Path
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		url:      url,
		ctx:      cctx,
		cancel:   cancel,
		ready:    make(chan struct{}),
		subs:     make(map[subscriber]struct{}),
		progress: make(map[string]func(done, total int64)),
	}
	first, err := c.dial(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c.wg.Add(1)
	go c.run(first)
	return c, nil
}

// Close closes the connection, ends every subscription and waits for the
// Client's goroutines.
func (c *Client) Close() error {
	c.cancel()
	c.mu.Lock()
	subs := make([]subscriber, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		s.end(ErrClosed)
	}
	c.wg.Wait()
	return nil
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	hdr := http.Header{"Authorization": {"Bearer " + c.cfg.Token}}
	ws, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: c.cfg.HTTPClient})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, httpError(resp)
		}
		return nil, fmt.Errorf("sdk: dial %s: %w", c.url, err)
	}
	ws.SetReadLimit(api.MaxMessageSize)
	ctx, cancel := context.WithCancel(c.ctx)
	return &conn{
		ws:      ws,
		ctx:     ctx,
		cancel:  cancel,
		pending: make(map[uint64]*pending),
		subs:    make(map[string]subscriber),
	}, nil
}

// httpError turns a refused WebSocket handshake into an *Error, using the
// JSON-RPC error in its body when there is one.
func httpError(resp *http.Response) error {
	e := &Error{Method: "dial", Code: api.CodeUnavailable, Message: resp.Status}
	if resp.StatusCode == http.StatusUnauthorized {
		e.Code = api.CodeUnauthorized
	}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		var r api.Response
		if json.Unmarshal(b, &r) == nil && r.Error != nil {
			e.Code, e.Message = r.Error.Code, r.Error.Message
		}
	}
	return e
}

// run owns the connections: it reads the current one until it drops, then
// redials with backoff, until Close.
func (c *Client) run(cn *conn) {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		c.conn = cn
		close(c.ready)
		c.mu.Unlock()

		c.wg.Add(1)
		go c.pinger(cn)
		err := c.read(cn)
		c.log.Debug("sdk: connection lost", "err", err)
		c.drop(cn)

		if cn = c.redial(); cn == nil {
			return
		}
	}
}

// drop tears down a dead connection: pending calls fail, subscriptions
// attached to it are told to resubscribe.
func (c *Client) drop(cn *conn) {
	cn.cancel()
	cn.ws.CloseNow()
	c.mu.Lock()
	c.conn = nil
	c.ready = make(chan struct{})
	c.mu.Unlock()

	cn.mu.Lock()
	pend := cn.pending
	cn.pending = nil
	subs := cn.subs
	cn.subs = nil
	cn.mu.Unlock()
	for _, p := range pend {
		close(p.resp)
	}
	for _, s := range subs {
		s.detach(cn)
	}
}

// fail ends the Client for good with err: calls and subscriptions fail
// with it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	c.failed = err
	close(c.ready) // wakes the calls waiting for a connection
	subs := make([]subscriber, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	c.log.Info("sdk: the daemon refused the token; giving up", "err", err)
	for _, s := range subs {
		s.end(err)
	}
}

// redial dials until it succeeds, the daemon refuses the token or the
// Client is closed (nil for the last two).
func (c *Client) redial() *conn {
	backoff := c.cfg.MinBackoff
	for {
		t := time.NewTimer(backoff)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, max(backoff, 5*time.Second))
		cn, err := c.dial(ctx)
		cancel()
		if err == nil {
			c.log.Debug("sdk: reconnected", "url", c.url)
			return cn
		}
		if errors.Is(err, api.ErrUnauthorized) {
			// The token was revoked: no redial will succeed.
			c.fail(err)
			return nil
		}
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		c.log.Debug("sdk: redial failed", "err", err, "backoff", backoff)
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

func (c *Client) pinger(cn *conn) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-cn.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(cn.ctx, c.cfg.PingInterval)
		err := cn.ws.Ping(ctx)
		cancel()
		if err != nil {
			cn.cancel() // ends read
			return
		}
	}
}

// read handles messages of cn until it fails.
func (c *Client) read(cn *conn) error {
	for {
		_, data, err := cn.ws.Read(cn.ctx)
		if err != nil {
			return err
		}
		c.handle(cn, data)
	}
}

// message is any message from the server.
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *api.Error      `json:"error"`
}

// handle dispatches one message from the server; malformed ones are
// logged and dropped.
func (c *Client) handle(cn *conn, data []byte) {
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		c.log.Debug("sdk: malformed message", "err", err)
		return
	}
	switch m.Method {
	case "":
		id, err := strconv.ParseUint(string(m.ID), 10, 64)
		if err != nil {
			if m.Error != nil {
				c.log.Debug("sdk: server error without id", "err", m.Error)
			}
			return
		}
		cn.mu.Lock()
		p := cn.pending[id]
		delete(cn.pending, id)
		cn.mu.Unlock()
		if p == nil {
			return
		}
		r := api.Response{ID: m.ID, Result: m.Result, Error: m.Error}
		if p.onResult != nil {
			p.onResult(cn, r)
		}
		p.resp <- r
	case api.NotifyObjectProgress:
		var n api.ObjectProgress
		if err := json.Unmarshal(m.Params, &n); err != nil {
			c.log.Debug("sdk: malformed object.progress", "err", err)
			return
		}
		c.mu.Lock()
		f := c.progress[n.Progress]
		c.mu.Unlock()
		if f != nil {
			f(n.Done, n.Total)
		}
	case api.NotifyFeedEntry, api.NotifyFeedEnd, api.NotifyContextMessage, api.NotifyContextDatagram, api.NotifyContextEnd,
		api.NotifyStreamChunk, api.NotifyStreamEnd:
		var n struct {
			Subscription string `json:"subscription"`
		}
		if err := json.Unmarshal(m.Params, &n); err != nil {
			c.log.Debug("sdk: malformed notification", "method", m.Method, "err", err)
			return
		}
		if s := cn.sub(n.Subscription); s != nil {
			s.notify(cn, n.Subscription, m.Method, m.Params)
		}
	}
}

func (cn *conn) sub(id string) subscriber {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.subs[id]
}

// current waits for a live connection.
func (c *Client) current(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready, lastErr, failed := c.conn, c.ready, c.lastErr, c.failed
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return nil, ErrClosed
		}
		if failed != nil {
			return nil, failed
		}
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-c.ctx.Done():
			return nil, ErrClosed
		case <-ctx.Done():
			if lastErr != nil {
				return nil, fmt.Errorf("%w (reconnecting: %v)", ctx.Err(), lastErr)
			}
			return nil, ctx.Err()
		}
	}
}

// Call calls method with params and decodes its result into result (nil
// to ignore it). Server errors are *Error. Typed methods cover every
// method of api; Call is for the rest.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	return c.call(ctx, method, params, result, nil)
}

func (c *Client) call(ctx context.Context, method string, params, result any, onResult func(*conn, api.Response)) error {
	var raw json.RawMessage
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return fmt.Errorf("sdk: %s: encoding params: %w", method, err)
		}
		raw = b
	}
	cn, err := c.current(ctx)
	if err != nil {
		return fmt.Errorf("sdk: %s: %w", method, err)
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.mu.Unlock()
	p := &pending{resp: make(chan api.Response, 1), onResult: onResult}
	cn.mu.Lock()
	if cn.pending == nil {
		cn.mu.Unlock()
		return fmt.Errorf("sdk: %s: %w", method, ErrDisconnected)
	}
	cn.pending[id] = p
	cn.mu.Unlock()
	forget := func() {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
	}

	msg, _ := json.Marshal(api.Request{JSONRPC: api.Version, ID: json.RawMessage(strconv.FormatUint(id, 10)), Method: method, Params: raw})
	// Not ctx: a write cancelled halfway would kill the connection.
	wctx, cancel := context.WithTimeout(cn.ctx, writeTimeout)
	err = cn.ws.Write(wctx, websocket.MessageText, msg)
	cancel()
	if err != nil {
		forget()
		cn.cancel()
		return fmt.Errorf("sdk: %s: %w", method, ErrDisconnected)
	}
	var r api.Response
	var ok bool
	select {
	case r, ok = <-p.resp:
		if !ok {
			return fmt.Errorf("sdk: %s: %w", method, ErrDisconnected)
		}
	case <-ctx.Done():
		forget()
		return fmt.Errorf("sdk: %s: %w", method, ctx.Err())
	}
	if r.Error != nil {
		return &Error{Method: method, Code: r.Error.Code, Message: r.Error.Message}
	}
	if result != nil {
		if err := json.Unmarshal(r.Result, result); err != nil {
			return fmt.Errorf("sdk: %s: decoding result: %w", method, err)
		}
	}
	return nil
}
