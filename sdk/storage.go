package sdk

import (
	"context"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Forget unfollows id and deletes what the node stores of its feed
// (graph.unfollow with forget). A feed the node still replicates for
// another reason is kept: the result's Kept says why.
func (c *Client) Forget(ctx context.Context, id feed.ID) (api.UnfollowResult, error) {
	var r api.UnfollowResult
	err := c.Call(ctx, api.MethodGraphUnfollow, api.UnfollowParams{ID: id, Forget: true}, &r)
	return r, err
}

// ObjectRemove deletes what the node holds of object cid (object.rm). A
// pinned object is refused unless force, which unpins it first.
func (c *Client) ObjectRemove(ctx context.Context, cid string, force bool) (api.ObjectRmResult, error) {
	var r api.ObjectRmResult
	err := c.Call(ctx, api.MethodObjectRm, api.ObjectRmParams{CID: cid, Force: force}, &r)
	return r, err
}

// Storage reports the disk the node's store uses and its bounds
// (node.storage).
func (c *Client) Storage(ctx context.Context) (api.Storage, error) {
	var r api.Storage
	err := c.Call(ctx, api.MethodNodeStorage, nil, &r)
	return r, err
}
