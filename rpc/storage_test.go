package rpc

import (
	"testing"

	"github.com/contextd/contextd/rpc/api"
	"github.com/contextd/contextd/rpc/rpctest"
)

func TestStorageMethods(t *testing.T) {
	e := newEnv(t, Config{})
	a := rpctest.KeyFor(1)
	if _, err := e.node.Append(a, "post", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	result[api.Head](t, e.call(t, api.MethodGraphFollow, api.ContactParams{ID: a.Public()}))

	// graph.unfollow without forget still answers a Head; with forget the
	// feed's bytes.
	r := result[api.UnfollowResult](t, e.call(t, api.MethodGraphUnfollow, api.UnfollowParams{ID: a.Public(), Forget: true}))
	if r.Seq != 2 || !r.Forgotten || r.FreedBytes == 0 {
		t.Fatalf("unfollow --forget: %+v", r)
	}
	wantCode(t, e.call(t, api.MethodFeedHead, api.HeadParams{ID: a.Public()}), api.CodeUnknownFeed, "unknown feed")
	wantCode(t, e.call(t, api.MethodGraphUnfollow, api.UnfollowParams{ID: rpctest.KeyFor(0).Public(), Forget: true}), api.CodeInvalidParams, "own ID")
	wantCode(t, e.call(t, api.MethodGraphUnfollow, map[string]any{"forget": true}), api.CodeInvalidParams, `"id"`)

	// object.rm: a pinned object only with force.
	id, err := e.node.AddObject([]byte("object bytes"))
	if err != nil {
		t.Fatal(err)
	}
	result[api.Empty](t, e.call(t, api.MethodObjectPin, api.ObjectParams{CID: id.String()}))
	wantCode(t, e.call(t, api.MethodObjectRm, api.ObjectRmParams{CID: id.String()}), api.CodeInvalidParams, "pinned")
	if r := result[api.ObjectRmResult](t, e.call(t, api.MethodObjectRm, api.ObjectRmParams{CID: id.String(), Force: true})); r.FreedBytes != 12 {
		t.Fatalf("object.rm: %+v", r)
	}
	wantCode(t, e.call(t, api.MethodObjectStat, api.ObjectParams{CID: id.String()}), api.CodeNotFound, "")
	wantCode(t, e.call(t, api.MethodObjectRm, api.ObjectRmParams{CID: "nonsense"}), api.CodeInvalidParams, "cid")

	// node.storage: the fake counts its own feed as the main database.
	s := result[api.Storage](t, e.call(t, api.MethodNodeStorage, nil))
	if s.Main == 0 || s.Blobs != 0 || s.Contexts == nil {
		t.Fatalf("node.storage: %+v", s)
	}
}
