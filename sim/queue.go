package sim

import "github.com/meshfleet/meshfleet/mesh"

type eventKind uint8

const (
	evTick    eventKind = iota + 1 // a node's deadline
	evTxDone                       // a message left a radio
	evArrive                       // a message reached the receiving radio
	evDeliver                      // a message cleared the receive budget
	evFin                          // the peer closed: tell this end
	evDial                         // a station (re)connects
	evFlap                         // a connection flaps
	evFunc                         // a scheduled action (At, After)
)

// event is one entry of the simulation's agenda. Events are ordered by
// virtual time, ties by the order they were scheduled (seq), so a run
// depends on nothing but its inputs and seed.
type event struct {
	at   int64 // ns since the epoch
	seq  uint64
	kind eventKind
	gen  uint64 // staleness check: node incarnation, tick generation
	node *Node
	link *link
	f    *frame
	edge *edge
	fn   func()
}

// eventQueue is a binary min-heap of events. Hand-written rather than
// container/heap to keep events unboxed (the agenda is the hot path).
type eventQueue []event

func (q eventQueue) less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}

func (q *eventQueue) push(e event) {
	*q = append(*q, e)
	h := *q
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *eventQueue) pop() event {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = event{} // drop references for the GC
	h = h[:last]
	*q = h
	i := 0
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	return top
}

// frame is one message waiting for or crossing a link.
type frame struct {
	link    *link
	dir     int // index into link.dirs: 0 station→AP, 1 AP→station
	data    []byte
	size    int // bytes on the wire: the JSON plus its NUL terminator
	prio    mesh.Priority
	seq     uint64
	txStart int64
	lagged  bool // Redial's lag was applied (link.lag)
}

// txQueue is a node's radio queue: all its connections' messages, highest
// priority (lowest value) first, FIFO within a priority.
type txQueue []*frame

func (q txQueue) less(i, j int) bool {
	if q[i].prio != q[j].prio {
		return q[i].prio < q[j].prio
	}
	return q[i].seq < q[j].seq
}

func (q *txQueue) push(f *frame) {
	*q = append(*q, f)
	q.up(len(*q) - 1)
}

func (q txQueue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q[i], q[p] = q[p], q[i]
		i = p
	}
}

func (q txQueue) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(q) {
			return
		}
		m := l
		if r := l + 1; r < len(q) && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			return
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}

func (q *txQueue) pop() *frame {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = nil
	h = h[:last]
	*q = h
	h.down(0)
	return top
}

// removeLink drops every queued frame of l and returns their total size.
func (q *txQueue) removeLink(l *link) (n, bytes int) {
	h := *q
	kept := h[:0]
	for _, f := range h {
		if f.link == l {
			n++
			bytes += f.size
			continue
		}
		kept = append(kept, f)
	}
	for i := len(kept); i < len(h); i++ {
		h[i] = nil
	}
	*q = kept
	for i := len(kept)/2 - 1; i >= 0; i-- {
		kept.down(i)
	}
	return n, bytes
}
