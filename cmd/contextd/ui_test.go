package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/internal/browser"
	"github.com/contextd/contextd/rpc/api"
)

// TestChatPageTwoDaemons is issue 9's browser acceptance: two daemons, a
// page on each in headless Chromium (logged in through `contextd ui`); a
// room created on one page and joined by ID on the other; a line typed in
// one appears in the other, and is there again after a reload.
func TestChatPageTwoDaemons(t *testing.T) {
	c := newCluster(t)
	a, _ := c.start("a")
	b, clB := c.start("b")
	if err := clB.Connect(c.ctx, a.Addrs[0]); err != nil {
		t.Fatal(err)
	}

	br, err := browser.Start(c.ctx, "chromium")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	open := func(name string, url string) *browser.Page {
		t.Helper()
		if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.Contains(url, "/#login=") {
			t.Fatalf("contextd ui printed %q", url)
		}
		p, err := br.NewPage(c.ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	pageA := open("a", strings.TrimSpace(c.cli(a, "ui")))
	pageB := open("b", strings.TrimSpace(c.cli(b, "ui")))
	wait := func(p *browser.Page, what, cond string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
		defer cancel()
		if err := p.WaitFor(ctx, cond); err != nil {
			var status string
			p.Eval(c.ctx, `document.getElementById('status').textContent + ' | ' + document.getElementById('error').textContent`, &status)
			t.Fatalf("waiting for %s: %v (page status: %s)\nchromium log:\n%s", what, err, status, br.Log())
		}
	}
	typeLine := func(p *browser.Page, id, text string) {
		t.Helper()
		if err := p.Type(c.ctx, id, text); err != nil {
			t.Fatal(err)
		}
	}
	const connected = `document.getElementById('status').textContent === 'connected' && location.hash === ''`
	const roomOpen = `!document.getElementById('compose-text').disabled && document.querySelector('#rooms li.active')`
	shown := func(text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === %q)`, text)
	}
	wait(pageA, "page a connected", connected)
	wait(pageB, "page b connected", connected)

	typeLine(pageA, "create-name", "lobby")
	wait(pageA, "the room open on a", roomOpen)
	var roomID string
	if err := pageA.Eval(c.ctx, `document.getElementById('room-id').textContent`, &roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := feed.ParseID(roomID); err != nil {
		t.Fatalf("room ID %q: %v", roomID, err)
	}
	typeLine(pageB, "join-id", roomID)
	wait(pageB, "the room open on b", roomOpen)

	typeLine(pageA, "compose-text", "hello from a")
	wait(pageB, "a's line on b", shown("hello from a"))
	typeLine(pageB, "compose-text", "hello from b")
	wait(pageA, "b's line on a", shown("hello from b"))

	if err := pageB.Reload(c.ctx); err != nil {
		t.Fatal(err)
	}
	wait(pageB, "both lines on b after a reload", connected+` && `+shown("hello from a")+` && `+shown("hello from b"))
}

// TestTokenCLI: `token create` mints a scoped token that works within its
// scope and gets "not allowed" outside it; `token revoke` makes it 401.
func TestTokenCLI(t *testing.T) {
	c := newCluster(t)
	a, _ := c.start("a")
	id, secret, ok := strings.Cut(strings.TrimSpace(c.cli(a, "token", "create", "--scope", "contexts:read,feeds:read", "--label", "bot")), " ")
	if !ok {
		t.Fatal("token create printed no ID and token")
	}
	if list := c.cli(a, "token", "list"); !strings.HasPrefix(list, id+" ") || !strings.Contains(list, " contexts:read,feeds:read bot") || strings.Contains(list, secret) {
		t.Fatalf("token list: %q", list)
	}
	post := func(method string) (int, api.Response) {
		t.Helper()
		req, _ := http.NewRequestWithContext(c.ctx, http.MethodPost, "http://"+a.RPC+api.Path,
			bytes.NewReader(fmt.Appendf(nil, `{"jsonrpc":"2.0","id":1,"method":%q,"params":{"id":%q}}`, method, a.ID)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r api.Response
		json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	if status, r := post(api.MethodFeedHead); status != http.StatusOK || r.Error != nil {
		t.Fatalf("feed.head with the token: HTTP %d %+v", status, r.Error)
	}
	if status, r := post(api.MethodGraphFollow); status != http.StatusOK || r.Error == nil || r.Error.Code != api.CodeNotAllowed {
		t.Fatalf("graph.follow with the token: HTTP %d %+v", status, r.Error)
	}
	if got := c.cli(a, "token", "revoke", id); got != "revoked "+id+"\n" {
		t.Fatalf("token revoke printed %q", got)
	}
	if status, _ := post(api.MethodFeedHead); status != http.StatusUnauthorized {
		t.Fatalf("revoked token: HTTP %d", status)
	}
	if list := c.cli(a, "token", "list"); list != "" {
		t.Fatalf("token list after revoke: %q", list)
	}
}
