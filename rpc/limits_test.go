package rpc

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/internal/limit"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// infoRequest posts node.info to addr with token, on a connection of its
// own, and returns the HTTP status (0 if the request failed).
func infoRequest(addr, token string) int {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+api.Path,
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"node.info"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestConnLimits: connections past MaxConnsPerAddr are closed at once; a
// slot freed is taken again.
func TestConnLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := New(Config{Node: rpctest.NewNode(), Token: testToken, MaxConnsPerAddr: 2})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	if got := infoRequest(addr, testToken); got != http.StatusOK {
		t.Fatalf("a first request: HTTP %d", got)
	}
	// Its connection's slot is given back once the server closed it.
	deadline := time.Now().Add(10 * time.Second)
	for srv.lim.openConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection was not given back")
		}
		time.Sleep(time.Millisecond)
	}
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	// Both slots are taken once the server accepted both: a third
	// connection is closed without an answer.
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(deadline)
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a third connection was not closed: %v", err)
		}
	}
	if got := infoRequest(addr, testToken); got != 0 {
		t.Fatalf("a request past the limit: HTTP %d", got)
	}
	// A slot freed is taken again.
	idle[0].Close()
	for infoRequest(addr, testToken) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("no request served after a connection closed")
		}
	}
}

// openConns returns the connections open now.
func (lm *limits) openConns() int {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return lm.total
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && strings.Contains(ne.Err.Error(), "reset")
}

// TestUnauthorizedStrikes: requests without a valid token get 401 and
// close their connection; an address past its strikes is refused at
// accept for the cool-down; loopback never is.
func TestUnauthorizedStrikes(t *testing.T) {
	pol := limit.Policy{Strikes: 3, Forgive: 10 * time.Second, Cooldown: time.Minute}
	srv := New(Config{Node: rpctest.NewNode(), Token: testToken, AuthPolicy: pol})
	defer srv.Close()
	bad := func(remote string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, api.Path, strings.NewReader(`{}`))
		r.RemoteAddr = remote
		r.Header.Set("Authorization", "Bearer wrong")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		return w
	}
	for i := range pol.Strikes + 1 {
		w := bad("192.0.2.7:4000")
		if w.Code != http.StatusUnauthorized || w.Header().Get("Connection") != "close" {
			t.Fatalf("bad request %d: HTTP %d, Connection %q", i, w.Code, w.Header().Get("Connection"))
		}
	}
	for range 100 {
		bad("127.0.0.1:4000")
	}
	now := time.Now()
	if !srv.lim.bans.Banned(now, "192.0.2.7") {
		t.Fatal("an address past its strikes is not refused")
	}
	if srv.lim.bans.Banned(now, "127.0.0.1") {
		t.Fatal("loopback was refused")
	}

	// The listener closes the refused address's connections and passes
	// the others'.
	fl := &fakeListener{conns: make(chan net.Conn, 2)}
	refused, passed := addrConn("192.0.2.7:5000"), addrConn("192.0.2.8:5000")
	fl.conns <- refused
	fl.conns <- passed
	got, err := srv.limitListener(fl).Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got.RemoteAddr().String() != "192.0.2.8:5000" || !refused.closed {
		t.Fatalf("accepted %v (refused one closed: %v)", got.RemoteAddr(), refused.closed)
	}
	got.Close()
}

// fakeListener accepts the connections put in conns.
type fakeListener struct{ conns chan net.Conn }

func (l *fakeListener) Accept() (net.Conn, error) { return <-l.conns, nil }
func (l *fakeListener) Close() error              { return nil }
func (l *fakeListener) Addr() net.Addr            { return &net.TCPAddr{} }

// fakeConn is a connection from a given remote address.
type fakeConn struct {
	net.Conn
	remote net.Addr
	closed bool
}

func addrConn(remote string) *fakeConn {
	a, _ := net.ResolveTCPAddr("tcp", remote)
	c, _ := net.Pipe()
	return &fakeConn{Conn: c, remote: a}
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.closed = true; return c.Conn.Close() }
