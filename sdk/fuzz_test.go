package sdk

import (
	"context"
	"log/slog"
	"testing"

	"github.com/contextd/contextd/rpc/api"
)

// FuzzHandle feeds arbitrary server messages to the client's dispatcher:
// it must never panic, and a subscription only ever queues the next seq.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		``, `{`, `null`, `[]`,
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		`{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"x"}}`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`,
		`{"jsonrpc":"2.0","method":"feed.entry","params":{"subscription":"s1","entry":{"seq":1,"body":"eA=="}}}`,
		`{"jsonrpc":"2.0","method":"feed.entry","params":{"subscription":"s1","entry":{"seq":3}}}`,
		`{"jsonrpc":"2.0","method":"feed.end","params":{"subscription":"s1","error":{"code":-32603,"message":"x"}}}`,
		`{"jsonrpc":"2.0","method":"feed.end","params":{"subscription":"s1"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := &Client{log: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel, subs: map[*Subscription]struct{}{}}
		cn := &conn{ctx: ctx, cancel: cancel, pending: map[uint64]*pending{}, subs: map[string]*Subscription{}}
		sctx, scancel := context.WithCancel(ctx)
		s := &Subscription{c: c, ctx: sctx, cancel: scancel, entries: make(chan api.Entry, 2), kick: make(chan struct{}, 1), cn: cn, srvID: "s1"}
		cn.subs["s1"] = s
		c.subs[s] = struct{}{}
		p := &pending{resp: make(chan api.Response, 1)}
		cn.pending[1] = p
		cn.pending[2] = p
		c.handle(cn, data)
		c.handle(cn, data)
		close(s.entries)
		want := uint64(1)
		for e := range s.entries {
			if e.Seq != want {
				t.Fatalf("queued seq %d, want %d", e.Seq, want)
			}
			want++
		}
	})
}
