package rpc

import (
	"context"

	"github.com/contextd/contextd/rpc/api"
)

// The storage bound methods: graph.unfollow (with forget), object.rm and
// node.storage.

func graphUnfollow(ctx context.Context, s *Server, _ *call, p api.UnfollowParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	return s.node.Unfollow(ctx, p.ID, p.Forget)
}

func objectRm(ctx context.Context, s *Server, _ *call, p api.ObjectRmParams) (any, error) {
	id, err := parseCID(p.CID)
	if err != nil {
		return nil, err
	}
	return s.node.RemoveObject(id, p.Force)
}

func nodeStorage(ctx context.Context, s *Server) (any, error) {
	return s.node.Storage()
}
