package ebt

import "github.com/contextd/contextd/feed"

// The events the core handles and the actions it returns. See core.go for
// the contract between the core and its driver.

// ---- events ----

// feedSnapshot is a feed's state as stored.
type feedSnapshot struct {
	head     feed.Head
	contacts map[feed.ID]feed.Relation // non-none relations of the author
	frozen   bool                      // the store holds a fork proof
	tail     uint64                    // the first stored seq: above 1 once the store pruned the feed
}

type (
	// evInit loads what the store holds. It must be the first event.
	evInit struct {
		feeds map[feed.ID]feedSnapshot // every feed with entries, contacts or a fork proof
	}
	// evConnect: a session with peer started. clock is the peer's clock
	// as stored when the last session with it ended (Store.PeerClock):
	// feeds whose stored seq equals ours are not announced (request
	// skipping). nil means none.
	evConnect struct {
		peer     feed.ID
		acceptor bool // we accepted the circuit: we send notes first
		clock    map[feed.ID]Note
	}
	// evDisconnect: the session with peer ended.
	evDisconnect struct{ peer feed.ID }
	// evNotes: peer sent a NOTES message.
	evNotes struct {
		peer  feed.ID
		notes []feedNote
	}
	// evEntries: peer sent an ENTRIES message. Its entries come in runs
	// the session already verified (verify.go); malformed counts entries
	// that did not decode.
	evEntries struct {
		peer      feed.ID
		runs      []run
		malformed int
	}
	// evAppended answers actAppend. On error, state is the feed as stored.
	evAppended struct {
		act   actAppend
		err   error
		state feedSnapshot
	}
	// evForkChecked answers actCheckFork.
	evForkChecked struct {
		act    actCheckFork
		result forkResult
	}
	// evLocal: the feed changed in the store without us (own publish,
	// scope change); state is the feed as stored now.
	evLocal struct {
		author feed.ID
		state  feedSnapshot
	}
	// evWant: the feeds the node wants beyond its follows (contexts)
	// are now feeds.
	evWant struct {
		feeds map[feed.ID]bool
	}
	// evTick: the timer fired.
	evTick struct{}
)

// forkResult is what the driver found for a received entry at a seq the
// store already holds.
type forkResult uint8

const (
	forkDuplicate forkResult = iota // same entry as stored
	forkProven                      // a validly signed different entry: proof stored
	forkInvalid                     // a different entry that does not verify
)

// ---- actions ----

type (
	// actNotes: send these notes to peer (possibly none: the first NOTES
	// message of a session is sent even when empty).
	actNotes struct {
		peer  feed.ID
		notes []feedNote
	}
	// actSend: send entries from..to (inclusive) of author to peer, after
	// whatever is queued for it.
	actSend struct {
		peer, author feed.ID
		from, to     uint64
	}
	// actCancel: drop entries of author still queued for peer.
	actCancel struct{ peer, author feed.ID }
	// actAppend: append entries (one author, contiguous, verified) in one
	// store batch; head is the feed's head after it. The last entry's own
	// signature has been checked (it ends a verified run).
	actAppend struct {
		peer    feed.ID
		entries []*feed.Entry
		ids     []feed.Hash // ids[i] is entries[i].ID()
		head    feed.Head
	}
	// actCheckFork: entry is at a seq the store holds: compare it with the
	// stored one; if it differs and verifies, store a fork proof.
	actCheckFork struct {
		peer  feed.ID
		entry *feed.Entry
	}
	// actClose: end the session with peer.
	actClose struct {
		peer feed.ID
		err  error
	}
	// actSaveClock: store what the core knows of peer's clock
	// (Store.SetPeerClock), for request skipping in its next session.
	actSaveClock struct {
		peer  feed.ID
		clock map[feed.ID]int64
	}
)
