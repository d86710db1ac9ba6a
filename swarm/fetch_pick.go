package swarm

import (
	"fmt"
	"slices"
	"time"
)

// This file is what Fetch asks of whom: the per-peer request window, the
// piece picker (rarest first, end game) and requests that time out.

// The per-peer request window: it starts at startInFlight and moves by one
// chunk per chunk received, up while chunks take less than targetDelay
// from request to arrival and down while they take more (at least
// minInFlight); a timeout halves it. The peer's queue thus holds about
// targetDelay of its rate: enough to keep a fast path busy, little enough
// that a slow peer's backlog (what the others wait for at the tail, or
// re-ask when it dies) stays short.
const (
	startInFlight = 8
	minInFlight   = 2
	targetDelay   = 100 * time.Millisecond
)

// unask gives back one request for a missing chunk c: it may be asked
// again (of a second peer in the end game).
func (f *fetcher) unask(c uint64) {
	f.asked[c]--
	f.gen++
}

// forget gives back every request in flight at p.
func (f *fetcher) forget(p *fpeer) {
	for c := range p.inflight {
		f.unask(c)
	}
	clear(p.inflight)
}

// adapt moves p's request window after a chunk that took took from
// request to arrival (see targetDelay).
func (f *fetcher) adapt(p *fpeer, took time.Duration) {
	if took < targetDelay {
		p.limit = min(p.limit+1, p.maxLimit)
	} else {
		p.limit = max(p.limit-1, min(minInFlight, p.maxLimit))
	}
}

// expire handles requests past their deadline and handshakes not come.
func (f *fetcher) expire(now time.Time) {
	for _, p := range f.peers {
		if p.dead {
			continue
		}
		if !p.hs {
			if !now.Before(p.hsDue) {
				f.drop(p, fmt.Errorf("%w: no HANDSHAKE within %v", ErrProtocol, f.cfg.Timeout), false)
			}
			continue
		}
		var late []uint64
		for c, at := range p.inflight {
			if now.Sub(at) >= f.cfg.Timeout {
				late = append(late, c)
			}
		}
		if len(late) == 0 {
			continue
		}
		slices.Sort(late)
		for _, c := range late {
			delete(p.inflight, c)
			f.unask(c)
			p.timedOut[c] = true
		}
		f.stats.Timeouts += len(late)
		p.limit = max(p.limit/2, min(minInFlight, p.maxLimit))
		p.out.pushRanges(late, asCancel)
		if p.strikes++; p.strikes >= 2 {
			f.drop(p, fmt.Errorf("swarm: fetch: peer stalled (%d requests timed out)", len(late)), false)
		}
	}
}

// schedule refills the request window of every ready peer once a quarter
// of it is free, so that one scan for chunks serves several requests.
func (f *fetcher) schedule() {
	now := time.Now()
	for _, p := range f.peers {
		if p.dead || !p.hs || !p.unchoked || p.starved == f.gen+1 {
			continue
		}
		free := p.limit - len(p.inflight)
		if free <= 0 || free < p.limit/4 && len(p.inflight) > 0 {
			continue
		}
		req := f.pick(p, free)
		if len(req) == 0 {
			p.starved = f.gen + 1 // nothing until gen moves
			continue
		}
		for _, c := range req {
			p.inflight[c] = now
			f.asked[c]++
		}
		p.out.pushRanges(req, asRequest)
	}
}

// pick chooses up to k chunks to ask of p: missing chunks p holds that no
// one is asked for, rarest first, lowest index among equals (inside the
// window in streaming mode); in the end game, chunks asked of one other
// peer. The result is sorted rarest first.
func (f *fetcher) pick(p *fpeer, k int) []uint64 {
	for f.lo < f.n && f.done[f.lo] {
		f.lo++
	}
	lo, hi := f.lo, f.n
	if f.cfg.Window > 0 {
		hi = min(f.n, lo+uint64(f.cfg.Window))
	}
	// byAvail[a-1] holds the first k candidates held by a live peers;
	// retry, those that timed out at p before and that others hold too:
	// they come last, so another peer gets them first, but are never
	// excluded (they may have timed out at every holder).
	var byAvail [][]uint64
	var retry []uint64
	for c := lo; c < hi; c++ {
		if f.done[c] || !p.have[c] || f.asked[c] > 0 {
			continue
		}
		if p.timedOut[c] && f.avail[c] > 1 {
			if len(retry) < k {
				retry = append(retry, c)
			}
			continue
		}
		a := max(f.avail[c], 1)
		for len(byAvail) < a {
			byAvail = append(byAvail, nil)
		}
		if len(byAvail[a-1]) < k {
			byAvail[a-1] = append(byAvail[a-1], c)
		}
		if a == 1 && len(byAvail[0]) == k {
			break // none can be rarer
		}
	}
	var out []uint64
	for _, cs := range append(byAvail, retry) {
		out = append(out, cs[:min(len(cs), k-len(out))]...)
	}
	if len(out) > 0 || f.cfg.EndGame < 0 || f.missing > uint64(f.cfg.EndGame) {
		return out
	}
	for c := lo; c < hi && len(out) < k; c++ {
		if _, mine := p.inflight[c]; f.done[c] || !p.have[c] || mine || f.asked[c] > 1 {
			continue
		}
		out = append(out, c)
	}
	return out
}
