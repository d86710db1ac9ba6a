package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/object"
)

// This file lets a fetcher that knows only an object's ID start a session:
// the ID fixes the hash and the root, but not the size and chunk size that
// Fetch (and each side's HANDSHAKE) needs.
//
// Probe (fetcher) sends a HANDSHAKE that names the object with size 0, the
// "size unknown" mark, and the smallest chunk size, reads the seeder's
// HANDSHAKE, takes size and chunk size from it and trusts them only if the
// object.Info they make with the ID's root has that very ID (object.Info.ID): a multi-chunk
// ID commits to the tree root, a single-chunk (raw) ID to the hash of the
// bytes, and every chunk is verified against that root, so a lying seeder can
// only make chunks unavailable. Accept (seeder) reads the peer's HANDSHAKE,
// looks the object up, and hands Serve a HANDSHAKE completed with the true
// size and chunk size when the peer sent the "size unknown" mark. Each side
// still sends exactly one HANDSHAKE on the wire.

// ErrUnknownObject is returned by Accept's lookup for an object the seeder
// does not serve.
var ErrUnknownObject = errors.New("swarm: unknown object")

// Probe starts a fetcher's session for object id on c: it sends HANDSHAKE
// (size unknown), waits for the seeder's and returns the object's verified
// object.Info and a Conn to give Fetch with that object.Info. The returned Conn delivers
// the seeder's HANDSHAKE first and drops Fetch's own (already sent). On
// error Probe closes c; the error wraps ErrMismatch when the seeder's
// HANDSHAKE does not fit id.
func Probe(ctx context.Context, c Conn, id cid.Cid) (object.Info, Conn, error) {
	info, err := object.InfoFromID(id)
	if err != nil {
		c.Close()
		return object.Info{}, nil, err
	}
	hs := Handshake{Capability: Capability, ObjectID: id.Bytes(), Hash: info.Hash, ChunkSize: object.MinChunkSize}
	if err := c.Send(ctx, hs.Append(nil)); err != nil {
		c.Close()
		return object.Info{}, nil, fmt.Errorf("swarm: probe: send HANDSHAKE: %w", err)
	}
	first, m, err := recvHandshake(ctx, c, info.Hash.Size())
	if err != nil {
		c.Close()
		return object.Info{}, nil, err
	}
	info.Size, info.ChunkSize = m.Size, m.ChunkSize
	if string(m.ObjectID) != string(id.Bytes()) || m.Hash != info.Hash || !info.ID().Equals(id) {
		c.Close()
		return object.Info{}, nil, fmt.Errorf("%w: seeder's %d-byte object of %d-byte chunks is not %s", ErrMismatch, m.Size, m.ChunkSize, id)
	}
	return info, &replayConn{Conn: c, first: first, skipSend: true}, nil
}

// Accept starts a seeder's session on c: it reads the peer's HANDSHAKE,
// looks the object up and returns its object.Info and a Conn to give Serve with
// that object.Info. When the peer sent size 0, the "size unknown" mark of Probe,
// the HANDSHAKE Serve reads is completed with the object's size and chunk
// size; any other HANDSHAKE reaches Serve as sent, for Serve to check. On error (a lookup error, a malformed or missing HANDSHAKE)
// Accept closes c.
func Accept(ctx context.Context, c Conn, lookup func(id cid.Cid) (object.Info, error)) (object.Info, Conn, error) {
	_, m, err := recvHandshake(ctx, c, 0)
	if err != nil {
		c.Close()
		return object.Info{}, nil, err
	}
	id, err := cid.Cast(m.ObjectID)
	if err != nil {
		c.Close()
		return object.Info{}, nil, fmt.Errorf("%w: object ID: %v", ErrMalformed, err)
	}
	info, err := lookup(id)
	if err != nil {
		c.Close()
		return object.Info{}, nil, err
	}
	if m.Size == 0 && m.Hash == info.Hash {
		m.Size, m.ChunkSize = info.Size, info.ChunkSize
	}
	return info, &replayConn{Conn: c, first: m.Append(nil)}, nil
}

// recvHandshake reads the first message of a session, which must be HANDSHAKE.
func recvHandshake(ctx context.Context, c Conn, hashSize int) ([]byte, Handshake, error) {
	b, err := c.RecvBuffer(ctx, nil)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Handshake{}, fmt.Errorf("swarm: peer closed the session before HANDSHAKE: %w", err)
		}
		return nil, Handshake{}, fmt.Errorf("swarm: receive HANDSHAKE: %w", err)
	}
	m, err := Decode(b, hashSize)
	if err != nil {
		return nil, Handshake{}, err
	}
	h, ok := m.(Handshake)
	if !ok {
		return nil, Handshake{}, fmt.Errorf("%w: %v before HANDSHAKE", ErrProtocol, m.Type())
	}
	return b, h, nil
}

// replayConn delivers first before what the Conn receives and, with
// skipSend, drops the first message sent (a HANDSHAKE already sent).
type replayConn struct {
	Conn
	mu       sync.Mutex // guards first and skipSend
	first    []byte
	skipSend bool
}

func (c *replayConn) RecvBuffer(ctx context.Context, buf []byte) ([]byte, error) {
	c.mu.Lock()
	b := c.first
	c.first = nil
	c.mu.Unlock()
	if b != nil {
		return b, nil
	}
	return c.Conn.RecvBuffer(ctx, buf)
}

func (c *replayConn) Send(ctx context.Context, msg []byte) error {
	c.mu.Lock()
	skip := c.skipSend
	c.skipSend = false
	c.mu.Unlock()
	if skip {
		return nil
	}
	return c.Conn.Send(ctx, msg)
}
