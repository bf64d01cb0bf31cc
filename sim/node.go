package sim

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// NodeSpec says how to build a node. The network keeps it and builds the
// node again from it on Restart, so everything a node must remember across
// a reboot belongs in its Storage, not in the plugins' memory.
type NodeSpec struct {
	// Config is the mesh node configuration. On Restart the node boots with
	// ClockStart 0: micros() restarts at power-on.
	Config mesh.Config
	// Plugins, if set, returns fresh plugins for the node each time it
	// starts; they are added with mesh.Node.Use in order.
	Plugins func(n *Node) []mesh.Plugin
	// Radio, if set, overrides the model's radio for this node.
	Radio *Radio
	// Machine, if set, builds the state machine instead of mesh.New (and
	// Plugins is not used). For tests of the simulator itself and for
	// alternative node implementations.
	Machine func(now time.Time, n *Node) Machine
}

// Node is one simulated device: a state machine, its radio and the wanted
// connections to its neighbours.
type Node struct {
	net         *Network
	index       int
	spec        NodeSpec
	id          uint32
	m           Machine
	up          bool
	incarnation uint64
	restarts    int
	storage     *Storage

	radio  Radio
	txq    txQueue
	queued int // bytes in txq plus the frame on air
	onAir  *frame
	rxFree int64

	conns map[mesh.ConnID]*link
	links []*link // open ends, creation order
	edges []*edge
	group int

	tickGen     uint64
	tickPending bool
	tickAt      int64
	workFree    int64 // virtual time the node's last mesh.Work ends
	// clockAhead is how far the node's clock runs ahead of the network's
	// virtual time (JumpClock); power-on resets it.
	clockAhead time.Duration

	// Convergence cache: dirty is set whenever the machine was stepped.
	dirty    bool
	complete bool

	stats NodeStats
}

// NodeStats are one node's radio counters.
type NodeStats struct {
	TxMessages, TxBytes uint64 // transmitted (airtime used)
	RxMessages, RxBytes uint64 // delivered to the machine
	QueueDrops          uint64 // refused by the full radio queue
	ClosedDrops         uint64 // discarded because the connection closed
	MaxQueueBytes       int    // high-water mark of the radio queue
}

// ErrNodeID is returned by AddNode for a zero node id.
var ErrNodeID = errors.New("sim: node id must be non-zero")

// AddNode builds a node from spec and powers it on now. It has no
// connections yet; use Connect or a topology builder.
func (n *Network) AddNode(spec NodeSpec) (*Node, error) {
	if spec.Config.ID == 0 {
		return nil, ErrNodeID
	}
	radio := n.model.Radio
	if spec.Radio != nil {
		radio = *spec.Radio
	}
	nd := &Node{
		net:     n,
		index:   len(n.nodes),
		spec:    spec,
		id:      spec.Config.ID,
		radio:   radio,
		storage: &Storage{},
		conns:   map[mesh.ConnID]*link{},
	}
	n.nodes = append(n.nodes, nd)
	if _, dup := n.byID[nd.id]; !dup {
		n.byID[nd.id] = nd
	}
	n.boot(nd, spec.Config)
	return nd, nil
}

func (n *Network) boot(nd *Node, cfg mesh.Config) {
	nd.up = true
	nd.incarnation++
	n.members++
	n.upCount++
	nd.clockAhead = 0 // micros() restarts at power-on
	now := n.Now()
	if nd.spec.Machine != nil {
		nd.m = nd.spec.Machine(now, nd)
	} else {
		mn := mesh.New(cfg, now)
		if nd.spec.Plugins != nil {
			for _, p := range nd.spec.Plugins(nd) {
				mn.Use(p)
			}
		}
		nd.m = mn
	}
	n.traceInput(nd, 'B', 0, nil)
	n.flush(nd, false)
}

// Crash powers the node off. Its connections close: each peer sees
// Disconnect after the data already in flight to it, as if the TCP stack
// reset them. Queued messages are lost. The node keeps its Storage.
func (n *Network) Crash(nd *Node) { n.crash(nd, true) }

// CrashSilent powers the node off without its peers noticing: messages to
// it vanish, and each peer only finds out through its own timeouts (stock:
// the next node sync, ≤ 60 s, plus the 10 s NODE_TIMEOUT).
func (n *Network) CrashSilent(nd *Node) { n.crash(nd, false) }

func (n *Network) crash(nd *Node, tell bool) {
	if !nd.up {
		return
	}
	n.traceInput(nd, 'X', 0, nil)
	nd.up = false
	nd.incarnation++
	n.members++
	n.upCount--
	nd.tickGen++
	nd.tickPending = false
	nd.txq = nil
	nd.queued = 0
	nd.onAir = nil
	nd.rxFree = 0
	for _, l := range slices.Clone(nd.links) {
		i := l.endOf(nd)
		if tell {
			n.closeWithFin(l, i)
		} else {
			n.closeEnd(l, i)
		}
	}
	nd.m = nil
}

// Restart boots a fresh state machine for the node from its spec (plugins
// re-created, Storage kept), crashing it first if it runs. Its stations
// dial their links after the Redial delay, and so do its neighbours'.
func (n *Network) Restart(nd *Node) {
	n.crash(nd, true)
	nd.restarts++
	cfg := nd.spec.Config
	cfg.ClockStart = 0
	n.boot(nd, cfg)
	for _, e := range nd.edges {
		n.scheduleDial(e, n.redialDelay())
	}
}

// Network is the network the node belongs to.
func (nd *Node) Network() *Network { return nd.net }

// ID is the node's mesh id.
func (nd *Node) ID() uint32 { return nd.id }

// Up reports whether the node runs (not crashed).
func (nd *Node) Up() bool { return nd.up }

// Restarts counts the node's Restart calls.
func (nd *Node) Restarts() int { return nd.restarts }

// Spec is the spec the node was built from.
func (nd *Node) Spec() NodeSpec { return nd.spec }

// Machine is the node's current state machine, nil while it is down.
func (nd *Node) Machine() Machine { return nd.m }

// Mesh is the node's mesh.Node, nil while it is down or if it runs another
// Machine.
func (nd *Node) Mesh() *mesh.Node {
	mn, _ := nd.m.(*mesh.Node)
	return mn
}

// Storage is the node's persistent in-memory key/value store. It survives
// Crash and Restart, so plugins built by NodeSpec.Plugins can keep what a
// device would keep in flash.
func (nd *Node) Storage() *Storage { return nd.storage }

// Stats are the node's radio counters.
func (nd *Node) Stats() NodeStats { return nd.stats }

// QueuedBytes is what waits on the node's radio now.
func (nd *Node) QueuedBytes() int { return nd.queued }

// Neighbours are the nodes at the other end of the node's open
// connections, in connection order.
func (nd *Node) Neighbours() []*Node {
	var out []*Node
	for _, l := range nd.links {
		out = append(out, l.ends[1-l.endOf(nd)])
	}
	return out
}

// NodeTime is the node's mesh time now (0 while down).
func (nd *Node) NodeTime() uint32 {
	if !nd.up {
		return 0
	}
	return nd.m.NodeTime(nd.Now())
}

// Now is the time on the node's own clock: the network's virtual time
// plus what JumpClock added since the node last powered on. It is the
// time the network hands the node's machine with every input.
func (nd *Node) Now() time.Time { return nd.net.Now().Add(nd.clockAhead) }

// ClockAhead is how far the node's clock runs ahead of the network's.
func (nd *Node) ClockAhead() time.Duration { return nd.clockAhead }

// NodeList is the node's list of known nodes (nil while down).
func (nd *Node) NodeList(includeSelf bool) []uint32 {
	if !nd.up {
		return nil
	}
	return nd.m.NodeList(includeSelf)
}

// ErrNodeDown is returned by Step on a crashed node.
var ErrNodeDown = errors.New("sim: node is down")

// Step runs f as an application input to the node's machine at the current
// virtual time, then acts on the machine's outputs.
func (nd *Node) Step(f func(now time.Time, m Machine)) error {
	if !nd.up {
		return fmt.Errorf("node %d: %w", nd.id, ErrNodeDown)
	}
	n := nd.net
	n.traceInput(nd, 'U', 0, nil)
	f(nd.Now(), nd.m)
	n.flush(nd, false)
	return nil
}

// ErrNotMesh is returned by the mesh helpers on a node whose machine is not
// a *mesh.Node.
var ErrNotMesh = errors.New("sim: node does not run mesh.Node")

// Do is Step for a node running mesh.Node.
func (nd *Node) Do(f func(now time.Time, m *mesh.Node)) error {
	return nd.Step(func(now time.Time, m Machine) {
		if mn, ok := m.(*mesh.Node); ok {
			f(now, mn)
		}
	})
}

func (nd *Node) meshNode() (*mesh.Node, error) {
	if !nd.up {
		return nil, fmt.Errorf("node %d: %w", nd.id, ErrNodeDown)
	}
	mn, ok := nd.m.(*mesh.Node)
	if !ok {
		return nil, fmt.Errorf("node %d: %w", nd.id, ErrNotMesh)
	}
	return mn, nil
}

// SendBroadcast sends msg to every node (mesh.Node.SendBroadcast) now.
func (nd *Node) SendBroadcast(msg string, includeSelf bool) error {
	if _, err := nd.meshNode(); err != nil {
		return err
	}
	return nd.Do(func(now time.Time, m *mesh.Node) { m.SendBroadcast(now, msg, includeSelf) })
}

// ErrNoRoute is returned by SendSingle when the destination is unknown.
var ErrNoRoute = errors.New("sim: no route to destination")

// SendSingle sends msg to dest (mesh.Node.SendSingle) now.
func (nd *Node) SendSingle(dest uint32, msg string) error {
	if _, err := nd.meshNode(); err != nil {
		return err
	}
	ok := false
	if err := nd.Do(func(now time.Time, m *mesh.Node) { ok = m.SendSingle(now, dest, msg) }); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("node %d to %d: %w", nd.id, dest, ErrNoRoute)
	}
	return nil
}

// Storage is a node's persistent key/value store, kept by the network
// across the node's crashes and restarts (the flash of a real device).
// Values are copied in and out.
type Storage struct {
	m map[string][]byte
}

// Get returns the value stored under key.
func (s *Storage) Get(key string) ([]byte, bool) {
	v, ok := s.m[key]
	return slices.Clone(v), ok
}

// Put stores value under key.
func (s *Storage) Put(key string, value []byte) {
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = slices.Clone(value)
}

// Delete removes key.
func (s *Storage) Delete(key string) { delete(s.m, key) }

// Keys lists the stored keys, sorted.
func (s *Storage) Keys() []string { return slices.Sorted(maps.Keys(s.m)) }

// SetRadio changes the node's radio from now on (a fault campaign shrinks
// a node's queue to overflow it, then gives the old radio back). What is
// already queued stays queued.
func (n *Network) SetRadio(nd *Node, r Radio) { nd.radio = r }

// Radio is the node's radio model now.
func (nd *Node) Radio() Radio { return nd.radio }

// ErrClockBack is returned by JumpClock for a negative jump.
var ErrClockBack = errors.New("sim: a node's clock only jumps forward")

// JumpClock moves the node's clock d further ahead of the network's, until
// it next powers on: its timers due within d fire at once, as after a
// stall of its loop, and every later input reaches its machine d later on
// its clock than on its peers'. The clock only goes forward: micros() on
// an ESP and Go's monotonic clock on Linux never go back, so d < 0 is an
// error, as is a node that is down.
func (n *Network) JumpClock(nd *Node, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("node %d: jump of %s: %w", nd.id, d, ErrClockBack)
	}
	if !nd.up {
		return fmt.Errorf("node %d: %w", nd.id, ErrNodeDown)
	}
	nd.clockAhead += d
	n.traceInput(nd, 'J', 0, []byte(d.String()))
	// The machine's next deadline is now that much nearer in virtual time.
	n.scheduleTick(nd, nd.m.NextDeadline(), false)
	return nil
}
