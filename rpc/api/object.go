package api

import (
	"time"

	"github.com/contextd/contextd/feed"
)

// Object IDs are CIDv1 strings (object.Info.ID): a raw CID for a
// single-chunk object, the swarm-root codec for a larger one. A malformed
// CID is an invalid-params error; an object the node does not hold is
// ErrNotFound.
//
// Objects travel as bytes over HTTP on the RPC listener, streamed in
// bounded memory at both ends:
//
//	POST ObjectsPath            body: the bytes → ObjectPutResult (JSON)
//	GET  ObjectsPath + "/" + CID → the bytes (application/octet-stream,
//	                              Content-Length the object's size)
//
// Both carry the bearer token like a POST to Path and need the scope of
// the method they stand for (object.put, object.get). A failure before
// the bytes flow answers an HTTP status with a JSON-RPC error body (id
// null); a GET whose stream breaks after the header is cut short, so the
// client sees fewer bytes than Content-Length.
//
// object.put and object.get also take a path on the daemon's machine, but
// only inside the directories the operator lists in the node's config
// ("object_dirs"); any other path, and every path when none is listed, is
// refused with ErrNotAllowed before anything is read, fetched or written.

// ObjectsPath is the HTTP path of the object endpoints.
const ObjectsPath = "/objects"

// ObjectPutParams are the params of object.put: the node reads the file at
// Path (absolute, on the daemon's machine, inside one of its object_dirs
// after resolving symlinks and ".."), stores and pins it, and announces it
// in the DHT. To store bytes from the caller, POST them to ObjectsPath.
type ObjectPutParams struct {
	Path string `json:"path"`
}

// ObjectPutResult is the result of object.put and of a POST to
// ObjectsPath.
type ObjectPutResult struct {
	CID    string `json:"cid"`
	Size   int64  `json:"size"`
	Chunks uint64 `json:"chunks"`
}

// ObjectGetParams are the params of object.get: the node fetches the object
// (from its store, else from the providers the DHT and its linked peers
// know), then writes it to Path (absolute, on the daemon's machine, its
// directory inside one of the node's object_dirs after resolving symlinks
// and ".."; written to a temporary file in the same directory and
// renamed). An empty Path only fetches it into the store: the way to
// watch a fetch before reading the bytes from ObjectsPath. A non-empty
// Progress asks for object.progress notifications with that token on the
// calling WebSocket while the object is fetched; the last one comes before
// the response. Over a WebSocket the call lasts as long as the object
// needs; over POST it is bounded by the server's call timeout (one minute
// by default).
type ObjectGetParams struct {
	CID      string `json:"cid"`
	Path     string `json:"path,omitempty"`
	Progress string `json:"progress,omitempty"`
}

// ObjectGetResult is the result of object.get.
type ObjectGetResult struct {
	Path string `json:"path,omitempty"` // where the object was written
	Size int64  `json:"size"`
}

// ObjectProgress is the params of an object.progress notification: Done
// of Total bytes of the object are held.
type ObjectProgress struct {
	Progress string `json:"progress"` // the token of ObjectGetParams
	CID      string `json:"cid"`
	Done     int64  `json:"done"`
	Total    int64  `json:"total"`
}

// ObjectParams are the params of object.stat, object.pin, object.unpin
// and object.providers.
type ObjectParams struct {
	CID string `json:"cid"`
}

// Object is what the node holds of one object: the result of object.stat
// and an element of object.list. An object is kept while it is pinned here
// or leased; otherwise it is cache, evicted least recently used first
// under the node's cache_bytes.
type Object struct {
	CID       string `json:"cid"`
	Size      int64  `json:"size"`
	ChunkSize int    `json:"chunkSize"`
	Chunks    uint64 `json:"chunks"` // chunks of the object
	Held      uint64 `json:"held"`   // chunks the node holds
	// Pinned: this node pinned it (object.pin, object.put); it also
	// leases it in its own feed while pinned.
	Pinned bool `json:"pinned"`
	// Leases counts the valid leases on the object: lease entries, in the
	// feeds the node holds (its own too), whose end is after now.
	// LeasedUntil is the latest of those ends (absent if none).
	Leases      int       `json:"leases"`
	LeasedUntil time.Time `json:"leasedUntil,omitzero"`
}

// Complete reports whether the node holds every chunk.
func (o Object) Complete() bool { return o.Held == o.Chunks }

// Cached reports whether the object is neither pinned nor leased: the
// node may evict it.
func (o Object) Cached() bool { return !o.Pinned && o.Leases == 0 }

// ObjectsResult is the result of object.list, ordered by CID.
type ObjectsResult struct {
	Objects []Object `json:"objects"`
}

// Provider is a peer that announced an object in the DHT.
type Provider struct {
	ID    feed.ID  `json:"id"`
	Addrs []string `json:"addrs"`
}

// ProvidersResult is the result of object.providers.
type ProvidersResult struct {
	Providers []Provider `json:"providers"`
}
