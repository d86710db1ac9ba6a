package ebt

import (
	"crypto/sha256"
	"runtime"
	"sync"

	"github.com/contextd/contextd/feed"
)

// Verification happens off Run's goroutine, in two places:
//
//   - Receiving: each session's reader splits an ENTRIES message into runs
//     (consecutive entries of one author) and verifies each run as
//     feed.VerifyRun does, against the run's own first entry: hash links
//     plus the signature of its last entry, which authenticates the run.
//     The core gets verified runs and only checks where they meet its
//     heads. Big runs are hashed in chunks, and the runs of one message
//     verified, on helper goroutines from a pool shared by all sessions.
//   - Sending: a receiver checks only the last signature of each run, so
//     an entry may be stored whose own signature was never checked (or is
//     even invalid: the author committed to it by signing a later entry).
//     Before a session's writer ends an ENTRIES message with an entry, it
//     checks that entry's signature, unless it is known good (sigCache).

// run is a run of one author's entries from one ENTRIES message, as the
// session verified it.
type run struct {
	author  feed.ID
	entries []*feed.Entry // the accepted prefix: consecutive, linked, authenticated by the last one's signature
	ids     []feed.Hash   // ids[i] is entries[i].ID()
	n       int           // entries the run had in the message, accepted or not
	err     error         // why the entries after the accepted prefix were rejected; nil if none were
}

// splitRuns cuts entries, in message order, into maximal stretches of one
// author with consecutive seqs.
func splitRuns(es []*feed.Entry) [][]*feed.Entry {
	var out [][]*feed.Entry
	start := 0
	for i := 1; i <= len(es); i++ {
		if i == len(es) || es[i].Author != es[i-1].Author || es[i].Seq != es[i-1].Seq+1 {
			out = append(out, es[start:i])
			start = i
		}
	}
	return out
}

// verifier verifies received entries on the calling session's goroutine,
// with help, for big runs and messages of several runs, from up to
// GOMAXPROCS-1 more goroutines shared by every session of the Replicator.
// It never waits for a helper: work no helper is free for is done inline.
type verifier struct {
	extra chan struct{} // one token per helper goroutine running
}

func newVerifier() *verifier {
	return &verifier{extra: make(chan struct{}, max(runtime.GOMAXPROCS(0)-1, 0))}
}

// minChunk is the fewest entries a helper goroutine is given to hash or
// check: below it, handing work over costs more than it saves.
const minChunk = 256

// verify splits entries into runs and verifies them.
func (v *verifier) verify(es []*feed.Entry) []run {
	cands := splitRuns(es)
	runs := make([]run, len(cands))
	v.parallel(len(cands), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			runs[i] = v.verifyRun(cands[i])
		}
	})
	return runs
}

// verifyRun verifies consecutive entries of one author as one run against
// the head their first entry claims to follow, exactly as feed.VerifyRun
// does, but hashing big runs on several goroutines. Where the run meets the
// feed as stored is the core's business.
func (v *verifier) verifyRun(es []*feed.Entry) run {
	first := es[0]
	r := run{author: first.Author, n: len(es)}
	ids, linkErr := v.link(first.Author, es)
	n := len(ids)
	if n == 0 {
		r.err = linkErr
		return r
	}
	// The last linked entry's signature authenticates the prefix.
	if sigErr := es[n-1].VerifySignature(); sigErr != nil {
		// Find the first bad signature before it; the entries before
		// that one are each signed.
		n, linkErr = n-1, sigErr
		bad := make([]error, n)
		v.parallel(n, minChunk, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				if bad[i] = es[i].VerifySignature(); bad[i] != nil {
					return
				}
			}
		})
		for i, err := range bad {
			if err != nil {
				n, linkErr = i, err
				break
			}
		}
	}
	r.entries, r.ids, r.err = es[:n], ids[:n], linkErr
	return r
}

// link is feed.LinkRun of author from the head es[0] claims to follow, in
// chunks linked on several goroutines and then joined.
func (v *verifier) link(author feed.ID, es []*feed.Entry) ([]feed.Hash, error) {
	type part struct {
		ids []feed.Hash
		err error
	}
	chunk := max(minChunk, (len(es)+cap(v.extra))/(cap(v.extra)+1))
	parts := make([]part, (len(es)+chunk-1)/chunk)
	v.parallel(len(parts), 1, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			c := es[j*chunk : min((j+1)*chunk, len(es))]
			parts[j].ids, parts[j].err = feed.LinkRun(author, claimedHead(c[0]), c)
		}
	})
	ids := parts[0].ids
	err := parts[0].err
	for j := 1; j < len(parts) && err == nil; j++ {
		// Chunk j must link to the end of chunk j-1 too.
		end := feed.Head{Seq: es[j*chunk-1].Seq, ID: ids[len(ids)-1]}
		if _, err = feed.LinkRun(author, end, es[j*chunk:j*chunk+1]); err != nil {
			break
		}
		ids = append(ids, parts[j].ids...)
		err = parts[j].err
	}
	return ids, err
}

// claimedHead is the head e claims to follow.
func claimedHead(e *feed.Entry) feed.Head {
	if e.Seq == 0 {
		return feed.Head{} // Check rejects e
	}
	return feed.Head{Seq: e.Seq - 1, ID: e.Prev}
}

// parallel calls fn on [0, n) cut into one chunk per goroutine that may
// run, of at least minItems items each: on a helper for each chunk a helper
// is free for, inline for the rest. It returns when all calls have.
func (v *verifier) parallel(n, minItems int, fn func(lo, hi int)) {
	chunk := max(minItems, (n+cap(v.extra))/(cap(v.extra)+1))
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		if hi < n {
			select {
			case v.extra <- struct{}{}:
				wg.Go(func() {
					defer func() { <-v.extra }()
					fn(lo, hi)
				})
				continue
			default:
			}
		}
		fn(lo, hi)
	}
	wg.Wait()
}

// sigCache remembers, per feed, the latest entry whose own signature is
// known to be valid: the last entry of each run appended from a peer (its
// signature authenticated the run) and the entries session writers
// checked. It saves the writers from checking again the entry that ends
// every message to every peer, which live pushes of single entries would
// otherwise cost. It holds one head per feed appended to or sent.
type sigCache struct {
	mu    sync.Mutex // guards heads
	heads map[feed.ID]feed.Head
}

func newSigCache() *sigCache { return &sigCache{heads: map[feed.ID]feed.Head{}} }

// add records that the entry at h is validly signed.
func (c *sigCache) add(author feed.ID, h feed.Head) {
	c.mu.Lock()
	if h.Seq > c.heads[author].Seq {
		c.heads[author] = h
	}
	c.mu.Unlock()
}

// has reports whether the entry at h is known to be validly signed.
func (c *sigCache) has(author feed.ID, h feed.Head) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heads[author] == h
}

// maxUnsignedTail bounds the entries a writer checks back from the end of
// a message for one whose signature is valid. Only an author that commits
// to entries it did not sign makes it look further; a feed whose author
// left more unsigned entries in a row than this may not be relayed.
const maxUnsignedTail = 64

// signedEnd returns how many of enc (the encodings of consecutive entries
// of author, as stored) a message may carry so that it ends with an entry
// whose signature is valid: len(enc) unless the last is unsigned; 0 if none
// of the last maxUnsignedTail+1 is signed (or, for a store that returned
// garbage, decodes).
func signedEnd(author feed.ID, sigs *sigCache, enc [][]byte) int {
	for i := len(enc) - 1; i >= 0 && i >= len(enc)-1-maxUnsignedTail; i-- {
		e, err := feed.Decode(enc[i])
		if err != nil || e.Author != author {
			continue
		}
		h := feed.Head{Seq: e.Seq, ID: sha256.Sum256(enc[i])}
		if sigs.has(author, h) {
			return i + 1
		}
		if e.VerifySignature() == nil {
			sigs.add(author, h)
			return i + 1
		}
	}
	return 0
}
