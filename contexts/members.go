package contexts

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/contextd/contextd/feed"
)

// Circuit is the message stream the members exchange runs over (a
// flitlink circuit of service Service).
type Circuit interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	CloseWrite() error
}

// ServeMembers answers one members query on c: for each context asked that
// this node has joined, the authors it holds messages of. Contexts not
// joined are answered with no members.
func (m *Manager) ServeMembers(ctx context.Context, c Circuit) error {
	msg, err := c.Recv(ctx)
	if err != nil {
		return fmt.Errorf("contexts: members query: %w", err)
	}
	ids, err := decodeQuery(msg)
	if err != nil {
		return err
	}
	for _, id := range ids {
		var ms []Member
		if m.Joined(id) {
			if ms, err = m.cfg.Node.Members(id); err != nil {
				return fmt.Errorf("contexts: members of %s: %w", id.Short(), err)
			}
		}
		if err := c.Send(ctx, encodeAnswer(id, ms)); err != nil {
			return fmt.Errorf("contexts: members answer: %w", err)
		}
	}
	return c.CloseWrite()
}

// AskMembers asks the peer at the other end of c for the authors of the
// joined contexts and learns them; it returns how many it was told of.
func (m *Manager) AskMembers(ctx context.Context, c Circuit) (int, error) {
	rooms := m.Rooms()
	if len(rooms) > MaxQueryContexts {
		rooms = rooms[:MaxQueryContexts]
	}
	if len(rooms) == 0 {
		return 0, c.CloseWrite()
	}
	if err := c.Send(ctx, encodeQuery(rooms)); err != nil {
		return 0, fmt.Errorf("contexts: members query: %w", err)
	}
	asked := map[feed.ID]bool{}
	for _, id := range rooms {
		asked[id] = true
	}
	told := 0
	for range rooms {
		msg, err := c.Recv(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return told, fmt.Errorf("contexts: members answer: %w", err)
		}
		id, ms, err := decodeAnswer(msg)
		if err != nil {
			return told, err
		}
		if !asked[id] {
			return told, fmt.Errorf("%w: answer for context %s not asked", ErrBadGossip, id.Short())
		}
		delete(asked, id)
		authors := make([]feed.ID, len(ms))
		for i, x := range ms {
			authors[i] = x.Author
		}
		m.Learn(id, authors)
		told += len(ms)
	}
	return told, c.CloseWrite()
}
