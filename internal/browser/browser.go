package browser

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// flags are the Chromium flags Start uses besides the profile directory:
// headless, no sandbox (CI runs as root), nothing that calls home.
var flags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--remote-debugging-port=0", "about:blank",
}

// maxMessage bounds one DevTools message read.
const maxMessage = 16 << 20

// Browser is a running Chromium.
type Browser struct {
	cmd  *exec.Cmd
	dir  string // the temporary profile
	http string // http://host:port of the DevTools endpoint
	done chan struct{}

	mu     sync.Mutex // guards stderr
	stderr strings.Builder
}

// Start runs bin (e.g. "chromium") headless with a new temporary profile
// and waits until its DevTools endpoint listens.
func Start(ctx context.Context, bin string) (*Browser, error) {
	dir, err := os.MkdirTemp("", "contextd-chromium-")
	if err != nil {
		return nil, fmt.Errorf("browser: profile dir: %w", err)
	}
	cmd := exec.Command(bin, append([]string{"--user-data-dir=" + dir}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("browser: start %s: %w", bin, err)
	}
	b := &Browser{cmd: cmd, dir: dir, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			b.stderr.WriteString(line + "\n")
			b.mu.Unlock()
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				found <- u
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
	}()
	select {
	case u := <-found:
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("browser: DevTools URL %q: %w", u, err)
		}
		b.http = "http://" + pu.Host
		return b, nil
	case <-b.done:
		b.Close()
		return nil, fmt.Errorf("browser: %s exited before its DevTools endpoint listened:\n%s", bin, b.Log())
	case <-ctx.Done():
		b.Close()
		return nil, fmt.Errorf("browser: waiting for DevTools: %w", ctx.Err())
	}
}

// Log returns what Chromium wrote to stderr so far.
func (b *Browser) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// Close ends Chromium and removes its profile.
func (b *Browser) Close() {
	b.cmd.Process.Kill()
	<-b.done
	os.RemoveAll(b.dir)
}

// NewPage opens a new tab on pageURL and connects to it.
func (b *Browser) NewPage(ctx context.Context, pageURL string) (*Page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, b.http+"/json/new?"+url.QueryEscape(pageURL), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("browser: new tab: %w", err)
	}
	defer resp.Body.Close()
	var target struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&target); err != nil || target.WebSocketDebuggerURL == "" {
		return nil, fmt.Errorf("browser: new tab: HTTP %d, %v", resp.StatusCode, err)
	}
	ws, _, err := websocket.Dial(ctx, target.WebSocketDebuggerURL, nil)
	if err != nil {
		return nil, fmt.Errorf("browser: connect to tab: %w", err)
	}
	ws.SetReadLimit(maxMessage)
	cctx, cancel := context.WithCancel(context.Background())
	p := &Page{ws: ws, ctx: cctx, cancel: cancel, pending: make(map[int64]chan response), done: make(chan struct{})}
	go p.read()
	return p, nil
}

// Page is one tab.
type Page struct {
	ws     *websocket.Conn
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when read returned

	mu      sync.Mutex // guards next, pending and err
	next    int64
	pending map[int64]chan response
	err     error // why the connection ended
}

type response struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// read dispatches responses to their calls; events are ignored.
func (p *Page) read() {
	defer close(p.done)
	var err error
	for {
		var data []byte
		if _, data, err = p.ws.Read(p.ctx); err != nil {
			break
		}
		var msg struct {
			ID int64 `json:"id"`
			response
		}
		if json.Unmarshal(data, &msg) != nil || msg.ID == 0 {
			continue
		}
		p.mu.Lock()
		ch := p.pending[msg.ID]
		delete(p.pending, msg.ID)
		p.mu.Unlock()
		if ch != nil {
			ch <- msg.response
		}
	}
	p.mu.Lock()
	p.err = fmt.Errorf("browser: tab connection ended: %w", err)
	for id, ch := range p.pending {
		delete(p.pending, id)
		close(ch)
	}
	p.mu.Unlock()
}

// Call sends a DevTools command and decodes its result into out (if not
// nil).
func (p *Page) Call(ctx context.Context, method string, params, out any) error {
	ch := make(chan response, 1)
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return p.err
	}
	p.next++
	id := p.next
	p.pending[id] = ch
	p.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err := p.ws.Write(ctx, websocket.MessageText, msg); err != nil {
		return fmt.Errorf("browser: %s: %w", method, err)
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return p.err
		}
		if r.Error != nil {
			return fmt.Errorf("browser: %s: %s (%d)", method, r.Error.Message, r.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
		return fmt.Errorf("browser: %s: %w", method, ctx.Err())
	}
}

// Eval evaluates a JavaScript expression in the page, awaiting it if it is
// a promise, and decodes its value (JSON) into out (if not nil).
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.Call(ctx, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if err != nil {
		return err
	}
	if d := r.ExceptionDetails; d != nil {
		return fmt.Errorf("browser: script threw: %s %s", d.Text, d.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// WaitFor waits until the JavaScript expression cond is truthy in the
// page (the page checks it every 50 ms) or ctx is done. An evaluation cut
// short by a navigation (a reload) is tried again in the new document.
func (p *Page) WaitFor(ctx context.Context, cond string) error {
	expr := `new Promise((resolve) => {
		const check = () => { let ok = false; try { ok = !!(` + cond + `); } catch (e) {} if (ok) resolve(true); else setTimeout(check, 50); };
		check();
	})`
	for {
		err := p.Eval(ctx, expr, nil)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("browser: waiting for %s: %w", cond, ctx.Err())
		case !strings.Contains(err.Error(), "context"):
			// Not "Execution context was destroyed" nor "Cannot find
			// context": a real failure.
			return err
		}
	}
}

// Type focuses the element with id and types text into it as key presses
// would, then presses Enter.
func (p *Page) Type(ctx context.Context, id, text string) error {
	if err := p.Eval(ctx, fmt.Sprintf(`document.getElementById(%q).focus()`, id), nil); err != nil {
		return err
	}
	if err := p.Call(ctx, "Input.insertText", map[string]any{"text": text}, nil); err != nil {
		return err
	}
	for _, typ := range []string{"keyDown", "keyUp"} {
		ev := map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
		if typ == "keyDown" {
			ev["text"] = "\r"
		}
		if err := p.Call(ctx, "Input.dispatchKeyEvent", ev, nil); err != nil {
			return err
		}
	}
	return nil
}

// Reload reloads the page (the promise of WaitFor spans the navigation).
func (p *Page) Reload(ctx context.Context) error {
	return p.Call(ctx, "Page.reload", map[string]any{"ignoreCache": true}, nil)
}

// Close disconnects from the tab.
func (p *Page) Close() {
	p.cancel()
	p.ws.CloseNow()
	<-p.done
}
