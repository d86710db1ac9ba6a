package flitlink

import (
	"errors"
	"fmt"
)

// readLoop is the reader goroutine: it reads frames until the connection
// fails or the peer breaks the protocol, and then kills the link. It never
// blocks on anything but the connection.
func (l *Link) readLoop() {
	defer l.wg.Done()
	for {
		h, p, err := readFrame(l.conn, &l.rhdr, l.rbuf, l.cfg.FlitSize)
		if err != nil {
			switch {
			case errors.Is(err, ErrProtocol):
			case isEOF(err):
				err = errPeerClosed
			default:
				err = fmt.Errorf("read: %w", err)
			}
			l.fail(err)
			return
		}
		if err := l.handleFrame(h, p); err != nil {
			l.fail(err)
			return
		}
	}
}

// handleFrame processes one frame; an error kills the link.
func (l *Link) handleFrame(h header, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if h.circuit != 0 {
		if l.peerFlit == 0 {
			return fmt.Errorf("%w: data frame before hello", ErrProtocol)
		}
		return l.handleDataLocked(h, p)
	}
	m, err := parseControl(p)
	if err != nil {
		return err
	}
	if l.peerFlit == 0 && m.typ != ctlHello {
		return fmt.Errorf("%w: control type %d before hello", ErrProtocol, m.typ)
	}
	switch m.typ {
	case ctlHello:
		return l.handleHelloLocked(&m)
	case ctlOpen:
		return l.handleOpenLocked(&m)
	case ctlAccept, ctlRefuse:
		return l.handleReplyLocked(&m)
	case ctlClose:
		return l.handleCloseLocked(&m)
	case ctlCredit:
		return l.handleCreditLocked(&m)
	}
	// A type from a later capability: the peer should not have sent it,
	// but skipping it is harmless.
	return nil
}

func (l *Link) handleHelloLocked(m *control) error {
	switch {
	case l.peerFlit != 0:
		return fmt.Errorf("%w: second hello", ErrProtocol)
	case m.version != Version:
		return fmt.Errorf("%w: peer speaks version %d, want %d", ErrProtocol, m.version, Version)
	case m.capability == 0:
		return fmt.Errorf("%w: hello with capability 0", ErrProtocol)
	case m.flitSize < MinFlitSize || m.flitSize > MaxFlitSize:
		return fmt.Errorf("%w: hello with flit size %d", ErrProtocol, m.flitSize)
	case m.maxMessage < 1 || m.maxMessage > MaxMessageLimit:
		return fmt.Errorf("%w: hello with max message size %d", ErrProtocol, m.maxMessage)
	case m.window < 1 || m.window > MaxWindow:
		return fmt.Errorf("%w: hello with window %d", ErrProtocol, m.window)
	}
	l.peerFlit = int(m.flitSize)
	l.peerWindow = int(m.window)
	l.sendFlit = min(l.cfg.FlitSize, int(m.flitSize))
	l.sendMax = min(l.cfg.MaxMessageSize, int(m.maxMessage))
	l.capability = min(Capability, m.capability)
	close(l.helloCh)
	l.log.Debug("flitlink: hello", "capability", l.capability, "flit", l.sendFlit, "max_message", l.sendMax, "window", l.peerWindow)
	return nil
}

func (l *Link) handleOpenLocked(m *control) error {
	own := uint32(l.nextID % 2)
	switch {
	case m.circuit%2 == own:
		return fmt.Errorf("%w: peer opened circuit %d of our parity", ErrProtocol, m.circuit)
	case m.circuit <= l.lastRemoteID:
		return fmt.Errorf("%w: peer opened circuit %d after %d", ErrProtocol, m.circuit, l.lastRemoteID)
	case l.remoteOpen >= MaxCircuits:
		return fmt.Errorf("%w: peer opened more than %d circuits", ErrProtocol, MaxCircuits)
	}
	l.lastRemoteID = m.circuit
	c := l.newCircuitLocked(m.circuit, m.service, m.class, false)
	c.state = stateOpen
	l.remoteOpen++
	if l.backlog.len() >= l.cfg.AcceptBacklog {
		// Not in the map: the peer sends nothing on it before our reply.
		c.needRefuse = true
		c.refuse = RefuseBacklogFull
		l.queueCtrlLocked(c)
		l.log.Debug("flitlink: refused circuit", "circuit", m.circuit, "service", m.service, "reason", c.refuse)
		return nil
	}
	l.circuits[m.circuit] = c
	c.needAccept = true
	l.queueCtrlLocked(c)
	l.backlog.push(c)
	l.notifyAcceptLocked()
	return nil
}

func (l *Link) handleReplyLocked(m *control) error {
	c := l.circuits[m.circuit]
	if c == nil || !c.local || c.state != stateOpening {
		return fmt.Errorf("%w: reply %d for circuit %d that is not being opened", ErrProtocol, m.typ, m.circuit)
	}
	close(c.reply)
	if m.typ == ctlRefuse {
		c.state = stateRefused
		c.refuse = m.reason
		delete(l.circuits, c.id)
		l.localOpen--
		return nil
	}
	c.state = stateOpen
	if c.abandoned {
		c.closeLocked(ErrCircuitClosed)
	}
	return nil
}

func (l *Link) handleCloseLocked(m *control) error {
	c := l.circuits[m.circuit]
	switch {
	case c == nil || c.state != stateOpen:
		return fmt.Errorf("%w: close of circuit %d that is not open", ErrProtocol, m.circuit)
	case c.remoteClosed:
		return fmt.Errorf("%w: second close of circuit %d", ErrProtocol, m.circuit)
	case c.inPartial:
		return fmt.Errorf("%w: close of circuit %d inside a message", ErrProtocol, m.circuit)
	}
	c.remoteClosed = true
	c.notifyLocked()
	l.maybeFreeLocked(c)
	return nil
}

func (l *Link) handleCreditLocked(m *control) error {
	c := l.circuits[m.circuit]
	if c == nil || c.state != stateOpen {
		// Credit may trail a circuit both sides already closed.
		return nil
	}
	c.sendCredit += int(m.credit)
	if c.sendCredit > l.peerWindow {
		return fmt.Errorf("%w: credit of circuit %d exceeds the window: %d > %d", ErrProtocol, m.circuit, c.sendCredit, l.peerWindow)
	}
	l.readyLocked(c)
	return nil
}

// handleDataLocked adds a data frame to its circuit's message.
func (l *Link) handleDataLocked(h header, p []byte) error {
	c := l.circuits[h.circuit]
	switch {
	case c == nil || c.state != stateOpen:
		return fmt.Errorf("%w: data on circuit %d that is not open", ErrProtocol, h.circuit)
	case c.remoteClosed:
		return fmt.Errorf("%w: data on circuit %d after its close", ErrProtocol, h.circuit)
	}
	if h.cancel() {
		if !c.inPartial {
			return fmt.Errorf("%w: cancel on circuit %d outside a message", ErrProtocol, h.circuit)
		}
		c.dropPartialLocked()
		l.maybeGrantLocked(c)
		return nil
	}
	cost := max(h.length, 1)
	if cost > c.recvOutstanding {
		return fmt.Errorf("%w: circuit %d sent %d bytes with %d bytes of credit", ErrProtocol, h.circuit, cost, c.recvOutstanding)
	}
	if h.first() == c.inPartial {
		return fmt.Errorf("%w: circuit %d fragment flags %#02x out of sequence", ErrProtocol, h.circuit, h.flags)
	}
	size := c.partialLen + h.length
	if size > l.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %w: circuit %d sent a message of more than %d bytes", ErrProtocol, ErrTooLarge, h.circuit, l.cfg.MaxMessageSize)
	}
	c.recvOutstanding -= cost
	l.cfg.Metrics.frameIn(c.class, HeaderSize+h.length)
	switch {
	case c.localClosed:
		// Nobody will read: discard, but keep the flags in sequence and
		// keep the credit flowing so the peer is not stuck, within bounds
		// (limits.go).
		if err := l.discardLocked(h.circuit, cost); err != nil {
			return err
		}
		c.inPartial = h.more()
		c.partialLen = 0
		if c.inPartial {
			c.partialLen = size
		}
	case !h.more() && !c.inPartial:
		data := make([]byte, len(p)) // not nil, even when empty
		copy(data, p)
		c.queue.push(inMsg{data: data, cost: cost})
		c.queuedCost += cost
		c.notifyLocked()
	default:
		c.partial = grow(c.partial, h.length, l.cfg.MaxMessageSize)
		c.partial = append(c.partial, p...)
		c.partialCost += cost
		c.partialLen = size
		c.inPartial = h.more()
		if !c.inPartial {
			if c.partial == nil {
				c.partial = []byte{}
			}
			c.queue.push(inMsg{data: c.partial, cost: c.partialCost})
			c.queuedCost += c.partialCost
			c.dropPartialLocked()
			c.notifyLocked()
		}
	}
	l.maybeGrantLocked(c)
	return nil
}

// grow makes room for n more bytes in b, doubling but never past limit.
func grow(b []byte, n, limit int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	c := min(max(2*cap(b), len(b)+n, 4096), max(limit, len(b)+n))
	nb := make([]byte, len(b), c)
	copy(nb, b)
	return nb
}
