package store

import (
	"bytes"
	"container/list"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/object"
)

// chunksDir is the subdirectory of a Badger store that holds the chunk
// files: one per object, named by chunkFileName, holding chunk i at byte
// i*ChunkSize (a sparse file while chunks are missing).
const chunksDir = "chunks"

// maxOpenChunkFiles bounds the chunk files a store keeps open between
// calls; files in use by a call stay open until it ends. A file written
// to is synced when it is closed, so that a clean close of the store
// leaves every chunk on disk (as the blobs database's Close does).
const maxOpenChunkFiles = 64

// chunkSumLen is the length of a chunk record's value: the CRC-32C of the
// chunk's bytes.
const chunkSumLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunkSum encodes the record of a held chunk: its CRC-32C.
func chunkSum(data []byte) []byte {
	return binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, castagnoli))
}

// checkChunkSum reports ErrCorrupt unless data matches the stored record
// sum.
func checkChunkSum(sum, data []byte, index uint64) error {
	if len(sum) != chunkSumLen {
		return fmt.Errorf("%w: chunk %d has a record of %d bytes", ErrCorrupt, index, len(sum))
	}
	if binary.BigEndian.Uint32(sum) != crc32.Checksum(data, castagnoli) {
		return fmt.Errorf("%w: chunk %d does not match its checksum (torn by a power loss?)", ErrCorrupt, index)
	}
	return nil
}

// chunkNames encodes object IDs into file names: lowercase base32 without
// padding after a 'b', the CID's own string for CIDv1 (its multibase
// prefix and encoding), at most 206 characters for MaxObjectIDLen bytes.
var chunkNames = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// chunkFileName is the name of object id's chunk file.
func chunkFileName(id cid.Cid) string {
	return "b" + chunkNames.EncodeToString(id.Bytes())
}

// parseChunkFileName returns the object ID a chunk file name encodes.
func parseChunkFileName(name string) (cid.Cid, bool) {
	rest, ok := strings.CutPrefix(name, "b")
	if !ok {
		return cid.Undef, false
	}
	b, err := chunkNames.DecodeString(rest)
	if err != nil {
		return cid.Undef, false
	}
	n, id, err := cid.CidFromBytes(b)
	if err != nil || n != len(b) || chunkFileName(id) != name {
		return cid.Undef, false
	}
	return id, true
}

// chunkFiles is the directory of chunk files with a bounded set of open
// handles, least recently used closed first. It is safe for concurrent
// use.
type chunkFiles struct {
	dir string

	mu   sync.Mutex
	open map[string]*chunkFile // by chunk file name
	lru  list.List             // of *chunkFile, most recent first
}

// chunkFile is an open chunk file, shared by the calls using it.
type chunkFile struct {
	*os.File
	name   string
	refs   int           // calls using it
	dirty  bool          // written to since it was opened
	elem   *list.Element // in chunkFiles.lru, or nil once dropped
	closed error         // what closing it returned, once dropped and unused
}

// finish syncs f if it was written to, and closes it.
func (f *chunkFile) finish() {
	var err error
	if f.dirty {
		err = f.Sync()
	}
	f.closed = errors.Join(err, f.File.Close())
}

func newChunkFiles(dir string) (*chunkFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return &chunkFiles{dir: dir, open: map[string]*chunkFile{}}, nil
}

// path returns the path of object id's chunk file.
func (c *chunkFiles) path(id cid.Cid) string { return filepath.Join(c.dir, chunkFileName(id)) }

// acquire returns object id's chunk file, opened for reading and writing,
// and created if create is set; the caller must release it. A missing file
// is an error matching fs.ErrNotExist.
func (c *chunkFiles) acquire(id cid.Cid, create bool) (*chunkFile, error) {
	name := chunkFileName(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.open[name]; f != nil {
		f.refs++
		c.lru.MoveToFront(f.elem)
		return f, nil
	}
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	osf, err := os.OpenFile(filepath.Join(c.dir, name), flag, 0o600)
	if err != nil {
		return nil, err
	}
	f := &chunkFile{File: osf, name: name, refs: 1}
	f.elem = c.lru.PushFront(f)
	c.open[name] = f
	for c.lru.Len() > maxOpenChunkFiles {
		c.dropLocked(c.lru.Back().Value.(*chunkFile))
	}
	return f, nil
}

// release ends a call's use of f; wrote says the call wrote to it.
func (c *chunkFiles) release(f *chunkFile, wrote bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.dirty = f.dirty || wrote
	f.refs--
	if f.refs == 0 && f.elem == nil {
		f.finish()
	}
}

// dropLocked takes f out of the open set; it is closed now if unused,
// else by the last release. c.mu must be held.
func (c *chunkFiles) dropLocked(f *chunkFile) {
	c.lru.Remove(f.elem)
	f.elem = nil
	delete(c.open, f.name)
	if f.refs == 0 {
		f.finish()
	}
}

// remove closes and deletes object id's chunk file, if any. A call still
// reading it reads on from the unlinked file (Unix).
func (c *chunkFiles) remove(id cid.Cid) error {
	name := chunkFileName(id)
	c.mu.Lock()
	if f := c.open[name]; f != nil {
		f.dirty = false // no point syncing what goes
		c.dropLocked(f)
	}
	c.mu.Unlock()
	if err := os.Remove(filepath.Join(c.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// close syncs and closes every open file; the store is closing, so none
// is in use.
func (c *chunkFiles) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, f := range c.open {
		c.dropLocked(f)
		errs = append(errs, f.closed)
	}
	return errors.Join(errs...)
}

// removeOrphans deletes the files in the directory that are not the chunk
// file of an object keep reports held: those of objects whose deletion a
// crash interrupted after their records were gone, and stray names.
func (c *chunkFiles) removeOrphans(keep func(id cid.Cid) bool) error {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if id, ok := parseChunkFileName(de.Name()); ok && keep(id) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(c.dir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

// moveChunks moves the chunks of a blobs database of layout 3 or before,
// values of its prefixChunkV3 keys, into chunk files, at most MaxPutChunks
// chunks and MaxPutChunkBytes bytes at a time: it writes a batch's bytes
// into their files and syncs them (and the directory), then swaps the
// batch's keys for chunk records in one transaction. A crash leaves the
// chunks not yet swapped under their old keys, and the next open moves
// them again (writing the same bytes at the same place). A chunk that
// reads back at another length than its object's info says (torn by a
// power loss) and the chunks of objects without a record are dropped.
// At the end the blobs value log, now garbage, is collected.
func (s *Badger) moveChunks() error {
	infos := map[string]object.Info{}
	err := s.db.View(func(txn *badger.Txn) error {
		return scanObjKeys(txn, []byte{prefixObject}, 0, func(id cid.Cid, _, v []byte) error {
			info, err := decodeInfo(v)
			infos[id.KeyString()] = info
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("move chunks: %w", err)
	}
	prefix := []byte{prefixChunkV3}
	seek := prefix
	for {
		batch, next, err := s.readV3Chunks(prefix, seek, infos)
		if err != nil || len(batch) == 0 {
			if err != nil {
				return fmt.Errorf("move chunks: %w", err)
			}
			break
		}
		if err := s.writeMovedChunks(batch); err != nil {
			return fmt.Errorf("move chunks: %w", err)
		}
		seek = next
	}
	for s.blobs.RunValueLogGC(0.5) == nil {
	}
	return nil
}

// movedChunk is a chunk moveChunks moves: data is nil for one it drops.
type movedChunk struct {
	key  []byte
	id   cid.Cid
	off  int64
	data []byte
}

// readV3Chunks reads the next batch of chunks under prefix from seek on,
// and the key to seek the batch after from.
func (s *Badger) readV3Chunks(prefix, seek []byte, infos map[string]object.Info) (batch []movedChunk, next []byte, err error) {
	size := 0
	err = s.blobs.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix) && len(batch) < MaxPutChunks && size < MaxPutChunkBytes; it.Next() {
			item := it.Item()
			id, suffix, err := decodeObjKey(item.Key(), 8)
			if err != nil {
				return err
			}
			c := movedChunk{key: item.KeyCopy(nil), id: id}
			next = append(bytes.Clone(c.key), 0)
			info, ok := infos[id.KeyString()]
			if ok {
				index := binary.BigEndian.Uint64(suffix)
				n, err := chunkLen(info, index)
				if err == nil {
					if c.data, err = item.ValueCopy(nil); err != nil {
						return err
					}
					c.off = int64(index) * int64(info.ChunkSize)
				}
				if len(c.data) != n {
					c.data = nil
				}
			}
			batch = append(batch, c)
			size += len(c.data)
		}
		return nil
	})
	return batch, next, err
}

// writeMovedChunks writes a batch of moved chunks into their files, syncs
// them and the directory, then swaps their old keys for chunk records.
func (s *Badger) writeMovedChunks(batch []movedChunk) error {
	files := map[string]*chunkFile{}
	defer func() {
		for _, f := range files {
			s.chunks.release(f, true)
		}
	}()
	for _, c := range batch {
		if c.data == nil {
			continue
		}
		f := files[c.id.KeyString()]
		if f == nil {
			var err error
			if f, err = s.chunks.acquire(c.id, true); err != nil {
				return err
			}
			files[c.id.KeyString()] = f
		}
		if _, err := f.WriteAt(c.data, c.off); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := fsyncPath(s.chunks.dir); err != nil {
		return err
	}
	return update(s.blobs, func(txn *badger.Txn) error {
		for _, c := range batch {
			if err := txn.Delete(c.key); err != nil {
				return err
			}
			if c.data == nil {
				continue
			}
			index := binary.BigEndian.Uint64(c.key[len(c.key)-8:])
			if err := txn.Set(objKeyU64(prefixChunkSum, c.id, index), chunkSum(c.data)); err != nil {
				return err
			}
		}
		return nil
	})
}
