package rpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// send sends method to path on the server with token and contentType
// (none if empty) and body, and returns the response with its body read.
func (e *testEnv) send(t *testing.T, method, path, token, contentType string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, b
}

// TestObjectEndpoints: an object POSTed to /objects is stored pinned and
// comes back from GET /objects/CID byte for byte.
func TestObjectEndpoints(t *testing.T) {
	e := newEnv(t, Config{})
	data := bytes.Repeat([]byte("contextd "), 5000) // 45 000 bytes, 3 chunks
	resp, b := e.send(t, http.MethodPost, api.ObjectsPath, testToken, "", bytes.NewReader(data))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	put := result[api.ObjectPutResult](t, api.Response{JSONRPC: api.Version, Result: b})
	if put.Size != int64(len(data)) || put.Chunks != 3 {
		t.Fatalf("POST: %+v", put)
	}
	if st := result[api.Object](t, e.call(t, api.MethodObjectStat, api.ObjectParams{CID: put.CID})); !st.Pinned {
		t.Fatalf("stat after POST: %+v", st)
	}
	resp, b = e.send(t, http.MethodGet, api.ObjectsPath+"/"+put.CID, testToken, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, data) || resp.ContentLength != int64(len(data)) ||
		resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET: %d, %d bytes, Content-Length %d, %s", resp.StatusCode, len(b), resp.ContentLength, resp.Header.Get("Content-Type"))
	}
	// The empty object too.
	resp, b = e.send(t, http.MethodPost, api.ObjectsPath, testToken, "", http.NoBody)
	empty := result[api.ObjectPutResult](t, api.Response{JSONRPC: api.Version, Result: b})
	if resp.StatusCode != http.StatusOK || empty.Size != 0 || empty.Chunks != 1 {
		t.Fatalf("POST of nothing: %d %s", resp.StatusCode, b)
	}
	if resp, b = e.send(t, http.MethodGet, api.ObjectsPath+"/"+empty.CID, testToken, "", nil); resp.StatusCode != http.StatusOK || len(b) != 0 {
		t.Fatalf("GET of the empty object: %d %q", resp.StatusCode, b)
	}
}

// refusal is a request to an object or stream endpoint and how it must
// be refused.
type refusal struct {
	name, method, path, token string
	body                      io.Reader
	status                    int
	code                      api.Code
	msgHas, allow             string
}

// checkRefusals sends each request and checks its status, Allow header
// and JSON-RPC error.
func (e *testEnv) checkRefusals(t *testing.T, rs []refusal) {
	t.Helper()
	for _, tc := range rs {
		resp, b := e.send(t, tc.method, tc.path, tc.token, "", tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: HTTP %d %s, want %d", tc.name, resp.StatusCode, b, tc.status)
			continue
		}
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s: Allow %q, want %q", tc.name, got, tc.allow)
		}
		wantCode(t, decodeResponse(t, b), tc.code, tc.msgHas)
	}
}

// TestObjectEndpointErrors: every refusal answers a status and a JSON-RPC
// error, and stores nothing.
func TestObjectEndpointErrors(t *testing.T) {
	e := newTokenEnv(t, Config{})
	app := e.mint(t, "app", api.AppScopes...).Token
	held, err := e.node.AddObject([]byte("held"))
	if err != nil {
		t.Fatal(err)
	}
	const unknown = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
	before := e.state(t)
	e.checkRefusals(t, []refusal{
		{"no token", http.MethodPost, api.ObjectsPath, "", strings.NewReader("x"), http.StatusUnauthorized, api.CodeUnauthorized, "token", ""},
		{"wrong token", http.MethodGet, api.ObjectsPath + "/" + held.String(), "nope", nil, http.StatusUnauthorized, api.CodeUnauthorized, "token", ""},
		{"app token puts", http.MethodPost, api.ObjectsPath, app, strings.NewReader("x"), http.StatusForbidden, api.CodeNotAllowed, "POST /objects needs scope admin", ""},
		{"app token gets", http.MethodGet, api.ObjectsPath + "/" + held.String(), app, nil, http.StatusForbidden, api.CodeNotAllowed, "GET /objects needs scope admin", ""},
		{"GET /objects", http.MethodGet, api.ObjectsPath, testToken, nil, http.StatusMethodNotAllowed, api.CodeInvalidRequest, "POST", http.MethodPost},
		{"PUT /objects/CID", http.MethodPut, api.ObjectsPath + "/" + held.String(), testToken, strings.NewReader("x"), http.StatusMethodNotAllowed, api.CodeInvalidRequest, "GET", http.MethodGet},
		{"malformed CID", http.MethodGet, api.ObjectsPath + "/notacid", testToken, nil, http.StatusBadRequest, api.CodeInvalidParams, `field "cid"`, ""},
		{"no CID", http.MethodGet, api.ObjectsPath + "/", testToken, nil, http.StatusBadRequest, api.CodeInvalidParams, `"cid" is required`, ""},
		{"unknown object", http.MethodGet, api.ObjectsPath + "/" + unknown, testToken, nil, http.StatusNotFound, api.CodeNotFound, unknown, ""},
		{"too large for the node", http.MethodPost, api.ObjectsPath, testToken, bytes.NewReader(make([]byte, rpctest.MaxObjectSize+1)), http.StatusRequestEntityTooLarge, api.CodeTooLarge, "at most", ""},
	})
	if after := e.state(t); after != before {
		t.Fatalf("refused requests changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

// TestObjectStreamLimit: transfers beyond MaxObjectStreams are refused
// with 503 and CodeLimit while the others run; the slot frees when one
// ends.
func TestObjectStreamLimit(t *testing.T) {
	e := newEnv(t, Config{MaxObjectStreams: 1})
	entered := make(chan struct{}, 1)
	e.node.OnObjectCall(func(method string, _ context.Context) {
		if method == "PutObject" {
			entered <- struct{}{}
		}
	})
	pr, pw := io.Pipe()
	done := make(chan []byte, 1)
	go func() {
		_, b := e.send(t, http.MethodPost, api.ObjectsPath, testToken, "", pr)
		done <- b
	}()
	pw.Write([]byte("first "))
	<-entered // the first upload holds the only slot
	resp, b := e.send(t, http.MethodPost, api.ObjectsPath, testToken, "", strings.NewReader("second"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second upload: %d %s, want 503 with Retry-After", resp.StatusCode, b)
	}
	wantCode(t, decodeResponse(t, b), api.CodeLimit, "1 object transfers")
	pw.Write([]byte("upload"))
	pw.Close()
	first := result[api.ObjectPutResult](t, api.Response{JSONRPC: api.Version, Result: <-done})
	if first.Size != int64(len("first upload")) {
		t.Fatalf("first upload: %+v", first)
	}
	if resp, b := e.send(t, http.MethodPost, api.ObjectsPath, testToken, "", strings.NewReader("third")); resp.StatusCode != http.StatusOK {
		t.Fatalf("an upload after the first ended: %d %s", resp.StatusCode, b)
	}
}

// brokenNode serves objects whose bytes fail after half.
type brokenNode struct{ *rpctest.Node }

func (n brokenNode) OpenObject(ctx context.Context, id cid.Cid, progress func(done, total int64)) (io.ReadCloser, int64, error) {
	r, size, err := n.Node.OpenObject(ctx, id, progress)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(io.MultiReader(io.LimitReader(r, size/2), errReader{})), size, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("chunk does not verify") }

// TestObjectStreamCutShort: a download whose bytes fail after the header
// is cut short: the client gets fewer bytes than Content-Length and an
// error, never a complete-looking body.
func TestObjectStreamCutShort(t *testing.T) {
	n := rpctest.NewNode()
	data := bytes.Repeat([]byte("x"), 100_000)
	id, err := n.AddObject(data)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Node: brokenNode{n}, Token: testToken})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
	})
	req, _ := http.NewRequest(http.MethodGet, ts.URL+api.ObjectsPath+"/"+id.String(), nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(data)) {
		t.Fatalf("GET: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(b) >= len(data) {
		t.Fatalf("read %d of %d bytes, err %v; want a short body and io.ErrUnexpectedEOF", len(b), len(data), err)
	}
	t.Logf("cut short after %d of %d bytes: %v", len(b), len(data), err)
}
