package contexts

import (
	"context"
	"fmt"

	"github.com/contextd/contextd/feed"
)

// Circuit is the message stream the members exchange runs over (a
// flitlink circuit of service Service).
type Circuit interface {
	Send(ctx context.Context, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	CloseWrite() error
}

// ServeMembers answers one members exchange on c: it reads the asker's
// query and the asker's members of each context asked, learns those of
// the contexts this node joined, and answers with its own (none for a
// context it has not joined).
func (m *Manager) ServeMembers(ctx context.Context, c Circuit) error {
	msg, err := c.Recv(ctx)
	if err != nil {
		return fmt.Errorf("contexts: members query: %w", err)
	}
	ids, err := decodeQuery(msg)
	if err != nil {
		return err
	}
	if err := m.learnAnswers(ctx, c, ids); err != nil {
		return err
	}
	if err := m.sendAnswers(ctx, c, ids); err != nil {
		return err
	}
	return c.CloseWrite()
}

// AskMembers runs a members exchange over c for the joined contexts: it
// tells the peer the authors this node knows in each and learns those the
// peer knows.
func (m *Manager) AskMembers(ctx context.Context, c Circuit) error {
	rooms := m.Rooms()
	if len(rooms) > MaxQueryContexts {
		rooms = rooms[:MaxQueryContexts]
	}
	if len(rooms) == 0 {
		return c.CloseWrite()
	}
	if err := c.Send(ctx, encodeQuery(rooms)); err != nil {
		return fmt.Errorf("contexts: members query: %w", err)
	}
	if err := m.sendAnswers(ctx, c, rooms); err != nil {
		return err
	}
	if err := m.learnAnswers(ctx, c, rooms); err != nil {
		return err
	}
	return c.CloseWrite()
}

// sendAnswers sends this node's members of each of ids, in order.
func (m *Manager) sendAnswers(ctx context.Context, c Circuit, ids []feed.ID) error {
	for _, id := range ids {
		var ms []Member
		if m.Joined(id) {
			var err error
			if ms, err = m.members(id); err != nil {
				return err
			}
		}
		if err := c.Send(ctx, encodeAnswer(id, ms)); err != nil {
			return fmt.Errorf("contexts: members answer: %w", err)
		}
	}
	return nil
}

// learnAnswers reads the peer's members of each of ids, in order, and
// learns them.
func (m *Manager) learnAnswers(ctx context.Context, c Circuit, ids []feed.ID) error {
	for _, want := range ids {
		msg, err := c.Recv(ctx)
		if err != nil {
			return fmt.Errorf("contexts: members answer: %w", err)
		}
		id, ms, err := decodeAnswer(msg)
		if err != nil {
			return err
		}
		if id != want {
			return fmt.Errorf("%w: members of %s where %s was due", ErrBadGossip, id.Short(), want.Short())
		}
		authors := make([]feed.ID, len(ms))
		for i, x := range ms {
			authors[i] = x.Author
		}
		m.Learn(id, authors)
	}
	return nil
}

// members returns the authors this node knows in joined context id: those
// it holds messages of (with their highest seq) and those it learned of
// (seq 0), at most MaxAnswerMembers.
func (m *Manager) members(id feed.ID) ([]Member, error) {
	held, err := m.cfg.Node.Members(id)
	if err != nil {
		return nil, fmt.Errorf("contexts: members of %s: %w", id.Short(), err)
	}
	seen := make(map[feed.ID]bool, len(held))
	for _, x := range held {
		seen[x.Author] = true
	}
	m.mu.Lock()
	for a := range m.authors[id] {
		if !seen[a] && a != id && len(held) < MaxAnswerMembers {
			held = append(held, Member{Author: a})
		}
	}
	m.mu.Unlock()
	return held, nil
}
