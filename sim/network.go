package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// Machine is what the simulator drives: the sans-IO node contract of
// *mesh.Node. Tests of the engine itself use small fakes.
//
// The simulator hands the same message bytes to every receiver of a relayed
// or broadcast message; a Machine must not modify msg.
type Machine interface {
	Connect(now time.Time, c mesh.ConnID, station bool)
	Disconnect(now time.Time, c mesh.ConnID)
	Receive(now time.Time, c mesh.ConnID, msg []byte)
	Tick(now time.Time)
	Ready() mesh.Ready
	NextDeadline() time.Time
	ID() uint32
	NodeList(includeSelf bool) []uint32
	NodeTime(now time.Time) uint32
}

// DefaultEpoch is virtual time zero: every run starts at this instant.
var DefaultEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultRedial is how long a station waits before connecting again after
// its connection went down. A stock station that loses its uplink rescans
// (a scan of the mesh channel takes 1–2 s), gets an IP by DHCP and opens
// the TCP connection 500 ms later (docs/protocol.md §3.2); 3 s is an estimate
// of that sequence.
const DefaultRedial = 3 * time.Second

// Config configures a Network.
type Config struct {
	// Seed drives every random choice (jitter, loss, flaps, builders).
	// Same seed and same calls give the same run, bit for bit.
	Seed uint64
	// Model is the link model; the zero Model is an instantaneous network
	// with unbounded queues. Use a preset (ESP8266, ESP32, Ideal, ...).
	Model Model
	// Epoch is virtual time zero; zero means DefaultEpoch.
	Epoch time.Time
	// Redial is the station's delay before reconnecting a link that went
	// down (flap, cut, crash of the peer, heal). Zero means DefaultRedial,
	// negative means never reconnect automatically.
	Redial time.Duration
	// WorkTime is how long, in virtual time, the slow work a node's
	// plugins hand to the driver (mesh.Work: a store's fsyncs and image
	// checks) takes; a node runs its works one after the other and goes on
	// stepping meanwhile. Zero does each at once, right after the step
	// that asked for it.
	WorkTime time.Duration
	// OnEvent, if set, sees every event every node reports.
	OnEvent func(n *Node, at time.Time, ev mesh.Event)
	// Trace, if set, receives one text line per machine input and output,
	// for replaying a failing seed by eye: virtual time, a kind letter (B
	// boot, X crash, C connect as station, A accept, D disconnect, R
	// receive, T tick, U application step, W work done (mesh.Work), J
	// clock jump (JumpClock), O output queued), node, conn and message.
	// Times are the network's; a node whose clock jumped sees its own.
	Trace io.Writer
}

// Network is a simulated mesh: nodes, links, a virtual clock and an agenda
// of events. It is not safe for concurrent use; run one Network per
// goroutine.
type Network struct {
	model     Model
	epoch     time.Time
	redial    time.Duration
	workTime  time.Duration
	now       int64 // virtual ns since epoch
	rng       *rand.Rand
	agenda    eventQueue
	seq       uint64
	nodes     []*Node
	byID      map[uint32]*Node
	edges     []*edge
	nextConn  mesh.ConnID
	listeners []func(n *Node, at time.Time, ev mesh.Event)
	trace     io.Writer
	digest    hash.Hash
	scratch   []byte
	stats     Stats
	linkStats map[[2]uint32]*LinkStats
	// linkOverrides are per-pair link models set with SetLink, keyed by
	// node index pair (lower first).
	linkOverrides map[[2]int]Link
	// members changes whenever the set of running nodes changes; the
	// convergence cache (Converged) is valid for one value of it.
	members     uint64
	upCount     int
	convMembers uint64
	incomplete  int     // running nodes whose node list is not complete
	dirtyNodes  []*Node // stepped since the last Converged
}

// New returns an empty network at virtual time zero.
func New(cfg Config) *Network {
	epoch := cfg.Epoch
	if epoch.IsZero() {
		epoch = DefaultEpoch
	}
	redial := cfg.Redial
	if redial == 0 {
		redial = DefaultRedial
	}
	n := &Network{
		model:     cfg.Model,
		epoch:     epoch,
		redial:    redial,
		workTime:  cfg.WorkTime,
		rng:       rand.New(rand.NewPCG(cfg.Seed, 0x6d65736866666c74)), // "meshfflt"
		byID:      map[uint32]*Node{},
		trace:     cfg.Trace,
		digest:    sha256.New(),
		linkStats: map[[2]uint32]*LinkStats{},
	}
	if cfg.OnEvent != nil {
		n.listeners = append(n.listeners, cfg.OnEvent)
	}
	return n
}

// Model returns the network's link model.
func (n *Network) Model() Model { return n.model }

// Now is the current virtual time.
func (n *Network) Now() time.Time { return n.at(n.now) }

// Elapsed is the virtual time since the epoch.
func (n *Network) Elapsed() time.Duration { return time.Duration(n.now) }

// Rand is the network's seeded random source, for scenario code that needs
// randomness in step with the run (picking nodes, payloads).
func (n *Network) Rand() *rand.Rand { return n.rng }

// Nodes returns all nodes in the order they were added.
func (n *Network) Nodes() []*Node { return n.nodes }

// Node returns the node with the given mesh id, or nil.
func (n *Network) Node(id uint32) *Node { return n.byID[id] }

// OnEvent adds a listener that sees every event every node reports.
func (n *Network) OnEvent(fn func(node *Node, at time.Time, ev mesh.Event)) {
	n.listeners = append(n.listeners, fn)
}

// TraceDigest is a SHA-256 over every machine input and output so far
// (times, connections, message bytes): equal digests mean equal runs.
func (n *Network) TraceDigest() [32]byte {
	var d [32]byte
	copy(d[:], n.digest.Sum(nil))
	return d
}

func (n *Network) at(vt int64) time.Time { return n.epoch.Add(time.Duration(vt)) }

func (n *Network) schedule(e event) {
	n.seq++
	e.seq = n.seq
	n.agenda.push(e)
}

// At schedules fn to run at virtual time t (now if t is in the past), in
// order with the network's own events. Use it for scripted faults and
// application traffic.
func (n *Network) At(t time.Time, fn func()) {
	vt := int64(t.Sub(n.epoch))
	if vt < n.now {
		vt = n.now
	}
	n.schedule(event{at: vt, kind: evFunc, fn: fn})
}

// After schedules fn to run d after the current virtual time.
func (n *Network) After(d time.Duration, fn func()) { n.At(n.Now().Add(d), fn) }

// Run processes events until virtual time reaches until; the clock then
// reads until (if it was earlier).
func (n *Network) Run(until time.Time) {
	end := int64(until.Sub(n.epoch))
	for len(n.agenda) > 0 && n.agenda[0].at <= end {
		n.step()
	}
	if end > n.now {
		n.now = end
	}
}

// RunFor runs for d of virtual time.
func (n *Network) RunFor(d time.Duration) { n.Run(n.Now().Add(d)) }

// RunUntil runs until cond holds or limit of virtual time has passed, and
// reports whether cond holds. cond is evaluated before the first event and
// after all events of each distinct virtual instant, so it sees consistent
// states and the clock stops at the first instant it holds.
func (n *Network) RunUntil(cond func() bool, limit time.Duration) bool {
	end := n.now + int64(limit)
	if cond() {
		return true
	}
	for len(n.agenda) > 0 && n.agenda[0].at <= end {
		t := n.agenda[0].at
		for len(n.agenda) > 0 && n.agenda[0].at == t {
			n.step()
		}
		if cond() {
			return true
		}
	}
	if end > n.now {
		n.now = end
	}
	return cond()
}

// step processes the next event.
func (n *Network) step() {
	e := n.agenda.pop()
	n.now = e.at
	n.stats.Events++
	switch e.kind {
	case evTick:
		nd := e.node
		if nd.up && e.gen == nd.tickGen {
			nd.tickPending = false
			n.traceInput(nd, 'T', 0, nil)
			nd.m.Tick(nd.Now())
			n.flush(nd, true)
		}
	case evTxDone:
		if e.node.up && e.gen == e.node.incarnation {
			n.txDone(e.node, e.f)
		}
	case evArrive:
		n.arrive(e.f)
	case evDeliver:
		n.deliver(e.f)
	case evFin:
		n.fin(e.link, int(e.gen))
	case evDial:
		n.dialEvent(e.edge)
	case evFlap:
		l := e.link
		if l.fullyOpen() {
			n.stats.Flaps++
			n.cut(l)
		}
	case evFunc:
		e.fn()
	}
}

// flush collects a node's outputs after an input and acts on them.
func (n *Network) flush(nd *Node, afterTick bool) {
	m := nd.m
	inc := nd.incarnation
	if !nd.dirty {
		nd.dirty = true
		n.dirtyNodes = append(n.dirtyNodes, nd)
	}
	rd := m.Ready()
	for _, out := range rd.Messages {
		n.enqueue(nd, out)
	}
	for _, c := range rd.Close {
		n.closeByNode(nd, c)
	}
	for _, ev := range rd.Events {
		at := n.Now()
		for _, fn := range n.listeners {
			fn(nd, at, ev)
		}
	}
	// A listener may have crashed or restarted the node.
	if !nd.up || nd.incarnation != inc {
		return
	}
	for _, w := range rd.Work {
		n.startWork(nd, w)
		if !nd.up || nd.incarnation != inc {
			return
		}
	}
	n.scheduleTick(nd, m.NextDeadline(), afterTick)
}

// workDoer is a Machine that takes the results of its mesh.Work.
type workDoer interface {
	WorkDone(now time.Time, w mesh.Work, err error)
}

// startWork runs w, a slow job the node asked for, outside its steps: at
// once, or Config.WorkTime after the node's previous work ended. A crash
// loses the work, as it would lose a disk write in progress.
func (n *Network) startWork(nd *Node, w mesh.Work) {
	finish := func() {
		n.traceInput(nd, 'W', 0, nil)
		err := w.Do()
		if wd, ok := nd.m.(workDoer); ok {
			wd.WorkDone(nd.Now(), w, err)
		} else {
			w.Done(nd.Now(), err) // a wrapper of a mesh.Node that does not pass it on
		}
		n.flush(nd, false)
	}
	if n.workTime <= 0 {
		finish()
		return
	}
	inc := nd.incarnation
	at := max(nd.workFree, n.now) + int64(n.workTime)
	nd.workFree = at
	n.schedule(event{at: at, kind: evFunc, fn: func() {
		if nd.up && nd.incarnation == inc {
			finish()
		}
	}})
}

func (n *Network) scheduleTick(nd *Node, deadline time.Time, afterTick bool) {
	if deadline.IsZero() {
		if nd.tickPending {
			nd.tickGen++ // cancel
			nd.tickPending = false
		}
		return
	}
	// The machine's deadline is on its own clock.
	vt := int64(deadline.Sub(n.epoch) - nd.clockAhead)
	if vt <= n.now {
		vt = n.now
		if afterTick {
			// A machine that is still due right after its Tick would spin
			// the clock forever; node time has µs resolution, so wait 1 µs.
			vt = n.now + int64(time.Microsecond)
		}
	}
	if nd.tickPending && nd.tickAt == vt {
		return
	}
	nd.tickGen++
	nd.tickPending = true
	nd.tickAt = vt
	n.schedule(event{at: vt, kind: evTick, node: nd, gen: nd.tickGen})
}

// Stats are the network's link counters.
type Stats struct {
	Messages    uint64 // transmissions: messages that used airtime
	Bytes       uint64 // bytes of those transmissions (NUL terminators included)
	Delivered   uint64 // messages handed to a receiving machine
	Lost        uint64 // transmitted but dropped by the loss model
	QueueDrops  uint64 // dropped because the sender's radio queue was full
	ClosedDrops uint64 // discarded because their connection closed first
	Connects    uint64 // connections established
	Flaps       uint64 // connections closed by the flap model
	Events      uint64 // agenda events processed
	Links       []LinkStats
}

// LinkStats are the counters of one direction between two nodes, over all
// the connections they ever had.
type LinkStats struct {
	From, To   uint32
	Messages   uint64
	Bytes      uint64
	Delivered  uint64
	Lost       uint64
	QueueDrops uint64
}

// Stats returns a snapshot of the counters; Links is sorted by (From, To).
func (n *Network) Stats() Stats {
	s := n.stats
	s.Links = make([]LinkStats, 0, len(n.linkStats))
	for _, ls := range n.linkStats {
		s.Links = append(s.Links, *ls)
	}
	sortLinks(s.Links)
	return s
}

func (n *Network) linkStat(from, to *Node) *LinkStats {
	k := [2]uint32{from.id, to.id}
	ls := n.linkStats[k]
	if ls == nil {
		ls = &LinkStats{From: from.id, To: to.id}
		n.linkStats[k] = ls
	}
	return ls
}

// traceInput records a machine input in the digest and the text trace.
// The inputs (with their times and bytes) determine a deterministic
// machine's outputs, so hashing inputs alone identifies the run.
func (n *Network) traceInput(nd *Node, kind byte, c mesh.ConnID, data []byte) {
	b := n.scratch[:0]
	b = append(b, kind)
	b = binary.LittleEndian.AppendUint64(b, uint64(n.now))
	b = binary.LittleEndian.AppendUint32(b, nd.id)
	b = binary.LittleEndian.AppendUint64(b, uint64(c))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	n.scratch = b
	n.digest.Write(b)
	n.digest.Write(data)
	n.traceLine(nd, kind, c, data)
}

// traceLine writes one line of the text trace, if there is one.
func (n *Network) traceLine(nd *Node, kind byte, c mesh.ConnID, data []byte) {
	if n.trace != nil {
		fmt.Fprintf(n.trace, "%s %c node=%d conn=%d %s\n", time.Duration(n.now), kind, nd.id, c, data)
	}
}
