package sdk

import (
	"context"
	"log/slog"
	"testing"

	"github.com/contextd/contextd/rpc/api"
)

// FuzzHandle feeds arbitrary server messages to the client's dispatcher:
// it must never panic, a feed subscription only ever queues the next seq,
// a context subscription only ever queues a higher cursor and a stream
// subscription a higher chunk index.
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
		`{"jsonrpc":"2.0","method":"context.message","params":{"subscription":"s2","message":{"cursor":4,"body":"eA=="}}}`,
		`{"jsonrpc":"2.0","method":"context.datagram","params":{"subscription":"s2","datagram":{"body":"eA=="}}}`,
		`{"jsonrpc":"2.0","method":"context.end","params":{"subscription":"s2","error":{"code":-32007,"message":"x"}}}`,
		`{"jsonrpc":"2.0","method":"stream.chunk","params":{"subscription":"s3","chunk":{"index":5,"data":"eA==","published":1}}}`,
		`{"jsonrpc":"2.0","method":"stream.chunk","params":{"subscription":"s3","chunk":{"index":6,"end":true}}}`,
		`{"jsonrpc":"2.0","method":"stream.end","params":{"subscription":"s3","error":{"code":-32000,"message":"x"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := &Client{cfg: Config{SubBuffer: 2}, log: slog.New(slog.DiscardHandler), ctx: ctx, cancel: cancel, subs: map[subscriber]struct{}{}}
		cn := &conn{ctx: ctx, cancel: cancel, pending: map[uint64]*pending{}, subs: map[string]subscriber{}}
		s := newStream(c, kind[api.Entry](feedKind{}), 0)
		ck := &contextKind{dgs: make(chan api.Datagram, 2)}
		cs := newStream(c, kind[api.Message](ck), 0)
		ss := newStream(c, kind[api.StreamChunk](streamKind{}), 0)
		s.cn, s.srvID = cn, "s1"
		cs.cn, cs.srvID = cn, "s2"
		ss.cn, ss.srvID = cn, "s3"
		cn.subs["s1"], cn.subs["s2"], cn.subs["s3"] = s, cs, ss
		c.subs[s], c.subs[cs], c.subs[ss] = struct{}{}, struct{}{}, struct{}{}
		p := &pending{resp: make(chan api.Response, 1)}
		cn.pending[1] = p
		cn.pending[2] = p
		c.handle(cn, data)
		c.handle(cn, data)
		close(s.items)
		want := uint64(1)
		for e := range s.items {
			if e.Seq != want {
				t.Fatalf("queued seq %d, want %d", e.Seq, want)
			}
			want++
		}
		close(cs.items)
		var last uint64
		for m := range cs.items {
			if m.Cursor <= last {
				t.Fatalf("queued cursor %d after %d", m.Cursor, last)
			}
			last = m.Cursor
		}
		close(ss.items)
		next := uint64(0)
		for ch := range ss.items {
			if ch.Index < next {
				t.Fatalf("queued chunk %d after %d", ch.Index, next-1)
			}
			next = ch.Index + 1
		}
	})
}
