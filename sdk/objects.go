package sdk

import (
	"context"
	"strconv"

	"github.com/contextd/contextd/rpc/api"
)

// Object calls. Object IDs are CID strings; paths are on the daemon's
// machine and must be absolute.

// ObjectPut stores, pins and announces the file at path (object.put).
func (c *Client) ObjectPut(ctx context.Context, path string) (api.ObjectPutResult, error) {
	var r api.ObjectPutResult
	err := c.Call(ctx, api.MethodObjectPut, api.ObjectPutParams{Path: path}, &r)
	return r, err
}

// ObjectGet makes the node hold object id, fetching it from its providers,
// and write it to path (none if empty) (object.get). progress, if not nil,
// is called with the bytes held and the object's size as the object
// arrives, from the client's reader: it must return quickly. The last call
// comes before ObjectGet returns.
func (c *Client) ObjectGet(ctx context.Context, id, path string, progress func(done, total int64)) (api.ObjectGetResult, error) {
	p := api.ObjectGetParams{CID: id, Path: path}
	if progress != nil {
		c.mu.Lock()
		c.nextID++
		p.Progress = "p" + strconv.FormatUint(c.nextID, 10)
		c.progress[p.Progress] = progress
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			delete(c.progress, p.Progress)
			c.mu.Unlock()
		}()
	}
	var r api.ObjectGetResult
	err := c.Call(ctx, api.MethodObjectGet, p, &r)
	return r, err
}

// ObjectStat reports what the node holds of id (object.stat); an error
// matching api.ErrNotFound if nothing.
func (c *Client) ObjectStat(ctx context.Context, id string) (api.Object, error) {
	var r api.Object
	err := c.Call(ctx, api.MethodObjectStat, api.ObjectParams{CID: id}, &r)
	return r, err
}

// ObjectPin keeps id from eviction, leases it in the node's feed (so the
// nodes that follow it keep their copies) and announces it (object.pin).
func (c *Client) ObjectPin(ctx context.Context, id string) error {
	return c.Call(ctx, api.MethodObjectPin, api.ObjectParams{CID: id}, nil)
}

// ObjectUnpin undoes ObjectPin and ends the lease (object.unpin).
func (c *Client) ObjectUnpin(ctx context.Context, id string) error {
	return c.Call(ctx, api.MethodObjectUnpin, api.ObjectParams{CID: id}, nil)
}

// ObjectList reports every object the node holds, ordered by CID
// (object.list).
func (c *Client) ObjectList(ctx context.Context) ([]api.Object, error) {
	var r api.ObjectsResult
	err := c.Call(ctx, api.MethodObjectList, nil, &r)
	return r.Objects, err
}

// ObjectProviders returns the peers the DHT says provide id
// (object.providers).
func (c *Client) ObjectProviders(ctx context.Context, id string) ([]api.Provider, error) {
	var r api.ProvidersResult
	err := c.Call(ctx, api.MethodObjectProviders, api.ObjectParams{CID: id}, &r)
	return r.Providers, err
}
