package rpc

import (
	"context"
	"encoding/json"
	"math"

	"github.com/ipfs/go-cid"

	"github.com/contextd/contextd/feed"
	"github.com/contextd/contextd/rpc/api"
)

// handler decodes its params, calls the node and returns the result to
// encode.
type handler func(ctx context.Context, s *Server, cl *call, params json.RawMessage) (any, error)

type method struct {
	handle handler
	scope  string // the scope a token needs to call it (api.Scope*)
	wsOnly bool   // needs a WebSocket (subscriptions)
	// long: the call takes as long as its data needs (an object of any
	// size). Over a WebSocket it is not bounded by CallTimeout but by the
	// connection (a client that goes away ends it) and by the method's
	// own progress checks; over POST, CallTimeout bounds it like any other.
	long bool
}

// methods is the one table of every RPC method. Each names the scope a
// token needs to call it (docs/protocols/rpc.md, "Tokens and scopes"): app
// tokens never change follows or blocks, touch objects, or mint tokens.
// The object and stream endpoints (objects.go, stream.go) need the scope
// of the method they stand for.
var methods = map[string]method{
	api.MethodNodeInfo:    {scope: api.ScopeFeedsRead, handle: noParams(nodeInfo)},
	api.MethodNodePeers:   {scope: api.ScopeAdmin, handle: noParams(nodePeers)},
	api.MethodNodeConnect: {scope: api.ScopeAdmin, handle: withParams(nodeConnect)},
	api.MethodNodeStorage: {scope: api.ScopeAdmin, handle: noParams(nodeStorage)},
	api.MethodNodePing:    {scope: api.ScopeAdmin, handle: withParams(nodePing), long: true},

	api.MethodFeedPublish:     {scope: api.ScopeFeedsWrite, handle: withParams(feedPublish)},
	api.MethodFeedHead:        {scope: api.ScopeFeedsRead, handle: withParams(feedHead)},
	api.MethodFeedGet:         {scope: api.ScopeFeedsRead, handle: withParams(feedGet)},
	api.MethodFeedSubscribe:   {scope: api.ScopeFeedsRead, handle: withParams(feedSubscribe), wsOnly: true},
	api.MethodFeedUnsubscribe: {scope: api.ScopeFeedsRead, handle: withParams(feedUnsubscribe), wsOnly: true},
	api.MethodFeedList:        {scope: api.ScopeFeedsRead, handle: noParams(feedList)},

	api.MethodGraphFollow:   {scope: api.ScopeAdmin, handle: withParams(contact(feed.RelFollow))},
	api.MethodGraphUnfollow: {scope: api.ScopeAdmin, handle: withParams(graphUnfollow)},
	api.MethodGraphBlock:    {scope: api.ScopeAdmin, handle: withParams(contact(feed.RelBlock))},
	api.MethodGraphUnblock:  {scope: api.ScopeAdmin, handle: withParams(contact(feed.RelNone))},
	api.MethodGraphList:     {scope: api.ScopeAdmin, handle: noParams(graphList)},

	api.MethodEBTProgress: {scope: api.ScopeAdmin, handle: noParams(ebtProgress)},
	api.MethodEBTPeers:    {scope: api.ScopeAdmin, handle: noParams(ebtPeers)},

	api.MethodObjectPut:       {scope: api.ScopeAdmin, handle: withParams(objectPut), long: true},
	api.MethodObjectGet:       {scope: api.ScopeAdmin, handle: withParams(objectGet), long: true},
	api.MethodObjectStat:      {scope: api.ScopeAdmin, handle: withParams(objectStat)},
	api.MethodObjectPin:       {scope: api.ScopeAdmin, handle: withParams(objectPin)},
	api.MethodObjectUnpin:     {scope: api.ScopeAdmin, handle: withParams(objectUnpin)},
	api.MethodObjectList:      {scope: api.ScopeAdmin, handle: noParams(objectList)},
	api.MethodObjectProviders: {scope: api.ScopeAdmin, handle: withParams(objectProviders)},
	api.MethodObjectRm:        {scope: api.ScopeAdmin, handle: withParams(objectRm)},

	api.MethodContextCreate:      {scope: api.ScopeContextsWrite, handle: withParams(contextCreate)},
	api.MethodContextJoin:        {scope: api.ScopeContextsWrite, handle: withParams(contextJoin)},
	api.MethodContextLeave:       {scope: api.ScopeContextsWrite, handle: withParams(contextLeave)},
	api.MethodContextList:        {scope: api.ScopeContextsRead, handle: noParams(contextList)},
	api.MethodContextMembers:     {scope: api.ScopeContextsRead, handle: withParams(contextMembers)},
	api.MethodContextPublish:     {scope: api.ScopeContextsWrite, handle: withParams(contextPublish)},
	api.MethodContextSend:        {scope: api.ScopeContextsWrite, handle: withParams(contextSend)},
	api.MethodContextHistory:     {scope: api.ScopeContextsRead, handle: withParams(contextHistory)},
	api.MethodContextSubscribe:   {scope: api.ScopeContextsRead, handle: withParams(contextSubscribe), wsOnly: true},
	api.MethodContextUnsubscribe: {scope: api.ScopeContextsRead, handle: withParams(contextUnsubscribe), wsOnly: true},
	api.MethodContextBan:         {scope: api.ScopeAdmin, handle: withParams(contextBan(true))},
	api.MethodContextUnban:       {scope: api.ScopeAdmin, handle: withParams(contextBan(false))},

	api.MethodStreamOpen:    {scope: api.ScopeStreamsWrite, handle: noParams(streamOpen)},
	api.MethodStreamWrite:   {scope: api.ScopeStreamsWrite, handle: withParams(streamWrite)},
	api.MethodStreamClose:   {scope: api.ScopeStreamsWrite, handle: withParams(streamClose)},
	api.MethodStreamWatch:   {scope: api.ScopeStreamsRead, handle: withParams(streamWatch), wsOnly: true},
	api.MethodStreamUnwatch: {scope: api.ScopeStreamsRead, handle: withParams(feedUnsubscribe), wsOnly: true},
	api.MethodStreamStats:   {scope: api.ScopeStreamsRead, handle: noParams(streamStats)},

	api.MethodTokenCreate: {scope: api.ScopeAdmin, handle: withParams(tokenCreate)},
	api.MethodTokenList:   {scope: api.ScopeAdmin, handle: noParams(tokenList)},
	api.MethodTokenRevoke: {scope: api.ScopeAdmin, handle: withParams(tokenRevoke)},
	api.MethodTokenLogin:  {scope: api.ScopeAdmin, handle: noParams(tokenLogin)},
}

func withParams[P any](f func(ctx context.Context, s *Server, cl *call, p P) (any, error)) handler {
	return func(ctx context.Context, s *Server, cl *call, raw json.RawMessage) (any, error) {
		var p P
		if err := decodeParams(raw, &p); err != nil {
			return nil, err
		}
		return f(ctx, s, cl, p)
	}
}

func noParams(f func(ctx context.Context, s *Server) (any, error)) handler {
	return func(ctx context.Context, s *Server, cl *call, raw json.RawMessage) (any, error) {
		if err := decodeParams(raw, &struct{}{}); err != nil {
			return nil, err
		}
		return f(ctx, s)
	}
}

func nodeInfo(ctx context.Context, s *Server) (any, error) {
	return s.node.Info(), nil
}

func nodePeers(ctx context.Context, s *Server) (any, error) {
	return api.PeersResult{Peers: orEmpty(s.node.Peers())}, nil
}

func nodeConnect(ctx context.Context, s *Server, _ *call, p api.ConnectParams) (any, error) {
	if p.Addr == "" {
		return nil, missing("addr")
	}
	if err := s.node.Connect(ctx, p.Addr); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

// textOrBody returns the body that params with the fields "text" and
// "body" give: at most one of them, at most limit bytes.
func textOrBody(text string, body []byte, limit int) ([]byte, error) {
	if text != "" && body != nil {
		return nil, api.NewError(api.CodeInvalidParams, `give either "text" or "body", not both`)
	}
	if text != "" {
		body = []byte(text)
	}
	if len(body) > limit {
		return nil, api.NewError(api.CodeTooLarge, "body is %d bytes, the limit is %d", len(body), limit)
	}
	return body, nil
}

func feedPublish(ctx context.Context, s *Server, _ *call, p api.PublishParams) (any, error) {
	typ := p.Type
	if typ == "" {
		typ = api.DefaultType
	}
	body, err := textOrBody(p.Text, p.Body, feed.MaxBodySize)
	if err != nil {
		return nil, err
	}
	if err := feed.CheckType(typ); err != nil {
		return nil, api.NewError(api.CodeInvalidParams, "field \"type\": %v", err)
	}
	e, err := s.node.Publish(ctx, typ, body)
	if err != nil {
		return nil, err
	}
	return api.Head{Seq: e.Seq, ID: e.ID()}, nil
}

func feedHead(ctx context.Context, s *Server, _ *call, p api.HeadParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	h, err := s.node.Head(p.ID)
	if err != nil {
		return nil, err
	}
	return api.Head{Seq: h.Seq, ID: h.ID}, nil
}

func feedGet(ctx context.Context, s *Server, _ *call, p api.GetParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	switch {
	case p.Limit < 0 || p.Limit > api.MaxGetLimit:
		return nil, api.NewError(api.CodeInvalidParams, "field \"limit\": %d is not in 0..%d", p.Limit, api.MaxGetLimit)
	case p.Limit == 0:
		p.Limit = api.DefaultGetLimit
	}
	res := api.GetResult{Entries: []api.Entry{}}
	if p.Since == math.MaxUint64 {
		return res, nil
	}
	entries, err := s.node.Entries(p.ID, p.Since+1, p.Limit)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, e := range entries {
		ae := api.FromFeed(e)
		size += ae.EncodedSizeBound()
		if size > api.MaxResultSize && len(res.Entries) > 0 {
			break
		}
		res.Entries = append(res.Entries, ae)
	}
	return res, nil
}

func feedSubscribe(ctx context.Context, s *Server, cl *call, p api.SubscribeParams) (any, error) {
	if p.ID.IsZero() {
		return nil, missing("id")
	}
	id, err := cl.conn.start(feedSource{node: s.node, id: p.ID}, p.Since, cl)
	if err != nil {
		return nil, err
	}
	return api.SubscribeResult{Subscription: id}, nil
}

func feedUnsubscribe(ctx context.Context, s *Server, cl *call, p api.UnsubscribeParams) (any, error) {
	if p.Subscription == "" {
		return nil, missing("subscription")
	}
	if err := cl.conn.unsubscribe(p.Subscription); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func feedList(ctx context.Context, s *Server) (any, error) {
	fs, err := s.node.Feeds()
	if err != nil {
		return nil, err
	}
	return api.FeedsResult{Feeds: orEmpty(fs)}, nil
}

func contact(rel feed.Relation) func(ctx context.Context, s *Server, _ *call, p api.ContactParams) (any, error) {
	return func(ctx context.Context, s *Server, _ *call, p api.ContactParams) (any, error) {
		if p.ID.IsZero() {
			return nil, missing("id")
		}
		e, err := s.node.Contact(ctx, p.ID, rel)
		if err != nil {
			return nil, err
		}
		return api.Head{Seq: e.Seq, ID: e.ID()}, nil
	}
}

func graphList(ctx context.Context, s *Server) (any, error) {
	g, err := s.node.Graph()
	if err != nil {
		return nil, err
	}
	g.Follows, g.Blocks = orEmpty(g.Follows), orEmpty(g.Blocks)
	return g, nil
}

func ebtProgress(ctx context.Context, s *Server) (any, error) {
	return s.node.Progress(), nil
}

func ebtPeers(ctx context.Context, s *Server) (any, error) {
	return api.EBTPeersResult{Peers: orEmpty(s.node.EBTPeers())}, nil
}

// parseCID parses the "cid" field.
func parseCID(s string) (cid.Cid, error) {
	if s == "" {
		return cid.Undef, missing("cid")
	}
	id, err := cid.Decode(s)
	if err != nil {
		return cid.Undef, api.NewError(api.CodeInvalidParams, "field \"cid\": %q is not a CID: %v", truncate(s), err)
	}
	return id, nil
}

func objectPut(ctx context.Context, s *Server, _ *call, p api.ObjectPutParams) (any, error) {
	if p.Path == "" {
		return nil, missing("path")
	}
	return s.node.PutObjectFile(ctx, p.Path)
}

// objectGet fetches an object; with a progress token on a WebSocket it
// sends object.progress notifications, the last before the response.
func objectGet(ctx context.Context, s *Server, cl *call, p api.ObjectGetParams) (any, error) {
	id, err := parseCID(p.CID)
	if err != nil {
		return nil, err
	}
	var progress func(done, total int64)
	if p.Progress != "" && cl.conn != nil {
		pn := newProgressNotifier(cl.conn, api.ObjectProgress{Progress: p.Progress, CID: id.String()})
		defer pn.stop()
		progress = pn.update
	}
	return s.node.GetObject(ctx, id, p.Path, progress)
}

func objectStat(ctx context.Context, s *Server, _ *call, p api.ObjectParams) (any, error) {
	id, err := parseCID(p.CID)
	if err != nil {
		return nil, err
	}
	return s.node.StatObject(id)
}

func objectPin(ctx context.Context, s *Server, _ *call, p api.ObjectParams) (any, error) {
	id, err := parseCID(p.CID)
	if err != nil {
		return nil, err
	}
	if err := s.node.PinObject(ctx, id); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func objectUnpin(ctx context.Context, s *Server, _ *call, p api.ObjectParams) (any, error) {
	id, err := parseCID(p.CID)
	if err != nil {
		return nil, err
	}
	if err := s.node.UnpinObject(id); err != nil {
		return nil, err
	}
	return api.Empty{}, nil
}

func objectList(ctx context.Context, s *Server) (any, error) {
	objs, err := s.node.ListObjects()
	if err != nil {
		return nil, err
	}
	return api.ObjectsResult{Objects: orEmpty(objs)}, nil
}

func objectProviders(ctx context.Context, s *Server, _ *call, p api.ObjectParams) (any, error) {
	id, err := parseCID(p.CID)
	if err != nil {
		return nil, err
	}
	ps, err := s.node.Providers(ctx, id)
	if err != nil {
		return nil, err
	}
	return api.ProvidersResult{Providers: orEmpty(ps)}, nil
}

// orEmpty makes a nil slice encode as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
