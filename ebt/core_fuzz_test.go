package ebt

import (
	"log/slog"
	"testing"
	"time"

	"github.com/contextd/contextd/feed"
)

// FuzzCore drives the state machine with arbitrary event sequences over a
// small cast and checks its invariants after every event: it never panics,
// each feed has at most one source and that source is a live peer, nothing
// is pushed to a peer it may not have, appends always extend the head.
func FuzzCore(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 4, 3, 0, 5, 4, 4})
	f.Add([]byte{0, 0, 0, 1, 2, 0, 0, 9, 2, 1, 0, 20, 3, 0, 0, 8, 3, 1, 2, 8, 4, 4, 1, 0})
	f.Add([]byte{0, 2, 2, 2, 1, 16, 3, 2, 6, 9, 6, 0, 3, 2, 0, 9, 5, 4, 7})
	f.Fuzz(fuzzCore)
}

func fuzzCore(t *testing.T, ops []byte) {
	{
		me, a, x := newChain(t, "me"), newChain(t, "a"), newChain(t, "x")
		peers := []feed.ID{newChain(t, "p0").id, newChain(t, "p1").id, newChain(t, "p2").id}
		me.contact(a.id, feed.RelFollow)
		a.add(3)
		a.contact(peers[1], feed.RelBlock) // seq 4
		a.add(4)                           // 5..8
		x.add(2)
		fork := &chain{t: t, key: a.key, id: a.id, entries: append([]*feed.Entry(nil), a.entries[:2]...)}
		fork.add(1)
		bad := *a.entries[4]
		bad.Sig[0] ^= 1
		pool := append(append(append([]*feed.Entry{}, a.entries...), x.entries...), fork.entries[2], &bad)

		c := newCore(me.id, 1, 3*time.Second, slog.New(slog.DiscardHandler))
		now := time.Unix(0, 0)
		stored := map[feed.ID]feed.Head{}
		connected := map[feed.ID]bool{}
		var run func(ev any)
		check := func(acts []any) {
			for _, act := range acts {
				switch act := act.(type) {
				case actAppend:
					first := act.entries[0]
					if h := stored[first.Author]; first.Seq != h.Seq+1 || first.Prev != h.ID {
						t.Fatalf("append of seq %d over head %d", first.Seq, h.Seq)
					}
					stored[first.Author] = act.head
					run(evAppended{act: act})
				case actCheckFork:
					res := forkDuplicate
					if act.entry == fork.entries[2] {
						res = forkProven
					} else if act.entry == &bad {
						res = forkInvalid
					}
					run(evForkChecked{act: act, result: res})
				case actSend:
					if !connected[act.peer] || act.from > act.to || act.to > stored[act.author].Seq {
						t.Fatalf("bad send %+v", act)
					}
					if act.author == a.id && act.peer == peers[1] && act.to >= 4 {
						t.Fatalf("sent a's entries up to %d to p1, blocked at 4", act.to)
					}
				case actNotes:
					if !connected[act.peer] {
						t.Fatalf("notes to a gone peer")
					}
				}
			}
		}
		run = func(ev any) { check(c.handle(now, ev)) }
		run(evInit{feeds: map[feed.ID]feedSnapshot{me.id: snap(me, 1)}})
		stored[me.id] = me.head()

		for i := 0; i+2 < len(ops); i += 3 {
			op, arg1, arg2 := ops[i]%6, ops[i+1], ops[i+2]
			p := peers[int(arg1)%len(peers)]
			switch op {
			case 0:
				if !connected[p] {
					connected[p] = true
					// A stored clock, maybe (request skipping): seqs
					// around what we hold.
					var clock map[feed.ID]Note
					if arg2%4 >= 2 {
						clock = map[feed.ID]Note{a.id: MakeNote(stored[a.id].Seq+uint64(arg1%2), false), me.id: MakeNote(stored[me.id].Seq, true)}
					}
					run(evConnect{peer: p, acceptor: arg2%2 == 0, clock: clock})
				}
			case 1:
				if connected[p] {
					delete(connected, p)
					run(evDisconnect{peer: p})
				}
			case 2:
				if connected[p] {
					fs := []feed.ID{me.id, a.id, x.id}[int(arg2)%3]
					run(evNotes{peer: p, notes: []feedNote{{Feed: fs, Note: Note(int64(arg2)/3 - 1)}}})
				}
			case 3:
				if connected[p] {
					start := int(arg2) % len(pool)
					end := min(len(pool), start+1+int(arg1)%4)
					run(evEntries{peer: p, runs: newVerifier().verify(pool[start:end])})
				}
			case 4:
				now = now.Add(time.Duration(arg2%5) * time.Second)
				run(evTick{})
			case 5:
				me.add(1)
				stored[me.id] = me.head()
				run(evLocal{author: me.id, state: snap(me, len(me.entries))})
			}
			for id, fs := range c.feeds {
				n := 0
				for _, q := range c.order {
					if q.rx[id] {
						n++
					}
					for g := range q.push {
						if !c.shared(g, q.id) {
							t.Fatalf("pushing %s to %s, not shared", g.Short(), q.id.Short())
						}
					}
				}
				if (fs.rx == nil) != (n == 0) || n > 1 {
					t.Fatalf("feed %s: source %v, %d peers marked rx", id.Short(), fs.rx != nil, n)
				}
				if fs.rx != nil && (c.peers[fs.rx.id] != fs.rx || fs.frozen) {
					t.Fatalf("feed %s: bad source", id.Short())
				}
			}
			if pr := c.progress(); pr.Current > pr.Target {
				t.Fatalf("progress %+v", pr)
			}
		}
	}
}
