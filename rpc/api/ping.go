package api

import "github.com/contextd/contextd/feed"

// MethodNodePing measures round trips to a peer on a control-class
// circuit (docs/protocols/rpc.md, "node.ping"): PingParams → PingResult.
const MethodNodePing = "node.ping"

// Bounds of node.ping.
const (
	MaxPingSize     = 64 << 10 // bytes per ping
	MaxPingCount    = 10000
	MinPingInterval = 1     // milliseconds
	MaxPingInterval = 10000 // milliseconds
	DefaultPingSize = 64    // bytes, when Size is 0
	// DefaultPingCount and DefaultPingInterval apply when Count or
	// IntervalMs is 0.
	DefaultPingCount    = 10
	DefaultPingInterval = 1000 // milliseconds
)

// PingParams are the params of node.ping: Count pings of Size bytes, one
// every IntervalMs milliseconds (sent on schedule, whether or not the
// replies keep up), to a peer the node has or can make a link to.
// Summary leaves the samples out of the result.
type PingParams struct {
	Peer       feed.ID `json:"peer"`
	Size       int     `json:"size,omitempty"`
	Count      int     `json:"count,omitempty"`
	IntervalMs int     `json:"intervalMs,omitempty"`
	Summary    bool    `json:"summary,omitempty"`
}

// PingResult is the result of node.ping. RTTs are in microseconds; a ping
// whose reply did not come is -1 in RTTsUs and counts in Sent only. The
// statistics are over the replies received (zero if none).
type PingResult struct {
	Peer     feed.ID `json:"peer"`
	Size     int     `json:"size"`
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	RTTsUs   []int64 `json:"rttsUs,omitempty"`
	MinUs    int64   `json:"minUs"`
	AvgUs    int64   `json:"avgUs"`
	P50Us    int64   `json:"p50Us"`
	P99Us    int64   `json:"p99Us"`
	MaxUs    int64   `json:"maxUs"`
}
