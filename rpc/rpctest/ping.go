package rpctest

import (
	"context"
	"fmt"
	"time"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// Ping answers for peer KeyFor(1) only, at once: ping i takes i+1
// milliseconds, except that every tenth gets no reply (-1). Other peers
// wrap api.ErrUnavailable.
func (n *Node) Ping(ctx context.Context, peer feed.ID, size, count int, interval time.Duration) ([]time.Duration, error) {
	if peer != KeyFor(1).Public() {
		return nil, fmt.Errorf("%w: ping %s: no link", api.ErrUnavailable, peer)
	}
	rtts := make([]time.Duration, count)
	for i := range rtts {
		rtts[i] = time.Duration(i+1) * time.Millisecond
		if i%10 == 9 {
			rtts[i] = -1
		}
	}
	return rtts, nil
}
