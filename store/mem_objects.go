package store

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/object"
)

// memObjects is Mem's object storage.
type memObjects struct {
	// mu guards every field below. It is taken after Mem.mu, never before.
	mu     sync.Mutex
	index  objIndex
	chunks map[string]map[uint64][]byte     // by id.KeyString(), then index
	hashes map[string]map[object.Bin][]byte // by id.KeyString(), then bin
}

var _ Objects = (*Mem)(nil)

// lockObjects takes the object lock, returning ErrClosed on a closed store;
// on success the caller must unlock m.objs.mu and m.mu.
func (m *Mem) lockObjects() (*memObjects, error) {
	m.mu.RLock()
	if m.closed {
		m.mu.RUnlock()
		return nil, ErrClosed
	}
	o := &m.objs
	o.mu.Lock()
	if o.chunks == nil {
		o.chunks = make(map[string]map[uint64][]byte)
		o.hashes = make(map[string]map[object.Bin][]byte)
	}
	return o, nil
}

func (m *Mem) unlockObjects() {
	m.objs.mu.Unlock()
	m.mu.RUnlock()
}

// withObject runs fn on the index entry of id under the object lock.
func (m *Mem) withObject(id cid.Cid, fn func(o *memObjects, om *objMeta) error) error {
	o, err := m.lockObjects()
	if err != nil {
		return err
	}
	defer m.unlockObjects()
	om, err := o.index.get(id)
	if err != nil {
		return err
	}
	return fn(o, om)
}

// PutObject implements Objects.
func (m *Mem) PutObject(id cid.Cid, info object.Info) error {
	if err := checkPutObject(id, info); err != nil {
		return fmt.Errorf("store: put object: %w", err)
	}
	o, err := m.lockObjects()
	if err != nil {
		return err
	}
	defer m.unlockObjects()
	if om, err := o.index.get(id); err == nil {
		if !sameInfo(om.info, info) {
			return fmt.Errorf("store: put object %s: %w", id, ErrObjectConflict)
		}
		o.index.setAccess(om, o.index.next(om))
		return nil
	}
	info.Root = bytes.Clone(info.Root)
	o.index.add(&objMeta{id: id, info: info, access: o.index.next(nil)})
	return nil
}

// Object implements Objects.
func (m *Mem) Object(id cid.Cid) (ObjectStat, error) {
	var s ObjectStat
	err := m.withObject(id, func(o *memObjects, om *objMeta) error {
		s = o.index.stat(om)
		return nil
	})
	return s, err
}

// ObjectIDs implements Objects.
func (m *Mem) ObjectIDs() ([]cid.Cid, error) {
	o, err := m.lockObjects()
	if err != nil {
		return nil, err
	}
	defer m.unlockObjects()
	return o.index.ids(), nil
}

// PutChunk implements Objects.
func (m *Mem) PutChunk(id cid.Cid, index uint64, data []byte) error {
	return m.withObject(id, func(o *memObjects, om *objMeta) error {
		n, err := chunkLen(om.info, index)
		if err == nil && len(data) != n {
			err = fmt.Errorf("%w: chunk %d is %d bytes, want %d", ErrBadObject, index, len(data), n)
		}
		if err != nil {
			return fmt.Errorf("store: put chunk: %w", err)
		}
		key := id.KeyString()
		cs := o.chunks[key]
		if _, ok := cs[index]; ok {
			return nil
		}
		if cs == nil {
			cs = make(map[uint64][]byte)
			o.chunks[key] = cs
		}
		cs[index] = bytes.Clone(data)
		om.held++
		om.bytes += int64(len(data))
		o.index.setAccess(om, o.index.next(om))
		return nil
	})
}

// PutChunks implements Objects.
func (m *Mem) PutChunks(id cid.Cid, chunks []object.Chunk) error {
	return m.withObject(id, func(o *memObjects, om *objMeta) error {
		if err := checkChunks(om.info, chunks); err != nil {
			return fmt.Errorf("store: put chunks: %w", err)
		}
		key := id.KeyString()
		cs := o.chunks[key]
		added := false
		for _, c := range chunks {
			if _, ok := cs[c.Index]; ok {
				continue
			}
			if cs == nil {
				cs = make(map[uint64][]byte)
				o.chunks[key] = cs
			}
			cs[c.Index] = bytes.Clone(c.Data)
			om.held++
			om.bytes += int64(len(c.Data))
			added = true
		}
		if added {
			o.index.setAccess(om, o.index.next(om))
		}
		return nil
	})
}

// AppendChunks implements Objects.
func (m *Mem) AppendChunks(dst []byte, id cid.Cid, first, count uint64) ([]byte, error) {
	if count == 0 || count > MaxPutChunks {
		return dst, fmt.Errorf("%w: read of %d chunks (1 to %d)", ErrBadObject, count, MaxPutChunks)
	}
	out := dst
	err := m.withObject(id, func(o *memObjects, _ *objMeta) error {
		for i := first; i-first < count; i++ {
			c, ok := o.chunks[id.KeyString()][i]
			if !ok {
				return ErrNotFound
			}
			out = append(out, c...)
		}
		if out == nil {
			out = []byte{}
		}
		return nil
	})
	if err != nil {
		return dst, err
	}
	return out, nil
}

// Have implements Objects.
func (m *Mem) Have(id cid.Cid) ([]byte, error) {
	var bits []byte
	err := m.withObject(id, func(o *memObjects, om *objMeta) error {
		bits = make([]byte, (om.info.Chunks()+7)/8)
		for i := range o.chunks[id.KeyString()] {
			bits[i/8] |= 1 << (i % 8)
		}
		return nil
	})
	return bits, err
}

// PutHashes implements Objects.
func (m *Mem) PutHashes(id cid.Cid, hashes map[object.Bin][]byte) error {
	return m.withObject(id, func(o *memObjects, om *objMeta) error {
		if err := checkHashes(om.info, hashes); err != nil {
			return fmt.Errorf("store: put hashes: %w", err)
		}
		key := id.KeyString()
		hs := o.hashes[key]
		if hs == nil {
			hs = make(map[object.Bin][]byte)
			o.hashes[key] = hs
		}
		for b, h := range hashes {
			hs[b] = bytes.Clone(h)
		}
		return nil
	})
}

// GetHash implements Objects.
func (m *Mem) GetHash(id cid.Cid, bin object.Bin) ([]byte, error) {
	var out []byte
	err := m.withObject(id, func(o *memObjects, _ *objMeta) error {
		h, ok := o.hashes[id.KeyString()][bin]
		if !ok {
			return ErrNotFound
		}
		out = bytes.Clone(h)
		return nil
	})
	return out, err
}

// Pin implements Objects.
func (m *Mem) Pin(id cid.Cid) error { return m.setPinned(id, true) }

// Unpin implements Objects.
func (m *Mem) Unpin(id cid.Cid) error { return m.setPinned(id, false) }

func (m *Mem) setPinned(id cid.Cid, pinned bool) error {
	return m.withObject(id, func(_ *memObjects, om *objMeta) error {
		om.pinned = pinned
		return nil
	})
}

// Touch implements Objects.
func (m *Mem) Touch(id cid.Cid) error {
	return m.withObject(id, func(o *memObjects, om *objMeta) error {
		o.index.setAccess(om, o.index.next(om))
		return nil
	})
}

// Evict implements Objects. The leases on evicted objects stay.
func (m *Mem) Evict(now time.Time, cacheBytes int64, inUse func(cid.Cid) bool) ([]cid.Cid, error) {
	o, err := m.lockObjects()
	if err != nil {
		return nil, err
	}
	defer m.unlockObjects()
	var out []cid.Cid
	for _, om := range o.index.victims(now, cacheBytes, inUse) {
		o.delete(om.id)
		out = append(out, om.id)
	}
	return out, nil
}

// Delete implements Objects. The leases on the object stay.
func (m *Mem) Delete(id cid.Cid) error {
	return m.withObject(id, func(o *memObjects, om *objMeta) error {
		o.delete(om.id)
		return nil
	})
}

// delete drops an object's info, chunks and hashes; o.mu must be held.
func (o *memObjects) delete(id cid.Cid) {
	key := id.KeyString()
	delete(o.index.objs, key)
	delete(o.chunks, key)
	delete(o.hashes, key)
}
