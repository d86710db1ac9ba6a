package ebt

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/contextd/contextd/feed"
)

// TestMetrics: a peer sends b entries of a's feed, the same ones again, a
// badly signed one and a fork; b's metrics count each kind, and its notes
// and its session.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newTestNet(t)
		reg := prometheus.NewRegistry()
		n.metrics = NewMetrics(reg)
		b := n.node("b", 0)
		a := newChain(t, "a")
		a.add(4)
		b.setContact(a.id, feed.RelFollow)
		m, _ := n.dialRaw("m", b)
		m.handshake(feedNote{Feed: a.id, Note: MakeNote(4, false)})
		m.notes() // b asks for a's feed
		m.entries(a.entries[:3]...)
		settle(t, time.Second, "entries not appended", func() bool { return b.has(a, 3) })
		m.entries(a.entries[:3]...)
		bad := *a.entries[3]
		bad.Sig[5] ^= 0x40
		m.entries(&bad)
		settle(t, time.Second, "duplicates and invalid entries not counted", func() bool {
			ps := b.r.Peers()
			return len(ps) == 1 && ps[0].Duplicate == 3 && ps[0].Invalid == 1
		})
		other := &chain{t: t, key: a.key, id: a.id, entries: a.entries[:2:2]}
		m.entries(other.next("post", []byte("fork")))
		settle(t, time.Second, "no fork proof", func() bool {
			_, err := b.st.ForkProof(a.id)
			return err == nil
		})

		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, s := range mf.GetMetric() {
				got[mf.GetName()] += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
		for name, want := range map[string]float64{
			"contextd_ebt_entries_received_total":  8, // 3, 3 again, the bad one, the fork
			"contextd_ebt_entries_appended_total":  3,
			"contextd_ebt_entries_duplicate_total": 4, // the fork is at or below the head too
			"contextd_ebt_entries_invalid_total":   1,
			"contextd_ebt_entries_sent_total":      0,
			"contextd_ebt_notes_received_total":    1,
			"contextd_ebt_fork_freezes_total":      1,
			"contextd_ebt_sessions_started_total":  1,
			"contextd_ebt_sessions_active":         1,
			"contextd_ebt_stalls_total":            0,
		} {
			if got[name] != want {
				t.Errorf("%s = %v, want %v", name, got[name], want)
			}
		}
		if got["contextd_ebt_notes_sent_total"] < 1 {
			t.Errorf("contextd_ebt_notes_sent_total = %v, want at least 1", got["contextd_ebt_notes_sent_total"])
		}
	})
}
