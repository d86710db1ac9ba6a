package rpc

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/contextd/contextd/internal/limit"
)

// Defaults of Config's connection limits.
const (
	DefaultMaxConns        = 1024 // open connections, all addresses together
	DefaultMaxConnsPerAddr = 256  // open connections per remote address
	maxAddrBans            = 4096 // addresses refused at once
)

// The API's abuse limits. Each connection counts against MaxConns and its
// remote address's MaxConnsPerAddr from accept to close (a WebSocket is
// one connection): past either, a new connection is closed at once. A
// request without a valid token gets 401 at once, with its connection
// closed after the answer, and is a strike of its address
// (Config.AuthPolicy); an address past its strikes is refused for the
// cool-down (each refusal logged at Info once), except loopback
// addresses, which a local process could otherwise lock the owner out
// of. Slow requests are bounded by the HTTP server's timeouts (Serve).

// limits holds the Server's per-address state.
type limits struct {
	strikes *limit.Guard[string] // 401s per address
	bans    *limit.Bans[string]  // addresses refused until their cool-down ends

	mu    sync.Mutex // guards total and open
	total int
	open  map[string]int // open connections per address
}

func newLimits(cfg Config) *limits {
	return &limits{
		strikes: limit.NewGuard[string](cfg.AuthPolicy),
		bans:    limit.NewBans[string](maxAddrBans),
		open:    map[string]int{},
	}
}

// hostOf returns the IP of addr, a host:port (addr itself if it has no
// port).
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// unauthorized answers a request without a valid token (401, closing its
// connection) and counts a strike of its address.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Connection", "close")
	unauthorized(w)
	host := hostOf(r.RemoteAddr)
	now := time.Now()
	if !s.lim.strikes.Strike(now, host) || isLoopback(host) {
		return
	}
	if s.lim.bans.Ban(now, host, now.Add(s.cfg.AuthPolicy.Cooldown)) {
		s.log.Info("rpc: address refused: too many requests without a valid token", "addr", host, "refused_for", s.cfg.AuthPolicy.Cooldown)
	}
}

// limitListener applies the connection limits to what ln accepts.
func (s *Server) limitListener(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, s: s}
}

type limitedListener struct {
	net.Listener
	s *Server
}

// Accept returns the next connection within the limits, closing those
// beyond them and those of refused addresses.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host := hostOf(c.RemoteAddr().String())
		if l.s.lim.bans.Banned(time.Now(), host) {
			c.Close()
			continue
		}
		if !l.s.lim.take(host, l.s.cfg) {
			l.s.log.Debug("rpc: connection refused: too many open", "addr", host)
			c.Close()
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.s.lim.release(host) }}, nil
	}
}

// take counts a new connection from host, if within the limits.
func (lm *limits) take(host string, cfg Config) bool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if lm.total >= cfg.MaxConns || lm.open[host] >= cfg.MaxConnsPerAddr {
		return false
	}
	lm.total++
	lm.open[host]++
	return true
}

func (lm *limits) release(host string) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.total--
	if lm.open[host]--; lm.open[host] <= 0 {
		delete(lm.open, host)
	}
}

// limitedConn gives its slot back when it is closed (by the HTTP server,
// or by a WebSocket that hijacked it).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
