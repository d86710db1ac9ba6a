package flitlink

import "fmt"

// writeLoop is the writer goroutine, the only one that writes to the
// connection. Each round it fills a batch of frames under l.mu, chosen one
// frame at a time by the scheduler, and writes the batch without the lock.
func (l *Link) writeLoop() {
	defer l.wg.Done()
	for {
		buf, ok := l.nextBatch()
		if !ok {
			return
		}
		if _, err := l.conn.Write(buf); err != nil {
			l.fail(fmt.Errorf("write: %w", err))
			return
		}
	}
}

// nextBatch waits for frames to send and returns them encoded in l.wbuf. A
// batch stops once it holds a flit's worth of bytes, so a frame that becomes
// ready meanwhile waits for at most about two flits. It returns false when
// the link is dead.
func (l *Link) nextBatch() ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.err != nil {
			return nil, false
		}
		limit := l.cfg.FlitSize
		if l.sendFlit > 0 {
			limit = l.sendFlit
		}
		buf := l.wbuf[:0]
		for len(buf) < limit {
			var ok bool
			if buf, ok = l.appendFrameLocked(buf); !ok {
				break
			}
		}
		if len(buf) > 0 {
			return buf, true
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-l.done:
		}
		l.mu.Lock()
	}
}

// appendFrameLocked appends the next frame to send, in priority order: the
// hello, link control (circuit 0), then data of Control, Voice, and Video and
// Data classes by weight. Within a class, circuits take turns frame by frame.
// It reports false if there is nothing to send.
func (l *Link) appendFrameLocked(buf []byte) ([]byte, bool) {
	if !l.helloSent {
		l.helloSent = true
		return appendControlFrame(buf, &control{
			typ:        ctlHello,
			version:    Version,
			capability: Capability,
			flitSize:   uint32(l.cfg.FlitSize),
			maxMessage: uint32(l.cfg.MaxMessageSize),
			window:     uint32(l.cfg.Window),
		}), true
	}
	for {
		c, ok := l.ctrl.pop()
		if !ok {
			break
		}
		c.inCtrl = false
		m, ok := l.nextControlLocked(c)
		if !ok {
			continue
		}
		if c.hasControlLocked() {
			l.queueCtrlLocked(c)
		}
		return appendControlFrame(buf, &m), true
	}
	if l.sendFlit == 0 {
		return buf, false
	}
	for _, cls := range [...]Class{Control, Voice} {
		if b, ok := l.appendDataLocked(buf, cls); ok {
			return b, true
		}
	}
	first, second := Video, Data
	if l.pass[Data] < l.pass[Video] {
		first, second = Data, Video
	}
	for _, cls := range [...]Class{first, second} {
		if b, ok := l.appendDataLocked(buf, cls); ok {
			stride := uint64(DataWeight)
			if cls == Data {
				stride = VideoWeight
			}
			l.pass[cls] += uint64(len(b)-len(buf)) * stride
			return b, true
		}
	}
	return buf, false
}

func appendControlFrame(buf []byte, m *control) []byte {
	start := len(buf)
	buf = appendHeader(buf, header{circuit: 0, flags: flagFirst})
	buf = appendControl(buf, m)
	n := len(buf) - start - HeaderSize
	buf[start+5], buf[start+6], buf[start+7] = byte(n>>16), byte(n>>8), byte(n)
	return buf
}

// nextControlLocked takes c's next pending control message.
func (l *Link) nextControlLocked(c *Circuit) (control, bool) {
	m := control{circuit: c.id}
	switch {
	case c.needOpen:
		c.needOpen = false
		m.typ, m.class, m.service = ctlOpen, c.class, c.service
	case c.needAccept:
		c.needAccept = false
		m.typ = ctlAccept
	case c.needRefuse:
		c.needRefuse = false
		m.typ, m.reason = ctlRefuse, c.refuse
		l.remoteOpen--
	case c.grant > 0:
		m.typ, m.credit = ctlCredit, uint32(c.grant)
		c.grant = 0
	case c.needClose:
		c.needClose = false
		c.sentClose = true
		m.typ = ctlClose
		l.maybeFreeLocked(c)
	default:
		return m, false
	}
	return m, true
}

// appendDataLocked appends the next data frame of class cls, if any.
func (l *Link) appendDataLocked(buf []byte, cls Class) ([]byte, bool) {
	q := &l.ready[cls]
	for {
		c, ok := q.pop()
		if !ok {
			return buf, false
		}
		c.inReady = false
		if !c.sendableLocked() {
			continue
		}
		buf = l.appendFragmentLocked(buf, c)
		if c.sendableLocked() {
			c.inReady = true
			q.push(c) // its turn comes again after the others of its class
		}
		return buf, true
	}
}

// appendFragmentLocked appends c's next frame: a pending cancel, or the next
// fragment of its message, as large as the flit size and credit allow.
func (l *Link) appendFragmentLocked(buf []byte, c *Circuit) []byte {
	if c.needCancel {
		c.needCancel = false
		buf = appendHeader(buf, header{circuit: c.id, flags: flagCancel})
		c.afterSendLocked()
		return buf
	}
	m := c.out
	n := min(len(m.data)-m.off, l.sendFlit, c.sendCredit)
	var flags uint8
	if m.off == 0 {
		flags |= flagFirst
	}
	if m.off+n < len(m.data) {
		flags |= flagMore
	}
	buf = appendHeader(buf, header{circuit: c.id, flags: flags, length: n})
	buf = append(buf, m.data[m.off:m.off+n]...)
	l.cfg.Metrics.frameOut(c.class, HeaderSize+n, m.off == 0, m.queued)
	m.off += n
	c.sendCredit -= max(n, 1)
	if m.off == len(m.data) {
		c.out = nil
		m.finishLocked(nil)
		c.afterSendLocked()
	}
	return buf
}
