package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/contextd/contextd/feed"
)

// Context index keys (doc.go has the whole layout).
const (
	prefixCtxMsg    = 'x' // x ctx cursorBE8 → author(32) seqBE8
	prefixCtxCursor = 'y' // y ctx → latest cursor BE8
	prefixCtxMember = 'm' // m ctx author → messages BE8, highest seq BE8
	prefixJoined    = 'j' // j ctx → empty: the node takes part in ctx

	ctxMsgKeyLen = 1 + idLen + 8
	ctxRefValLen = idLen + 8
	ctxMemValLen = 24 // 16 in stores written before the byte counts: their bytes read as 0
)

func ctxMsgKey(ctx feed.ID, cursor uint64) []byte {
	k := make([]byte, 0, ctxMsgKeyLen)
	k = append(k, prefixCtxMsg)
	k = append(k, ctx[:]...)
	return binary.BigEndian.AppendUint64(k, cursor)
}

// writeCtxLocked adds the batch's ctx records to the index in txn: each
// message gets its context's next cursor, and the contexts' cursors and
// member records move with them. s.ctxMu must be held until txn commits.
func writeCtxLocked(txn *badger.Txn, b *batch) error {
	for _, u := range b.ctxUpdates() {
		cursor, err := readCtxCursor(txn, u.ctx)
		if err != nil {
			return err
		}
		for _, seq := range u.seqs {
			cursor++
			v := make([]byte, 0, ctxRefValLen)
			v = append(v, b.author[:]...)
			v = binary.BigEndian.AppendUint64(v, seq)
			if err := txn.Set(ctxMsgKey(u.ctx, cursor), v); err != nil {
				return err
			}
		}
		if err := txn.Set(idKey(prefixCtxCursor, u.ctx), binary.BigEndian.AppendUint64(nil, cursor)); err != nil {
			return err
		}
		mk := pairKey(prefixCtxMember, u.ctx, b.author)
		var old CtxMember
		if err := readValue(txn, mk, func(v []byte) (err error) { old, err = decodeMember(b.author, v); return err }); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		m := CtxMember{Author: b.author, Messages: old.Messages + u.members.Messages,
			Seq: max(old.Seq, u.members.Seq), Bytes: old.Bytes + u.members.Bytes}
		if err := txn.Set(mk, encodeMember(m)); err != nil {
			return err
		}
		if err := addCounter(txn, idKey(prefixCtxBytes, u.ctx), int64(u.members.Bytes)); err != nil {
			return err
		}
	}
	return nil
}

func readCtxCursor(txn *badger.Txn, ctx feed.ID) (uint64, error) {
	var c uint64
	err := readValue(txn, idKey(prefixCtxCursor, ctx), func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%w: context cursor of %d bytes", ErrCorrupt, len(v))
		}
		c = binary.BigEndian.Uint64(v)
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return c, err
}

func encodeMember(m CtxMember) []byte {
	v := make([]byte, 0, ctxMemValLen)
	v = binary.BigEndian.AppendUint64(v, m.Messages)
	v = binary.BigEndian.AppendUint64(v, m.Seq)
	return binary.BigEndian.AppendUint64(v, m.Bytes)
}

func decodeMember(author feed.ID, v []byte) (CtxMember, error) {
	if len(v) != ctxMemValLen && len(v) != 16 {
		return CtxMember{}, fmt.Errorf("%w: context member record of %d bytes", ErrCorrupt, len(v))
	}
	m := CtxMember{Author: author, Messages: binary.BigEndian.Uint64(v), Seq: binary.BigEndian.Uint64(v[8:])}
	if len(v) == ctxMemValLen {
		m.Bytes = binary.BigEndian.Uint64(v[16:])
	}
	return m, nil
}

// CtxRefs implements Contexts.
func (s *Badger) CtxRefs(ctx feed.ID, from uint64, limit int, desc bool) ([]CtxRef, error) {
	var out []CtxRef
	if limit <= 0 {
		return out, nil
	}
	err := s.view(func(txn *badger.Txn) error {
		prefix := idKey(prefixCtxMsg, ctx)
		opts := badger.DefaultIteratorOptions
		opts.Prefix, opts.Reverse = prefix, desc
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := ctxMsgKey(ctx, from)
		if desc && from == 0 {
			seek = ctxMsgKey(ctx, ^uint64(0))
		}
		stored := storedCache{}
		for it.Seek(seek); it.ValidForPrefix(prefix) && len(out) < limit; it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != ctxMsgKeyLen {
				return fmt.Errorf("%w: context index key of %d bytes", ErrCorrupt, len(k))
			}
			ref := CtxRef{Cursor: binary.BigEndian.Uint64(k[1+idLen:])}
			if err := item.Value(func(v []byte) error {
				if len(v) != ctxRefValLen {
					return fmt.Errorf("%w: context index value of %d bytes", ErrCorrupt, len(v))
				}
				copy(ref.Author[:], v)
				ref.Seq = binary.BigEndian.Uint64(v[idLen:])
				return nil
			}); err != nil {
				return err
			}
			if ok, err := stored.stored(txn, ref.Author, ref.Seq); err != nil {
				return err
			} else if ok {
				out = append(out, ref)
			}
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr(err, "context index of %s", ctx.Short())
	}
	return out, nil
}

// CtxCursor implements Contexts.
func (s *Badger) CtxCursor(ctx feed.ID) (uint64, error) {
	var c uint64
	err := s.view(func(txn *badger.Txn) (err error) {
		c, err = readCtxCursor(txn, ctx)
		return err
	})
	if err != nil {
		return 0, wrapErr(err, "context cursor of %s", ctx.Short())
	}
	return c, nil
}

// CtxMembers implements Contexts.
func (s *Badger) CtxMembers(ctx feed.ID) ([]CtxMember, error) {
	out := []CtxMember{}
	err := s.view(func(txn *badger.Txn) error {
		return scanIDs(txn, idKey(prefixCtxMember, ctx), func(id feed.ID, v []byte) error {
			m, err := decodeMember(id, v)
			out = append(out, m)
			return err
		})
	})
	if err != nil {
		return nil, wrapErr(err, "members of %s", ctx.Short())
	}
	return out, nil
}

// SetJoined implements Contexts.
func (s *Badger) SetJoined(ctx feed.ID, joined bool) error {
	if err := s.rlock(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		if joined {
			return txn.Set(idKey(prefixJoined, ctx), nil)
		}
		return txn.Delete(idKey(prefixJoined, ctx))
	})
	if err == nil {
		err = s.sync()
	}
	if err != nil {
		return wrapErr(err, "set joined %s", ctx.Short())
	}
	return nil
}

// Joined implements Contexts.
func (s *Badger) Joined() ([]feed.ID, error) {
	out := []feed.ID{}
	err := s.view(func(txn *badger.Txn) error {
		return scanIDs(txn, []byte{prefixJoined}, func(id feed.ID, _ []byte) error {
			out = append(out, id)
			return nil
		})
	})
	if err != nil {
		return nil, wrapErr(err, "joined contexts")
	}
	return out, nil
}

var _ Contexts = (*Badger)(nil)
