package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/contextd/contextd/rpc/api"
)

// Object calls. Object IDs are CID strings. PutObject and GetObject stream
// an object's bytes over HTTP (api.ObjectsPath), so neither the app nor the
// daemon holds it in memory. ObjectPut and ObjectGet name files on the
// daemon's machine instead (absolute paths), which the daemon accepts only
// inside the directories its operator listed as object_dirs in its
// config; elsewhere they fail with api.ErrNotAllowed.

// PutObject streams the bytes r yields, to its end, to the daemon, which
// stores, pins and announces them as an object (POST /objects). A
// failure, the daemon's or r's, stores nothing the app can rely on.
func (c *Client) PutObject(ctx context.Context, r io.Reader) (api.ObjectPutResult, error) {
	const op = "POST " + api.ObjectsPath
	var res api.ObjectPutResult
	resp, err := c.bytesRequest(ctx, http.MethodPost, api.ObjectsPath, nil, r)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return res, statusError(op, resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, api.MaxMessageSize)).Decode(&res); err != nil {
		return res, fmt.Errorf("sdk: %s: decoding result: %w", op, err)
	}
	return res, nil
}

// GetObject writes object id to w (GET /objects/CID) and returns its
// size. The daemon fetches the object from the peers that provide it
// first if it does not hold it. progress, if not nil, is told of that
// fetch as ObjectGet's is (GetObject then calls object.get first, without
// a path, to watch it); the last call comes before the bytes flow. A
// stream that breaks partway fails with the bytes written so far in w.
func (c *Client) GetObject(ctx context.Context, id string, w io.Writer, progress func(done, total int64)) (int64, error) {
	op := "GET " + api.ObjectsPath + "/" + id
	if progress != nil {
		if _, err := c.ObjectGet(ctx, id, "", progress); err != nil {
			return 0, err
		}
	}
	resp, err := c.bytesRequest(ctx, http.MethodGet, api.ObjectsPath+"/"+id, nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, statusError(op, resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, fmt.Errorf("sdk: %s: after %d of %d bytes: %w", op, n, resp.ContentLength, err)
	}
	return n, nil
}

// bytesRequest sends a request to an object or stream endpoint (path,
// with query if not nil) and returns the response, whatever its status.
func (c *Client) bytesRequest(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Response, error) {
	u, err := url.Parse(c.url)
	if err != nil {
		return nil, fmt.Errorf("sdk: %s endpoint of %s: %w", path, c.url, err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	u.Path = strings.TrimSuffix(u.Path, api.Path) + path
	u.RawPath, u.RawQuery = "", query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("sdk: %s %s: %w", method, u.Path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	hc := c.cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: %s %s: %w", method, u.Path, err)
	}
	return resp, nil
}

// statusError is the *Error of a refused object or stream request.
func statusError(op string, resp *http.Response) error {
	err := httpError(resp)
	if e, ok := errors.AsType[*Error](err); ok {
		e.Method = op
	}
	return err
}

// ObjectPut makes the daemon store, pin and announce the file at path on
// its machine (object.put): only inside its object_dirs. To send a file
// from the app's side, use PutObject.
func (c *Client) ObjectPut(ctx context.Context, path string) (api.ObjectPutResult, error) {
	var r api.ObjectPutResult
	err := c.Call(ctx, api.MethodObjectPut, api.ObjectPutParams{Path: path}, &r)
	return r, err
}

// ObjectGet makes the node hold object id, fetching it from its providers,
// and write it to path on its machine, only inside its object_dirs (none
// if empty) (object.get). progress, if not nil, is called with the bytes
// held and the object's size as the object arrives, from the client's
// reader: it must return quickly. The last call comes before ObjectGet
// returns. To read the bytes on the app's side, use GetObject.
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
