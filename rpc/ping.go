package rpc

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// nodePing is node.ping: defaults filled in, the bounds checked, the
// round trips summarised.
func nodePing(ctx context.Context, s *Server, _ *call, p api.PingParams) (any, error) {
	if p.Peer.IsZero() {
		return nil, missing("peer")
	}
	size := cmp.Or(p.Size, api.DefaultPingSize)
	count := cmp.Or(p.Count, api.DefaultPingCount)
	interval := cmp.Or(p.IntervalMs, api.DefaultPingInterval)
	switch {
	case size < 1 || size > api.MaxPingSize:
		return nil, api.NewError(api.CodeInvalidParams, "field \"size\": %d: want 1 to %d bytes", size, api.MaxPingSize)
	case count < 1 || count > api.MaxPingCount:
		return nil, api.NewError(api.CodeInvalidParams, "field \"count\": %d: want 1 to %d", count, api.MaxPingCount)
	case interval < api.MinPingInterval || interval > api.MaxPingInterval:
		return nil, api.NewError(api.CodeInvalidParams, "field \"intervalMs\": %d: want %d to %d", interval, api.MinPingInterval, api.MaxPingInterval)
	}
	rtts, err := s.node.Ping(ctx, p.Peer, size, count, time.Duration(interval)*time.Millisecond)
	if err != nil {
		return nil, err
	}
	r := pingSummary(rtts)
	r.Peer, r.Size = p.Peer, size
	if p.Summary {
		r.RTTsUs = nil
	}
	return r, nil
}

// pingSummary returns the samples in microseconds (-1: no reply) and the
// statistics of the replies.
func pingSummary(rtts []time.Duration) api.PingResult {
	r := api.PingResult{Sent: len(rtts), RTTsUs: make([]int64, len(rtts))}
	var got []int64
	var sum int64
	for i, d := range rtts {
		r.RTTsUs[i] = -1
		if d >= 0 {
			r.RTTsUs[i] = d.Microseconds()
			got = append(got, r.RTTsUs[i])
			sum += r.RTTsUs[i]
		}
	}
	r.Received = len(got)
	if len(got) == 0 {
		return r
	}
	slices.Sort(got)
	r.MinUs, r.MaxUs = got[0], got[len(got)-1]
	r.AvgUs = sum / int64(len(got))
	r.P50Us = got[(len(got)-1)*50/100]
	r.P99Us = got[(len(got)-1)*99/100]
	return r
}
