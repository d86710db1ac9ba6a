package sdk

import (
	"context"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Info returns the node's ID, listen addresses and version (node.info).
func (c *Client) Info(ctx context.Context) (api.NodeInfo, error) {
	var r api.NodeInfo
	err := c.Call(ctx, api.MethodNodeInfo, nil, &r)
	return r, err
}

// Peers lists the connected peers (node.peers).
func (c *Client) Peers(ctx context.Context) ([]api.Peer, error) {
	var r api.PeersResult
	err := c.Call(ctx, api.MethodNodePeers, nil, &r)
	return r.Peers, err
}

// Connect makes the node dial a peer by multiaddr (node.connect).
func (c *Client) Connect(ctx context.Context, addr string) error {
	return c.Call(ctx, api.MethodNodeConnect, api.ConnectParams{Addr: addr}, nil)
}

// Publish appends an entry of type typ (api.DefaultType when empty) with
// body to the node's own feed (feed.publish).
func (c *Client) Publish(ctx context.Context, typ string, body []byte) (api.Head, error) {
	if body == nil {
		body = []byte{}
	}
	var r api.Head
	err := c.Call(ctx, api.MethodFeedPublish, api.PublishParams{Type: typ, Body: body}, &r)
	return r, err
}

// PublishText is Publish with a text body.
func (c *Client) PublishText(ctx context.Context, typ, text string) (api.Head, error) {
	var r api.Head
	err := c.Call(ctx, api.MethodFeedPublish, api.PublishParams{Type: typ, Text: text}, &r)
	return r, err
}

// Head returns the head of feed id (feed.head); an error matching
// api.ErrUnknownFeed if the node holds nothing of it.
func (c *Client) Head(ctx context.Context, id feed.ID) (api.Head, error) {
	var r api.Head
	err := c.Call(ctx, api.MethodFeedHead, api.HeadParams{ID: id}, &r)
	return r, err
}

// Get returns entries of feed id with seq > since, ascending, at most
// limit (0: api.DefaultGetLimit; at most api.MaxGetLimit) (feed.get). It
// may return fewer even when more exist: continue from the last seq.
func (c *Client) Get(ctx context.Context, id feed.ID, since uint64, limit int) ([]api.Entry, error) {
	var r api.GetResult
	err := c.Call(ctx, api.MethodFeedGet, api.GetParams{ID: id, Since: since, Limit: limit}, &r)
	return r.Entries, err
}

// Feeds reports every feed the node holds or follows, its own first
// (feed.list).
func (c *Client) Feeds(ctx context.Context) ([]api.FeedStatus, error) {
	var r api.FeedsResult
	err := c.Call(ctx, api.MethodFeedList, nil, &r)
	return r.Feeds, err
}

// Follow makes the node follow id (graph.follow) and returns the contact
// entry's position.
func (c *Client) Follow(ctx context.Context, id feed.ID) (api.Head, error) {
	return c.contact(ctx, api.MethodGraphFollow, id)
}

// Unfollow undoes Follow (graph.unfollow).
func (c *Client) Unfollow(ctx context.Context, id feed.ID) (api.Head, error) {
	return c.contact(ctx, api.MethodGraphUnfollow, id)
}

// Block makes the node block id (graph.block).
func (c *Client) Block(ctx context.Context, id feed.ID) (api.Head, error) {
	return c.contact(ctx, api.MethodGraphBlock, id)
}

// Unblock undoes Block (graph.unblock).
func (c *Client) Unblock(ctx context.Context, id feed.ID) (api.Head, error) {
	return c.contact(ctx, api.MethodGraphUnblock, id)
}

func (c *Client) contact(ctx context.Context, method string, id feed.ID) (api.Head, error) {
	var r api.Head
	err := c.Call(ctx, method, api.ContactParams{ID: id}, &r)
	return r, err
}

// Graph returns the node's own follows and blocks (graph.list).
func (c *Client) Graph(ctx context.Context) (api.Graph, error) {
	var r api.Graph
	err := c.Call(ctx, api.MethodGraphList, nil, &r)
	return r, err
}

// Progress returns replication progress (ebt.progress).
func (c *Client) Progress(ctx context.Context) (api.Progress, error) {
	var r api.Progress
	err := c.Call(ctx, api.MethodEBTProgress, nil, &r)
	return r, err
}

// EBTPeers returns per-peer replication status (ebt.peers).
func (c *Client) EBTPeers(ctx context.Context) ([]api.EBTPeer, error) {
	var r api.EBTPeersResult
	err := c.Call(ctx, api.MethodEBTPeers, nil, &r)
	return r.Peers, err
}
