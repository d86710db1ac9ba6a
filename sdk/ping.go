package sdk

import (
	"context"

	"github.com/contextd/contextd/rpc/api"
)

// Ping measures round trips to a peer on a control-class circuit
// (node.ping): p.Count pings of p.Size bytes, one every p.IntervalMs (zero
// fields take the defaults in package api). It returns when the last
// reply came or was given up on.
func (c *Client) Ping(ctx context.Context, p api.PingParams) (api.PingResult, error) {
	var r api.PingResult
	err := c.Call(ctx, api.MethodNodePing, p, &r)
	return r, err
}
