package rpc

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/contextd/contextd/rpc/api"
)

// progressEvery is the least time between two object.progress
// notifications of one call.
const progressEvery = 100 * time.Millisecond

// progressNotifier sends object.progress notifications for one call,
// coalescing updates so a slow connection never slows the fetch: update
// only records the latest numbers; its goroutine writes them at most every
// progressEvery. stop writes the last numbers and waits for the goroutine.
type progressNotifier struct {
	conn *wsConn
	sig  chan struct{} // capacity 1: numbers changed
	quit chan struct{}
	done chan struct{}

	mu   sync.Mutex         // guards cur and sent
	cur  api.ObjectProgress // the latest numbers
	sent bool               // cur was written
}

func newProgressNotifier(c *wsConn, p api.ObjectProgress) *progressNotifier {
	pn := &progressNotifier{
		conn: c, cur: p, sent: true,
		sig:  make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go pn.run()
	return pn
}

func (pn *progressNotifier) update(done, total int64) {
	pn.mu.Lock()
	pn.cur.Done, pn.cur.Total, pn.sent = done, total, false
	pn.mu.Unlock()
	select {
	case pn.sig <- struct{}{}:
	default:
	}
}

func (pn *progressNotifier) run() {
	defer close(pn.done)
	for {
		select {
		case <-pn.sig:
		case <-pn.quit:
			pn.flush()
			return
		}
		if pn.flush() != nil {
			return // the connection is gone
		}
		t := time.NewTimer(progressEvery)
		select {
		case <-t.C:
		case <-pn.quit:
			t.Stop()
			pn.flush()
			return
		}
	}
}

// flush writes the latest numbers if they were not written yet.
func (pn *progressNotifier) flush() error {
	pn.mu.Lock()
	p, sent := pn.cur, pn.sent
	pn.sent = true
	pn.mu.Unlock()
	if sent {
		return nil
	}
	msg, _ := json.Marshal(p)
	return pn.conn.write(notification(api.NotifyObjectProgress, msg))
}

func (pn *progressNotifier) stop() {
	close(pn.quit)
	<-pn.done
}
