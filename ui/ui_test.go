package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/browser"
	"github.com/contextd/contextd/rpc"
	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
	"github.com/contextd/contextd/tokens"
	"github.com/contextd/contextd/ui"
)

const adminToken = "admin-secret"

func TestHandler(t *testing.T) {
	ts := httptest.NewServer(ui.Handler())
	defer ts.Close()
	for path, ctype := range map[string]string{"/": "text/html", "/app.js": "javascript", "/style.css": "text/css"} {
		resp, err := ts.Client().Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), ctype) || len(b) == 0 {
			t.Fatalf("GET %s: HTTP %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Fatalf("GET %s: CSP %q", path, csp)
		}
	}
	resp, err := ts.Client().Post(ts.URL+"/", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: HTTP %d", resp.StatusCode)
	}
}

// adminCall calls method over POST with the admin token and decodes the
// result into out.
func adminCall(t *testing.T, base, method string, params, out any) {
	t.Helper()
	p, _ := json.Marshal(params)
	req, _ := http.NewRequest(http.MethodPost, base+api.Path, strings.NewReader(fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":%q,"params":%s}`, method, p)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r api.Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Error != nil {
		t.Fatalf("%s: %v %v", method, err, r.Error)
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
}

// loginURL mints a login code with the admin token, as `contextd ui` does.
func loginURL(t *testing.T, base string) string {
	t.Helper()
	var lc api.LoginCode
	adminCall(t, base, api.MethodTokenLogin, nil, &lc)
	return base + "/#login=" + lc.Code
}

// cutter is a listener that can close every connection it accepted.
type cutter struct {
	net.Listener
	mu    sync.Mutex // guards conns and n
	conns []net.Conn
	n     int // connections accepted since the last cut
}

func (l *cutter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.n++
		l.mu.Unlock()
	}
	return c, err
}

func (l *cutter) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns, l.n = nil, 0
}

func (l *cutter) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// TestChatPage runs the page in headless Chromium against an RPC server
// over the fake node: log in with a code, create a room, send a line, see
// it and another author's message live, reload and see them again; across a cut connection see
// what was sent meanwhile, once; once
// its token is revoked, the page asks to log in again.
func TestChatPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := tokens.Open(filepath.Join(t.TempDir(), tokens.FileName))
	if err != nil {
		t.Fatal(err)
	}
	node := rpctest.NewNode()
	// Few subscriptions per connection, so that a page that leaks them
	// runs out.
	const maxSubs = 4
	srv := rpc.New(rpc.Config{Node: node, Token: adminToken, Tokens: store, Pages: ui.Handler(), MaxSubs: maxSubs})
	hs := httptest.NewUnstartedServer(srv)
	ln := &cutter{Listener: hs.Listener}
	hs.Listener = ln
	hs.Start()
	defer hs.Close()
	defer srv.Close()

	b, err := browser.Start(ctx, "chromium")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p, err := b.NewPage(ctx, loginURL(t, hs.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	wait := func(what, cond string) {
		t.Helper()
		if err := p.WaitFor(ctx, cond); err != nil {
			var status string
			p.Eval(ctx, `document.getElementById('status').textContent + ' | ' + document.getElementById('error').textContent`, &status)
			t.Fatalf("waiting for %s: %v (page status: %s)\nchromium log:\n%s", what, err, status, b.Log())
		}
	}
	wait("connected", `document.getElementById('status').textContent === 'connected' && location.hash === ''`)

	if err := p.Type(ctx, "create-name", "lobby"); err != nil {
		t.Fatal(err)
	}
	wait("the new room open", `!document.getElementById('compose-text').disabled && document.querySelector('#rooms li.active')`)
	var roomID string
	if err := p.Eval(ctx, `document.getElementById('room-id').textContent`, &roomID); err != nil {
		t.Fatal(err)
	}
	room, err := feed.ParseID(roomID)
	if err != nil {
		t.Fatalf("room ID %q: %v", roomID, err)
	}

	line := `hello <b>world</b> & "you"`
	if err := p.Type(ctx, "compose-text", line); err != nil {
		t.Fatal(err)
	}
	other := rpctest.KeyFor(3)
	if _, err := node.AddContextMessage(room, other, []byte("from elsewhere")); err != nil {
		t.Fatal(err)
	}
	shown := func(text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === %q)`, text)
	}
	both := shown(line) + ` && ` + shown("from elsewhere")
	wait("both messages", both)
	var bold int
	if err := p.Eval(ctx, `document.querySelectorAll('#messages b').length`, &bold); err != nil || bold != 0 {
		t.Fatalf("message text became HTML: %d <b> elements, %v", bold, err)
	}
	var author string
	p.Eval(ctx, fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].find((e) => e.querySelector('.text').textContent === %q).querySelector('.author').textContent`, "from elsewhere"), &author)
	if author != other.Public().Short() {
		t.Fatalf("author shown as %q, want %q", author, other.Public().Short())
	}

	// Opening the open room again (a click on it, a join of it) keeps its
	// one subscription: no error, however often.
	var failed []string
	reopen := fmt.Sprintf(`Promise.allSettled([...Array(%d)].map(() => openRoom(state.room.id)))
		.then((rs) => rs.filter((r) => r.status === 'rejected').map((r) => r.reason.message))`, 2*maxSubs)
	if err := p.Eval(ctx, reopen, &failed); err != nil || len(failed) != 0 {
		t.Fatalf("opening the open room again: %v %q", err, failed)
	}

	if err := p.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	wait("both messages after a reload", `document.getElementById('status').textContent === 'connected' && `+both+
		` && document.querySelectorAll('#messages .msg').length === 2`)

	// Cut every connection: the page reconnects and resumes from its
	// cursor, so a message sent meanwhile shows once and nothing doubles.
	ln.cut()
	if _, err := node.AddContextMessage(room, other, []byte("while away")); err != nil {
		t.Fatal(err)
	}
	wait("the page back after a cut", `document.getElementById('status').textContent === 'connected' && `+shown("while away")+
		` && document.querySelectorAll('#messages .msg').length === 3`)
	if ln.accepted() < 2 {
		t.Fatal("the page did not reconnect")
	}

	var list api.TokensResult
	adminCall(t, hs.URL, api.MethodTokenList, nil, &list)
	if len(list.Tokens) != 1 || list.Tokens[0].Label != "browser login" {
		t.Fatalf("tokens after a login: %+v", list.Tokens)
	}
	adminCall(t, hs.URL, api.MethodTokenRevoke, api.TokenParams{ID: list.Tokens[0].ID}, &api.Empty{})
	wait("the login prompt", `!document.getElementById('login').hidden && localStorage.getItem('contextd.token') === null`)
}
