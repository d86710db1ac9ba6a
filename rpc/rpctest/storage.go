package rpctest

import (
	"context"
	"fmt"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Unfollow writes relation none about id (unless forget finds it not
// followed) and with forget deletes the feed; the fake never keeps one.
func (n *Node) Unfollow(ctx context.Context, id feed.ID, forget bool) (api.UnfollowResult, error) {
	var res api.UnfollowResult
	if id == n.self.Public() {
		return res, fmt.Errorf("%w: that is this node's own ID", api.ErrInvalidParams)
	}
	n.mu.Lock()
	rel := n.graph[id]
	n.mu.Unlock()
	if !forget || rel == feed.RelFollow {
		e, err := n.Contact(ctx, id, feed.RelNone)
		if err != nil {
			return res, err
		}
		res.Head = api.Head{Seq: e.Seq, ID: e.ID()}
	}
	if !forget {
		return res, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range n.feeds[id] {
		res.FreedBytes += int64(e.EncodedSize())
	}
	delete(n.feeds, id)
	res.Forgotten = true
	return res, nil
}

// RemoveObject deletes a held object; a pinned one only with force.
func (n *Node) RemoveObject(id cid.Cid, force bool) (api.ObjectRmResult, error) {
	o, err := n.object(id)
	if err != nil {
		return api.ObjectRmResult{}, err
	}
	n.objs.mu.Lock()
	defer n.objs.mu.Unlock()
	if o.Pinned && !force {
		return api.ObjectRmResult{}, fmt.Errorf("%w: object %s is pinned", api.ErrInvalidParams, id)
	}
	delete(n.objs.objs, id.String())
	return api.ObjectRmResult{FreedBytes: o.Size}, nil
}

// Storage reports the bytes of the feeds as the main database, the
// objects as blobs, no quotas and no contexts.
func (n *Node) Storage() (api.Storage, error) {
	s := api.Storage{Contexts: []api.ContextStorage{}}
	n.mu.Lock()
	for _, es := range n.feeds {
		for _, e := range es {
			s.Main += int64(e.EncodedSize())
		}
	}
	n.mu.Unlock()
	n.objs.mu.Lock()
	for _, o := range n.objs.objs {
		s.Blobs += o.Size
	}
	n.objs.mu.Unlock()
	return s, nil
}
