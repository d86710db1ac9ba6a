package rpc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

// FuzzHandler feeds arbitrary bodies to the POST handler: it must never
// panic and must always answer with a JSON-RPC response (or 204 for a
// notification).
func FuzzHandler(f *testing.F) {
	id := rpctest.KeyFor(1).Public().String()
	for _, s := range []string{
		``, `{`, `[]`, `null`, `0`, `"x"`, `{}`,
		`{"jsonrpc":"2.0","id":1,"method":"node.info"}`,
		`{"jsonrpc":"2.0","method":"node.info"}`,
		`{"jsonrpc":"2.0","id":null,"method":"ebt.peers","params":null}`,
		`{"jsonrpc":"2.0","id":"a","method":"feed.publish","params":{"text":"hi"}}`,
		`{"jsonrpc":"2.0","id":2,"method":"feed.publish","params":{"type":"x","body":"AAEC"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"feed.get","params":{"id":"` + id + `","since":1,"limit":10}}`,
		`{"jsonrpc":"2.0","id":4,"method":"feed.head","params":{"id":"` + id + `"}}`,
		`{"jsonrpc":"2.0","id":5,"method":"graph.follow","params":{"id":"` + id + `"}}`,
		`{"jsonrpc":"2.0","id":6,"method":"feed.subscribe","params":{"id":"` + id + `"}}`,
		`{"jsonrpc":"2.0","id":7,"method":"node.connect","params":{"addr":"bad"}}`,
		`{"jsonrpc":"2.0","id":8,"method":"feed.get","params":["x"]}`,
		`{"jsonrpc":"2.0","id":9,"method":"stream.write","params":{"id":"` + id + `","data":"AAEC"}}`,
		`{"jsonrpc":"2.0","id":10,"method":"stream.watch","params":{"id":"` + id + `","from":-1}}`,
		`{"jsonrpc":"2.0","id":11,"method":"stream.close","params":{"id":"` + id + `"}}`,
		`{"jsonrpc":"2.0","id":12,"method":"stream.open"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"node.info"}]`,
	} {
		f.Add([]byte(s))
	}
	srv := New(Config{Node: rpctest.NewNode(), Token: testToken})
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, api.Path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code == http.StatusNoContent && rec.Body.Len() == 0 {
			return
		}
		var r api.Response
		dec := json.NewDecoder(rec.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("HTTP %d, body %q: %v", rec.Code, rec.Body.Bytes(), err)
		}
		if r.JSONRPC != "2.0" || (r.Error == nil) == (r.Result == nil) || r.ID == nil {
			t.Fatalf("not a JSON-RPC response: %+v", r)
		}
		if r.Error != nil && (r.Error.Message == "" || r.Error.Code.String() == "") {
			t.Fatalf("empty error %+v", r.Error)
		}
	})
}
