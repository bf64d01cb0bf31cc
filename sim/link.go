package sim

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// edge is a wanted connection: station sta dials access point ap. It
// outlives the connections made for it; when one goes down the station
// dials again (after the network's Redial delay) once both nodes run and
// can see each other.
type edge struct {
	sta, ap     *Node
	link        *link // the latest connection made for this edge, or nil
	removed     bool
	dialPending bool
}

// link is one TCP connection. Both ends name it with the same ConnID.
type link struct {
	id    mesh.ConnID
	edge  *edge
	model Link
	ends  [2]*Node // 0: station side, 1: AP side
	open  [2]bool  // the end's machine still has the connection
	dirs  [2]direction
}

// direction is the state of one direction of a link; dirs[i] carries what
// ends[i] sends.
type direction struct {
	lastArrive  int64 // TCP order: nothing arrives before an earlier message
	lastDeliver int64
	stats       *LinkStats
}

func (l *link) fullyOpen() bool { return l.open[0] && l.open[1] }

func (l *link) endOf(nd *Node) int {
	if l.ends[0] == nd {
		return 0
	}
	return 1
}

// ErrSelfLink is returned by Connect when a node is asked to connect to
// itself.
var ErrSelfLink = errors.New("sim: a node cannot connect to itself")

// ErrForeignNode is returned when a node of another Network is passed.
var ErrForeignNode = errors.New("sim: node belongs to another network")

// Connect makes sta dial ap now (sta is the station side, ap accepts), as
// a node does after finding ap's soft-AP in a scan. The connection is kept
// wanted: if it goes down, sta dials again after the Redial delay once both
// nodes run and are not partitioned, skipping the dial while ap is already
// in sta's node list (the stock scan filter, docs/protocol.md §3.2). An explicit
// Connect bypasses that filter, so it can create loops and duplicate links,
// which the nodes themselves must refuse.
func (n *Network) Connect(sta, ap *Node) error {
	if sta.net != n || ap.net != n {
		return ErrForeignNode
	}
	if sta == ap {
		return fmt.Errorf("%w (node %d)", ErrSelfLink, sta.id)
	}
	e := &edge{sta: sta, ap: ap}
	n.edges = append(n.edges, e)
	sta.edges = append(sta.edges, e)
	ap.edges = append(ap.edges, e)
	if n.canDial(e) {
		n.dial(e)
	}
	return nil
}

// Unlink forgets every wanted connection between a and b (either
// direction) and closes their open connections at once, both ends told.
func (n *Network) Unlink(a, b *Node) {
	for _, e := range n.edges {
		if !e.removed && ((e.sta == a && e.ap == b) || (e.sta == b && e.ap == a)) {
			e.removed = true
			if e.link != nil {
				n.cut(e.link)
			}
		}
	}
}

// Cut breaks the open connections between a and b at once (both ends see
// Disconnect), like a TCP connection dying. The station dials again after
// the Redial delay.
func (n *Network) Cut(a, b *Node) {
	for _, l := range slices.Clone(a.links) {
		if l.ends[0] == b || l.ends[1] == b {
			n.cut(l)
		}
	}
}

// SetLink overrides the link model for connections between a and b (either
// direction), the current ones included.
func (n *Network) SetLink(a, b *Node, m Link) error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("sim: link %d-%d: %w", a.id, b.id, err)
	}
	if n.linkOverrides == nil {
		n.linkOverrides = map[[2]int]Link{}
	}
	n.linkOverrides[pairKey(a, b)] = m
	for _, l := range a.links {
		if l.ends[0] == b || l.ends[1] == b {
			l.model = m
		}
	}
	return nil
}

func pairKey(a, b *Node) [2]int {
	if a.index > b.index {
		a, b = b, a
	}
	return [2]int{a.index, b.index}
}

func (n *Network) linkModel(a, b *Node) Link {
	if m, ok := n.linkOverrides[pairKey(a, b)]; ok {
		return m
	}
	return n.model.Link
}

// Partition splits the network: nodes of different groups cannot reach
// each other, and nodes listed in no group form one more group together.
// Connections across groups break at once (both ends see Disconnect) and
// are not dialled again until Heal.
func (n *Network) Partition(groups ...[]*Node) {
	for _, nd := range n.nodes {
		nd.group = 0
	}
	for i, g := range groups {
		for _, nd := range g {
			nd.group = i + 1
		}
	}
	for _, nd := range n.nodes {
		for _, l := range slices.Clone(nd.links) {
			if l.ends[0].group != l.ends[1].group {
				n.cut(l)
			}
		}
	}
}

// Heal ends a partition; stations dial their lost connections again after
// the Redial delay.
func (n *Network) Heal() {
	for _, nd := range n.nodes {
		nd.group = 0
	}
	for _, e := range n.edges {
		n.scheduleDial(e, n.redialDelay())
	}
}

func (n *Network) redialDelay() time.Duration {
	if n.redial < 0 {
		return 0
	}
	return n.redial
}

func (n *Network) canDial(e *edge) bool {
	return !e.removed && e.sta.up && e.ap.up && e.sta.group == e.ap.group &&
		(e.link == nil || !e.link.open[0])
}

// scheduleDial arranges for e's station to dial after d, unless automatic
// redial is off or a dial is already pending.
func (n *Network) scheduleDial(e *edge, d time.Duration) {
	if e.removed || e.dialPending || n.redial < 0 {
		return
	}
	e.dialPending = true
	n.schedule(event{at: n.now + int64(d), kind: evDial, edge: e})
}

func (n *Network) dialEvent(e *edge) {
	e.dialPending = false
	if !n.canDial(e) {
		return // Restart or Heal will schedule it again
	}
	if slices.Contains(e.sta.m.NodeList(false), e.ap.id) {
		// The scan filter: a station does not join an AP it can already
		// reach. Look again later; the mesh may change.
		n.scheduleDial(e, n.redialDelay())
		return
	}
	n.dial(e)
}

func (n *Network) dial(e *edge) {
	n.nextConn++
	l := &link{
		id:    n.nextConn,
		edge:  e,
		model: n.linkModel(e.sta, e.ap),
		ends:  [2]*Node{e.sta, e.ap},
		open:  [2]bool{true, true},
	}
	l.dirs[0].stats = n.linkStat(e.sta, e.ap)
	l.dirs[1].stats = n.linkStat(e.ap, e.sta)
	e.link = l
	for _, nd := range l.ends {
		nd.conns[l.id] = l
		nd.links = append(nd.links, l)
	}
	n.stats.Connects++
	if l.model.FlapInterval > 0 {
		d := time.Duration(n.rng.ExpFloat64() * float64(l.model.FlapInterval))
		n.schedule(event{at: n.now + int64(d), kind: evFlap, link: l})
	}
	sta, ap := e.sta, e.ap
	n.traceInput(sta, 'C', l.id, nil)
	sta.m.Connect(sta.Now(), l.id, true)
	n.flush(sta, false)
	if l.open[1] {
		n.traceInput(ap, 'A', l.id, nil)
		ap.m.Connect(ap.Now(), l.id, false)
		n.flush(ap, false)
	}
}

// enqueue puts one of nd's outputs on its radio queue.
func (n *Network) enqueue(nd *Node, out mesh.Outgoing) {
	l := nd.conns[out.Conn]
	if l == nil {
		n.stats.ClosedDrops++
		nd.stats.ClosedDrops++
		return
	}
	dir := l.endOf(nd)
	size := len(out.Data) + 1
	n.traceLine(nd, 'O', out.Conn, out.Data)
	if q := nd.radio.QueueBytes; q > 0 && nd.queued+size > q {
		n.stats.QueueDrops++
		nd.stats.QueueDrops++
		l.dirs[dir].stats.QueueDrops++
		return
	}
	n.seq++
	f := &frame{link: l, dir: dir, data: out.Data, size: size, prio: out.Priority, seq: n.seq}
	nd.txq.push(f)
	nd.queued += size
	if nd.queued > nd.stats.MaxQueueBytes {
		nd.stats.MaxQueueBytes = nd.queued
	}
	if nd.onAir == nil {
		n.startTx(nd)
	}
}

func (n *Network) startTx(nd *Node) {
	f := nd.txq.pop()
	nd.onAir = f
	f.txStart = n.now
	d := nd.radio.TxOverhead + time.Duration(f.size)*nd.radio.ByteTime
	n.schedule(event{at: n.now + int64(d), kind: evTxDone, node: nd, gen: nd.incarnation, f: f})
}

func (n *Network) txDone(nd *Node, f *frame) {
	nd.onAir = nil
	nd.queued -= f.size
	l := f.link
	if !l.open[f.dir] {
		n.stats.ClosedDrops++
		nd.stats.ClosedDrops++
	} else {
		n.stats.Messages++
		n.stats.Bytes += uint64(f.size)
		nd.stats.TxMessages++
		nd.stats.TxBytes += uint64(f.size)
		d := &l.dirs[f.dir]
		d.stats.Messages++
		d.stats.Bytes += uint64(f.size)
		if l.model.Loss > 0 && n.rng.Float64() < l.model.Loss {
			n.stats.Lost++
			d.stats.Lost++
		} else {
			at := n.now + int64(l.model.Latency)
			if l.model.Jitter > 0 {
				at += n.rng.Int64N(int64(l.model.Jitter))
			}
			if at < d.lastArrive {
				at = d.lastArrive
			}
			d.lastArrive = at
			n.schedule(event{at: at, kind: evArrive, f: f})
		}
	}
	if len(nd.txq) > 0 {
		n.startTx(nd)
	}
}

// arrive passes a message through the receiver's receive budget.
func (n *Network) arrive(f *frame) {
	l := f.link
	r := 1 - f.dir
	if !l.open[r] {
		n.stats.ClosedDrops++
		return
	}
	rcv := l.ends[r]
	t := n.now
	if rx := rcv.radio.RxByteTime; rx > 0 {
		// Fluid model: the receiver absorbs bytes while they are on the
		// air, so a single sender no faster than the receive budget never
		// waits; several senders at once share it.
		start := max(rcv.rxFree, f.txStart+int64(l.model.Latency))
		end := start + int64(f.size)*int64(rx)
		rcv.rxFree = end
		t = max(t, end)
	}
	d := &l.dirs[f.dir]
	t = max(t, d.lastDeliver)
	d.lastDeliver = t
	if t > n.now {
		n.schedule(event{at: t, kind: evDeliver, f: f})
		return
	}
	n.deliver(f)
}

func (n *Network) deliver(f *frame) {
	l := f.link
	r := 1 - f.dir
	if !l.open[r] {
		n.stats.ClosedDrops++
		return
	}
	rcv := l.ends[r]
	n.stats.Delivered++
	rcv.stats.RxMessages++
	rcv.stats.RxBytes += uint64(f.size)
	l.dirs[f.dir].stats.Delivered++
	n.traceInput(rcv, 'R', l.id, f.data)
	rcv.m.Receive(rcv.Now(), l.id, f.data)
	n.flush(rcv, false)
}

// closeByNode handles a machine closing one of its connections: the peer
// learns of it after the data already sent to it (a FIN).
func (n *Network) closeByNode(nd *Node, c mesh.ConnID) {
	l := nd.conns[c]
	if l == nil {
		return
	}
	n.closeWithFin(l, l.endOf(nd))
}

// closeWithFin closes end i without telling its machine and schedules the
// peer's Disconnect after the data in flight towards it.
func (n *Network) closeWithFin(l *link, i int) {
	n.closeEnd(l, i)
	if l.open[1-i] {
		at := max(n.now+int64(l.model.Latency), l.dirs[i].lastArrive)
		n.schedule(event{at: at, kind: evFin, link: l, gen: uint64(i)})
	}
}

// fin tells the peer of end i that i closed.
func (n *Network) fin(l *link, i int) {
	j := 1 - i
	if !l.open[j] {
		return
	}
	if d := l.dirs[i].lastDeliver; d > n.now {
		n.schedule(event{at: d, kind: evFin, link: l, gen: uint64(i)})
		return
	}
	n.closeEnd(l, j)
	n.notifyDisconnect(l.ends[j], l.id)
}

// cut closes both ends at once, telling both machines.
func (n *Network) cut(l *link) {
	for i, nd := range l.ends {
		if l.open[i] {
			n.closeEnd(l, i)
			n.notifyDisconnect(nd, l.id)
		}
	}
}

func (n *Network) notifyDisconnect(nd *Node, c mesh.ConnID) {
	if !nd.up {
		return
	}
	n.traceInput(nd, 'D', c, nil)
	nd.m.Disconnect(nd.Now(), c)
	n.flush(nd, false)
}

// closeEnd forgets the connection at end i and discards what that end
// still had queued for it.
func (n *Network) closeEnd(l *link, i int) {
	if !l.open[i] {
		return
	}
	l.open[i] = false
	nd := l.ends[i]
	delete(nd.conns, l.id)
	if k := slices.Index(nd.links, l); k >= 0 {
		nd.links = slices.Delete(nd.links, k, k+1)
	}
	cnt, bytes := nd.txq.removeLink(l)
	nd.queued -= bytes
	n.stats.ClosedDrops += uint64(cnt)
	nd.stats.ClosedDrops += uint64(cnt)
	if !l.open[1-i] {
		if e := l.edge; e != nil && e.link == l {
			e.link = nil
			n.scheduleDial(e, n.redialDelay())
		}
	}
}
