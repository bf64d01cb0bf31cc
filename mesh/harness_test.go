package mesh

import (
	"cmp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// testNet wires a few nodes together with in-memory links and a fake
// clock. Delivery is instant unless a per-direction latency is set; every
// step is deterministic. It is the minimal driver the tests need; the
// full simulator with link models lives in package sim.
type testNet struct {
	t     testing.TB
	epoch time.Time
	now   time.Time
	nodes []*Node
	ends  map[ConnID]*end
	next  ConnID
	queue []delivery
	seq   uint64

	latency map[[2]uint32]time.Duration // (from, to) node ids
	// block, if set, makes a message vanish (a peer that does not answer).
	block func(from, to uint32, msg []byte) bool

	log    []wire             // every delivered message, in order
	events map[uint32][]Event // per node id, in order
}

// end is one side of a link.
type end struct {
	node *Node
	peer ConnID
	dead bool
}

// delivery is a message (or a disconnect, msg nil) due at a time.
type delivery struct {
	at   time.Time
	seq  uint64
	to   ConnID
	msg  []byte
	from uint32
}

// wire is one delivered message.
type wire struct {
	at       time.Time
	from, to uint32
	msg      string
}

var testEpoch = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func newTestNet(t testing.TB) *testNet {
	return &testNet{
		t: t, epoch: testEpoch, now: testEpoch,
		ends:    make(map[ConnID]*end),
		latency: make(map[[2]uint32]time.Duration),
		events:  make(map[uint32][]Event),
		next:    1,
	}
}

// add creates a node with the given id; clock is its ClockStart.
func (tn *testNet) add(id uint32, clock uint32) *Node {
	n := New(Config{ID: id, ClockStart: clock}, tn.now)
	tn.nodes = append(tn.nodes, n)
	return n
}

// node returns the node with id.
func (tn *testNet) node(id uint32) *Node {
	for _, n := range tn.nodes {
		if n.ID() == id {
			return n
		}
	}
	tn.t.Fatalf("no node %d", id)
	return nil
}

// connect links sta (which connects) to ap (which accepts) and runs the
// mesh until quiet. It returns the two ConnIDs (sta side, ap side).
func (tn *testNet) connect(sta, ap *Node) (ConnID, ConnID) {
	cs, ca := tn.next, tn.next+1
	tn.next += 2
	tn.ends[cs] = &end{node: sta, peer: ca}
	tn.ends[ca] = &end{node: ap, peer: cs}
	ap.Connect(tn.now, ca, false)
	sta.Connect(tn.now, cs, true)
	tn.settle()
	return cs, ca
}

// cut breaks the link that c belongs to: both sides see a disconnect.
func (tn *testNet) cut(c ConnID) {
	e := tn.ends[c]
	p := tn.ends[e.peer]
	e.dead, p.dead = true, true
	e.node.Disconnect(tn.now, c)
	p.node.Disconnect(tn.now, e.peer)
	tn.settle()
}

// settle moves every output into the network and delivers whatever is due
// now, until nothing is left to do at this instant.
func (tn *testNet) settle() {
	for steps := 0; ; steps++ {
		if steps > 100000 {
			tn.t.Fatalf("message storm: %d deliveries at %v without settling", steps, tn.since())
		}
		for _, n := range tn.nodes {
			tn.collect(n)
		}
		i := slices.IndexFunc(tn.queue, func(d delivery) bool { return !d.at.After(tn.now) })
		if i < 0 {
			return
		}
		d := tn.queue[i]
		tn.queue = slices.Delete(tn.queue, i, i+1)
		e := tn.ends[d.to]
		switch {
		case d.msg == nil:
			if !e.dead {
				e.dead = true
				e.node.Disconnect(tn.now, d.to)
			}
		case !e.dead:
			tn.log = append(tn.log, wire{at: tn.now, from: d.from, to: e.node.ID(), msg: string(d.msg)})
			e.node.Receive(tn.now, d.to, d.msg)
		}
	}
}

// collect drains n's Ready into the queue.
func (tn *testNet) collect(n *Node) {
	rd := n.Ready()
	tn.events[n.ID()] = append(tn.events[n.ID()], rd.Events...)
	for _, o := range rd.Messages {
		e := tn.ends[o.Conn]
		if e == nil || e.dead {
			tn.t.Fatalf("node %d wrote on unknown or dead connection %d", n.ID(), o.Conn)
		}
		peer := tn.ends[e.peer]
		if tn.block != nil && tn.block(n.ID(), peer.node.ID(), o.Data) {
			continue
		}
		lat := tn.latency[[2]uint32{n.ID(), peer.node.ID()}]
		tn.push(delivery{at: tn.now.Add(lat), to: e.peer, msg: o.Data, from: n.ID()})
	}
	for _, c := range rd.Close {
		e := tn.ends[c]
		if e.dead {
			continue
		}
		e.dead = true
		tn.push(delivery{at: tn.now, to: e.peer})
	}
}

func (tn *testNet) push(d delivery) {
	tn.seq++
	d.seq = tn.seq
	i, _ := slices.BinarySearchFunc(tn.queue, d, func(a, b delivery) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	tn.queue = slices.Insert(tn.queue, i, d)
}

// run advances the clock by d, firing timers and deliveries in order.
func (tn *testNet) run(d time.Duration) {
	tn.runUntil(tn.now.Add(d))
}

func (tn *testNet) runUntil(target time.Time) {
	tn.settle()
	for {
		next := time.Time{}
		if len(tn.queue) > 0 {
			next = tn.queue[0].at
		}
		for _, n := range tn.nodes {
			next = earliest(next, n.NextDeadline())
		}
		if next.IsZero() || next.After(target) {
			break
		}
		if next.After(tn.now) {
			tn.now = next
		}
		for _, n := range tn.nodes {
			if dl := n.NextDeadline(); !dl.IsZero() && !dl.After(tn.now) {
				n.Tick(tn.now)
			}
		}
		tn.settle()
	}
	tn.now = target
}

// since is the time since the epoch of the net.
func (tn *testNet) since() time.Duration { return tn.now.Sub(tn.epoch) }

// messages returns the logged messages from → to (0 = any) of a type.
func (tn *testNet) messages(from, to uint32, typ int) []wire {
	var out []wire
	for _, w := range tn.log {
		if (from == 0 || w.from == from) && (to == 0 || w.to == to) && headerOf(w.msg).Type == typ {
			out = append(out, w)
		}
	}
	return out
}

// received returns the MessageReceived events of node id.
func (tn *testNet) received(id uint32) []MessageReceived {
	var out []MessageReceived
	for _, ev := range tn.events[id] {
		if m, ok := ev.(MessageReceived); ok {
			out = append(out, m)
		}
	}
	return out
}

func headerOf(msg string) protocol.Header {
	h, _ := protocol.ParseHeader([]byte(msg))
	return h
}

// eventsOf returns node id's events of type E.
func eventsOf[E Event](tn *testNet, id uint32) []E {
	var out []E
	for _, ev := range tn.events[id] {
		if e, ok := ev.(E); ok {
			out = append(out, e)
		}
	}
	return out
}

// chain builds nodes ids[0] ← ids[1] ← ... (each connects to the previous).
func (tn *testNet) chain(ids ...uint32) []*Node {
	var ns []*Node
	for i, id := range ids {
		n := tn.add(id, uint32(id)*7919)
		if i > 0 {
			tn.connect(n, ns[i-1])
		}
		ns = append(ns, n)
	}
	return ns
}

// --- a single node driven by hand -------------------------------------------

// probe drives one node directly: the test plays every neighbour.
type probe struct {
	t   testing.TB
	n   *Node
	now time.Time
	// replies answers the node's NODE_SYNC_REQUESTs per connection while
	// advancing, so that links survive NODE_TIMEOUT.
	replies map[ConnID]string
}

func newProbe(t testing.TB, cfg Config) *probe {
	return &probe{t: t, n: New(cfg, testEpoch), now: testEpoch, replies: make(map[ConnID]string)}
}

func (p *probe) at(d time.Duration) time.Time { return testEpoch.Add(d) }

// advance moves time to now+d, ticking at every deadline on the way, and
// returns everything the node produced.
func (p *probe) advance(d time.Duration) Ready {
	target := p.now.Add(d)
	var all Ready
	for {
		dl := p.n.NextDeadline()
		if dl.IsZero() || dl.After(target) {
			break
		}
		p.now = dl
		p.n.Tick(p.now)
		all = merge(all, p.answer(p.n.Ready()))
	}
	p.now = target
	return all
}

func (p *probe) recv(c ConnID, msg string) Ready {
	p.n.Receive(p.now, c, []byte(msg))
	return p.answer(p.n.Ready())
}

// answer plays the neighbours registered in replies: each NODE_SYNC_REQUEST
// the node sent them is answered at once. It returns rd plus what the
// answers produced.
func (p *probe) answer(rd Ready) Ready {
	for _, o := range rd.Messages {
		if r, ok := p.replies[o.Conn]; ok && !slices.Contains(rd.Close, o.Conn) &&
			headerOf(string(o.Data)).Type == protocol.TypeNodeSyncRequest {
			rd = merge(rd, p.recv(o.Conn, r))
		}
	}
	return rd
}

func merge(a, b Ready) Ready {
	a.Messages = append(a.Messages, b.Messages...)
	a.Close = append(a.Close, b.Close...)
	a.Events = append(a.Events, b.Events...)
	return a
}

// texts returns the messages written on connection c.
func texts(rd Ready, c ConnID) []string {
	var out []string
	for _, o := range rd.Messages {
		if o.Conn == c {
			out = append(out, string(o.Data))
		}
	}
	return out
}

// ofType returns the messages of package type typ written on c.
func ofType(rd Ready, c ConnID, typ int) []string {
	var out []string
	for _, m := range texts(rd, c) {
		if headerOf(m).Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// syncWith makes c a synced connection of p's node: it feeds the
// neighbour's node-sync message req, and answers the node's later
// requests with the same tree.
func (p *probe) syncWith(c ConnID, station bool, req string) Ready {
	p.replies[c] = strings.Replace(req, `"type":5`, `"type":6`, 1)
	p.n.Connect(p.now, c, station)
	return merge(p.answer(p.n.Ready()), p.recv(c, req))
}
