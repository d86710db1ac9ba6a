package feed

import (
	"crypto/sha256"
	"fmt"
)

// VerifyRun verifies entries as consecutive entries of author's feed that
// extend head, for the price of one signature check however long the run
// is, and returns the IDs of the entries it accepts: a prefix of entries,
// all of them exactly when err is nil.
//
// Each entry must pass Check, be by author, and have seq = the previous
// seq + 1 and prev = the previous entry's ID (head's, for the first). Then
// the signature of the last entry is checked. It covers that entry's prev,
// the hash of the entry before it, whose prev is the hash of the one before,
// and so on back to head: one valid signature authenticates the whole run.
//
// When an entry breaks the links, the run is cut before it and its last
// entry's signature is checked instead. When that signature fails, the
// entries are checked one by one from the first (Entry.VerifySignature)
// and the prefix before the first bad signature is accepted. So VerifyRun
// never checks more signatures than it was given entries, and a sender that
// cannot sign costs one or two checks per run.
//
// VerifyRun does not check the other entries' own signatures: an accepted
// run may hold an entry whose signature is invalid although its author
// committed to it by signing a later entry. Such an entry is authentic, but
// a peer sent a run ending with it would reject the run; whoever sends a
// run must have checked the signature of the run's last entry.
func VerifyRun(author ID, head Head, entries []*Entry) ([]Hash, error) {
	ids, linkErr := LinkRun(author, head, entries)
	n := len(ids)
	if n == 0 {
		return nil, linkErr
	}
	sigErr := entries[n-1].VerifySignature()
	if sigErr == nil {
		return ids, linkErr
	}
	for i, e := range entries[:n-1] {
		if err := e.VerifySignature(); err != nil {
			return ids[:i], err
		}
	}
	return ids[:n-1], sigErr
}

// LinkRun is VerifyRun without signatures: it returns the IDs of the
// longest prefix of entries that passes Check and links to head as a run of
// author's feed, and the error that stopped it (nil if all do). The prefix
// is not authenticated until the signature of its last entry is checked.
func LinkRun(author ID, head Head, entries []*Entry) ([]Hash, error) {
	ids := make([]Hash, 0, len(entries))
	var buf []byte
	h := head
	for _, e := range entries {
		err := e.Check()
		if err == nil {
			err = e.follows(author, h)
		}
		if err != nil {
			return ids, err
		}
		buf = e.AppendEncode(buf[:0])
		id := Hash(sha256.Sum256(buf))
		ids = append(ids, id)
		h = Head{Seq: e.Seq, ID: id}
	}
	return ids, nil
}

// follows checks that e is by author and extends head: everything Validate
// checks but the structure and the signature.
func (e *Entry) follows(author ID, head Head) error {
	if e.Author != author {
		return fmt.Errorf("%w: %s, want %s", ErrWrongAuthor, e.Author.Short(), author.Short())
	}
	if e.Seq != head.Seq+1 {
		return fmt.Errorf("%w: seq %d after head %d", ErrWrongSeq, e.Seq, head.Seq)
	}
	if e.Prev != head.ID {
		return fmt.Errorf("%w: seq %d", ErrWrongPrev, e.Seq)
	}
	return nil
}
