package tcp

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// conn is one TCP connection of the driver. Its reader and writer run in
// their own goroutines; everything else about it belongs to the loop.
type conn struct {
	id      mesh.ConnID
	nc      net.Conn
	station bool   // we dialled it
	remote  string // peer address, for logs
	out     *outQueue

	// ended is non-nil for station-side connections: the loop sends
	// whether the connection ever synced when it is gone, so the dialer
	// knows whether to start its backoff over.
	ended chan bool

	// Owned by the loop.
	inNode bool // the node knows the connection (Connect called, not yet closed)
	synced bool // the node reported NewConnection on it
}

// outQueue is a connection's outgoing queue: one FIFO per mesh priority.
// The loop pushes, the writer goroutine pops.
type outQueue struct {
	mu       sync.Mutex
	prio     [4][][]byte
	bytes    int
	max      int
	draining bool // write what is queued, then close
	stopped  bool // close now, discard what is queued
	wake     chan struct{}
}

func newOutQueue(max int) *outQueue {
	return &outQueue{max: max, wake: make(chan struct{}, 1)}
}

func (q *outQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pushResult says what became of a pushed message.
type pushResult int

const (
	pushed      pushResult = iota
	pushFull               // dropped: the queue would pass its limit
	pushClosing            // dropped: the connection is closing
)

// push queues data at priority p. Unless it reports pushed, the message
// was dropped.
func (q *outQueue) push(p mesh.Priority, data []byte) pushResult {
	p = min(max(p, mesh.PriorityCritical), mesh.PriorityLow)
	q.mu.Lock()
	if q.draining || q.stopped {
		q.mu.Unlock()
		return pushClosing
	}
	if q.bytes+len(data)+1 > q.max {
		q.mu.Unlock()
		return pushFull
	}
	q.prio[p] = append(q.prio[p], data)
	q.bytes += len(data) + 1
	q.mu.Unlock()
	q.signal()
	return pushed
}

// drain asks the writer to finish what is queued and then close.
func (q *outQueue) drain() {
	q.mu.Lock()
	q.draining = true
	q.mu.Unlock()
	q.signal()
}

// stop asks the writer to close at once.
func (q *outQueue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.prio = [4][][]byte{}
	q.bytes = 0
	q.mu.Unlock()
	q.signal()
}

// take moves up to limit bytes (at least one message) of queued messages,
// highest priority first and FIFO within a priority, into batch.
func (q *outQueue) take(batch [][]byte, limit int) (_ [][]byte, draining, stopped bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for p := range q.prio {
		for len(q.prio[p]) > 0 && (n == 0 || n+len(q.prio[p][0]) <= limit) {
			m := q.prio[p][0]
			q.prio[p][0] = nil
			q.prio[p] = q.prio[p][1:]
			q.bytes -= len(m) + 1
			n += len(m) + 1
			batch = append(batch, m)
		}
		if n >= limit {
			break
		}
	}
	return batch, q.draining, q.stopped
}

// writeBatchLimit is how many bytes the writer takes from the queues before
// it looks again; messages that arrive meanwhile at a higher priority go
// out after at most this much.
const writeBatchLimit = 32 << 10

// writeBufferSize is the writer's buffer, allocated at the first write:
// it gathers small messages into one syscall; larger ones go through.
const writeBufferSize = 4 << 10

// runWriter writes the connection's queued messages until the queue is
// stopped, drained, or a write fails; then it closes the socket, which ends
// the reader and with it the connection. Each message is written whole
// before the next is chosen, so a higher priority never cuts into a
// message already partly written.
func (d *Driver) runWriter(c *conn) {
	defer c.nc.Close()
	var bw *bufio.Writer
	var pw *protocol.Writer
	var batch [][]byte
	for {
		var draining, stopped bool
		batch, draining, stopped = c.out.take(batch[:0], writeBatchLimit)
		if stopped {
			return
		}
		if len(batch) == 0 {
			if draining {
				return
			}
			<-c.out.wake
			continue
		}
		if bw == nil {
			bw = bufio.NewWriterSize(c.nc, writeBufferSize)
			pw = protocol.NewWriter(bw)
		}
		c.nc.SetWriteDeadline(time.Now().Add(d.cfg.WriteTimeout))
		for i, m := range batch {
			if err := pw.WriteMessage(m); err != nil {
				d.log.Debug("write failed", "conn", c.id, "remote", c.remote, "err", err)
				return
			}
			batch[i] = nil
		}
		if err := bw.Flush(); err != nil {
			d.log.Debug("write failed", "conn", c.id, "remote", c.remote, "err", err)
			return
		}
	}
}

// runReader splits the connection's byte stream into messages and hands
// them to the loop; when the stream ends it reports the connection closed.
func (d *Driver) runReader(c *conn) {
	r := protocol.NewReader(c.nc, d.cfg.MaxMessageSize)
	// Not stock (docs/protocol.md §1.5): nothing either side sends is that
	// long, and skipping it would read an endless stream without a NUL.
	r.FailOnTooLarge()
	var err error
	for {
		var msg []byte
		msg, err = r.Next()
		if errors.Is(err, protocol.ErrTooLarge) {
			d.counters.oversize.Add(1)
			d.log.Warn("oversize message, connection closed", "conn", c.id, "remote", c.remote, "err", err)
			c.nc.Close()
			err = nil
			break
		}
		if err != nil {
			break
		}
		// The reader may reuse its buffer; the node may keep the bytes.
		if !d.submit(input{kind: inMessage, c: c, msg: append([]byte(nil), msg...)}) {
			return
		}
	}
	d.submit(input{kind: inClosed, c: c, err: err})
}
