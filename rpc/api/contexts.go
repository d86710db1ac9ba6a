package api

import (
	"github.com/contextd/contextd/feed"
)

// Contexts are rooms, streams and followings named by a key (feed.ID). A
// malformed context ID is an invalid-params error; a context the node has
// not joined is ErrNotJoined (CodeNotJoined) for the calls that need it.

// Context methods. Messages are durable (an entry of type ctx in the
// author's feed, and gossiped); datagrams are ephemeral (gossip only).
const (
	MethodContextCreate      = "context.create"      // ContextCreateParams → Context
	MethodContextJoin        = "context.join"        // ContextParams → Context
	MethodContextLeave       = "context.leave"       // ContextParams → Empty
	MethodContextList        = "context.list"        // no params → ContextsResult
	MethodContextMembers     = "context.members"     // ContextParams → MembersResult
	MethodContextPublish     = "context.publish"     // ContextPublishParams → Message
	MethodContextSend        = "context.send"        // ContextPublishParams → Empty
	MethodContextHistory     = "context.history"     // HistoryParams → HistoryResult
	MethodContextSubscribe   = "context.subscribe"   // ContextSubscribeParams → SubscribeResult (WebSocket only)
	MethodContextUnsubscribe = "context.unsubscribe" // UnsubscribeParams → Empty (WebSocket only)
	MethodContextBan         = "context.ban"         // BanParams → Head (of the context's own feed)
	MethodContextUnban       = "context.unban"       // BanParams → Head
)

// Context notifications (WebSocket only).
const (
	// NotifyContextMessage delivers one message of a context subscription:
	// MessageNotification. Each message comes once, in cursor order.
	NotifyContextMessage = "context.message"
	// NotifyContextDatagram delivers one live datagram: DatagramNotification.
	// Datagrams are never replayed: only those that arrive while the
	// subscription runs are delivered, best effort.
	NotifyContextDatagram = "context.datagram"
	// NotifyContextEnd reports that the server ended a context
	// subscription: EndNotification. Nothing of it follows.
	NotifyContextEnd = "context.end"
)

// Context limits.
const (
	// MaxMessageBody is the largest body of a context message or datagram:
	// a message is a feed entry whose body also carries the context ID.
	MaxMessageBody = feed.MaxCtxBody
	// MaxContextName bounds a context's name; MaxContextDescription its
	// description.
	MaxContextName        = feed.MaxCtxName
	MaxContextDescription = feed.MaxCtxDescription
	// DefaultHistoryLimit and MaxHistoryLimit bound one context.history page.
	DefaultHistoryLimit = 100
	MaxHistoryLimit     = 1000
)

// Context describes a context the node knows.
type Context struct {
	ID          feed.ID `json:"id"`
	Name        string  `json:"name,omitempty"`        // from the context's own feed, once the node has it
	Description string  `json:"description,omitempty"` // likewise
	Owner       bool    `json:"owner,omitempty"`       // this node holds the context's key (it can ban)
	Wide        bool    `json:"wide,omitempty"`        // gossips on the wide mesh: created wide (ContextCreateParams.Wide), or a person's key
	Joined      bool    `json:"joined"`
	Messages    uint64  `json:"messages"` // messages held, i.e. the latest cursor
}

// ContextsResult is the result of context.list: the joined contexts, by
// ID, and the node's gossip counters.
type ContextsResult struct {
	Contexts []Context    `json:"contexts"`
	Stats    ContextStats `json:"stats"`
}

// ContextStats counts the gossip of all contexts since the node started.
type ContextStats struct {
	Received   int64 `json:"received"`   // gossip messages from other nodes that passed validation (first copies)
	Duplicates int64 `json:"duplicates"` // further copies of messages already seen
	Rejected   int64 `json:"rejected"`   // messages that failed validation or were ignored (blocked, banned, stale)
	Held       int64 `json:"held"`       // messages held now until the gap before them is filled
	Filled     int64 `json:"filled"`     // held messages stored once their gap was filled
}

// ContextCreateParams are the params of context.create: the node makes a
// new context key, keeps it, writes the name and description to the
// context's feed, and joins.
type ContextCreateParams struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Wide makes a context for a large audience (a broadcast, a stream):
	// its gossip runs on a wide mesh, a few hops across thousands of
	// members at the price of more copies each; a room (the default)
	// runs on a lean one.
	Wide bool `json:"wide,omitempty"`
}

// ContextParams name a context.
type ContextParams struct {
	ID feed.ID `json:"id"`
}

// Member is an author of a context as this node knows it.
type Member struct {
	ID       feed.ID `json:"id"`
	Messages uint64  `json:"messages"`         // messages of it held in the context
	Seq      uint64  `json:"seq"`              // the highest feed seq of its messages held
	Banned   bool    `json:"banned,omitempty"` // the context's key bans it
	Linked   bool    `json:"linked,omitempty"` // the node has a live link to it
}

// MembersResult is the result of context.members, ordered by ID.
type MembersResult struct {
	Members []Member `json:"members"`
}

// ContextPublishParams are the params of context.publish and context.send.
// At most one of Text and Body may be set; the body is at most
// MaxMessageBody bytes.
type ContextPublishParams struct {
	ID   feed.ID `json:"id"`
	Text string  `json:"text,omitempty"`
	Body []byte  `json:"body,omitempty"`
}

// Message is one context message as an app sees it. Cursor is its position
// in the context on this node (1, 2, …, in the order the node stored them;
// each author's messages in their seq order); it never changes, survives
// restarts, and is what context.subscribe and context.history resume from.
type Message struct {
	Context   feed.ID   `json:"context"`
	Cursor    uint64    `json:"cursor"`
	Author    feed.ID   `json:"author"`
	Seq       uint64    `json:"seq"` // the entry's seq in the author's feed
	ID        feed.Hash `json:"id"`  // the entry's ID
	Timestamp int64     `json:"timestamp"`
	Body      []byte    `json:"body"`
	Text      string    `json:"text,omitempty"` // the body when it is valid UTF-8
}

// HistoryParams are the params of context.history: up to Limit messages
// (DefaultHistoryLimit when 0, at most MaxHistoryLimit). Order "oldest"
// (the default) returns cursors > After ascending; "newest" returns cursors
// < Before descending (Before 0 = from the newest).
type HistoryParams struct {
	ID     feed.ID `json:"id"`
	Order  string  `json:"order,omitempty"` // "oldest" or "newest"
	After  uint64  `json:"after,omitempty"`
	Before uint64  `json:"before,omitempty"`
	Limit  int     `json:"limit,omitempty"`
}

// History orders.
const (
	OrderOldest = "oldest"
	OrderNewest = "newest"
)

// HistoryResult is the result of context.history. More tells whether
// messages beyond this page exist in the page's direction.
type HistoryResult struct {
	Messages []Message `json:"messages"`
	More     bool      `json:"more"`
}

// ContextSubscribeParams are the params of context.subscribe: deliver every
// message with cursor > Since, then live ones, each exactly once. With Last
// > 0 and Since == 0 the subscription starts with the last Last messages
// instead of the whole history. Datagrams (context.datagram notifications)
// are delivered only when Datagrams is set.
type ContextSubscribeParams struct {
	ID        feed.ID `json:"id"`
	Since     uint64  `json:"since,omitempty"`
	Last      uint64  `json:"last,omitempty"`
	Datagrams bool    `json:"datagrams,omitempty"`
}

// MessageNotification is the params of a context.message notification.
type MessageNotification struct {
	Subscription string  `json:"subscription"`
	Message      Message `json:"message"`
}

// Datagram is one ephemeral context datagram: signed by its author, never
// stored.
type Datagram struct {
	Context   feed.ID `json:"context"`
	Author    feed.ID `json:"author"`
	Timestamp int64   `json:"timestamp"` // claimed, Unix milliseconds
	Body      []byte  `json:"body"`
	Text      string  `json:"text,omitempty"`
}

// DatagramNotification is the params of a context.datagram notification.
type DatagramNotification struct {
	Subscription string   `json:"subscription"`
	Datagram     Datagram `json:"datagram"`
}

// BanParams are the params of context.ban and context.unban: the node must
// hold the context's key (it created the context).
type BanParams struct {
	ID     feed.ID `json:"id"`
	Author feed.ID `json:"author"`
}
