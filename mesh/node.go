package mesh

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

var _ Host = (*Node)(nil)

// Node is one painlessMesh node: its connections, the layout learnt by node
// sync (§4), routing (§5) and the synchronised clock (§6). It is not safe
// for concurrent use; a driver steps it from one goroutine.
type Node struct {
	cfg   Config
	start time.Time // creation: node time counts µs from here
	// now is the time of the input being processed, for plugin callbacks
	// that have no time argument (Emit → EventObserver.OnEvent).
	now time.Time
	// counted: the package route is handling was already counted as
	// invalid (its header needed coercion), so its handler does not count
	// it again. Set by route for every package; only handlers it calls
	// read it.
	counted bool
	// offset is the C++ timeOffset: node time = micros() + offset.
	offset uint32

	conns  []*conn // creation order: the C++ subs list, used for every walk
	byConn map[ConnID]*conn

	plugins   []Plugin
	handlers  map[int][]Plugin
	observers []EventObserver

	ready Ready
	stats Stats

	// gen counts layout changes (a neighbour's tree, a drop, our flags).
	// The caches below are valid while their generation equals gen.
	gen      uint64
	routeGen uint64
	routes   map[uint32]*conn // node id → first connection whose subtree has it
	nodeList []uint32         // sorted node ids of the mesh, without our own
}

// New returns a node with no connections. cfg.ID must be non-zero and
// unique in the mesh; zero Timing fields take the stock values (but see
// Timing.NodeSyncRetry). now is the
// node's power-on time: its node time starts at cfg.ClockStart then.
func New(cfg Config, now time.Time) *Node {
	cfg.Timing = cfg.Timing.withDefaults()
	if cfg.MaxLayoutNodes <= 0 {
		cfg.MaxLayoutNodes = DefaultMaxLayoutNodes
	}
	if cfg.MaxLayoutBytes <= 0 {
		cfg.MaxLayoutBytes = DefaultMaxLayoutBytes
	}
	return &Node{
		cfg:      cfg,
		start:    now,
		now:      now,
		byConn:   make(map[ConnID]*conn),
		handlers: make(map[int][]Plugin),
		gen:      1,
	}
}

// Use adds a plugin: it is attached to the node, receives the packages of
// the types it lists, its Tick runs on every Node.Tick, and if it is an
// EventObserver it sees every event.
func (n *Node) Use(p Plugin) {
	n.plugins = append(n.plugins, p)
	p.Attach(n)
	for _, t := range p.Types() {
		n.handlers[t] = append(n.handlers[t], p)
	}
	if o, ok := p.(EventObserver); ok {
		n.observers = append(n.observers, o)
	}
}

// ID is the node's id.
func (n *Node) ID() uint32 { return n.cfg.ID }

// Config is the node's configuration, with the current root and time
// authority flags and the effective timing.
func (n *Node) Config() Config { return n.cfg }

// --- inputs -----------------------------------------------------------------

// Connect tells the node a transport connection c came up. station is true
// when this node connected (STA side, first node sync at once) and false
// when it accepted (AP side, first node sync after Timing.APFirstSync).
// A ConnID that is still in use is dropped first.
func (n *Node) Connect(now time.Time, c ConnID, station bool) {
	n.now = now
	if old := n.byConn[c]; old != nil {
		n.drop(old, "replaced", false)
	}
	cn := &conn{id: c, station: station}
	if station {
		cn.nodeSyncAt = now
	} else {
		cn.nodeSyncAt = now.Add(n.cfg.Timing.APFirstSync)
	}
	n.conns = append(n.conns, cn)
	n.byConn[c] = cn
	n.runDue(now)
}

// Disconnect tells the node connection c is gone (closed by the peer or by
// the driver). Unknown connections, including ones the node closed itself,
// are ignored.
func (n *Node) Disconnect(now time.Time, c ConnID) {
	n.now = now
	if cn := n.byConn[c]; cn != nil {
		n.drop(cn, "closed", false)
		n.runDue(now)
	}
}

// Receive steps the node with one message (the JSON text without its NUL
// terminator) that arrived on connection c. The node does not keep msg:
// what it forwards or reports is copied.
func (n *Node) Receive(now time.Time, c ConnID, msg []byte) {
	n.now = now
	n.stats.MessagesRx++
	n.stats.BytesRx += uint64(len(msg))
	cn := n.byConn[c]
	if cn == nil {
		n.stats.MessagesDropped++
		return
	}
	n.route(now, cn, msg)
	n.runDue(now)
}

// Tick fires the timers that are due at now and runs the plugins' Tick.
// Call it at NextDeadline (calling it more often is harmless).
func (n *Node) Tick(now time.Time) {
	n.now = now
	n.runDue(now)
	for _, p := range n.plugins {
		p.Tick(now)
	}
}

// WorkDone tells the node that the driver finished w, one of the Work of a
// Ready, with err: w.Done runs as part of this step.
func (n *Node) WorkDone(now time.Time, w Work, err error) {
	n.now = now
	w.Done(now, err)
}

// --- outputs ----------------------------------------------------------------

// Ready returns what accumulated since the last call: messages to write,
// connections to close and events. The caller owns the returned slices.
func (n *Node) Ready() Ready {
	rd := n.ready
	n.ready = Ready{}
	return rd
}

// NextDeadline is when Tick must next be called: the earliest node timer
// or plugin deadline. The zero time means nothing is scheduled.
func (n *Node) NextDeadline() time.Time {
	var m time.Time
	for _, c := range n.conns {
		m = earliest(m, c.deadline())
	}
	for _, p := range n.plugins {
		m = earliest(m, p.NextDeadline())
	}
	return m
}

// Defer implements WorkHost: w goes to the driver with the next Ready.
func (n *Node) Defer(w Work) {
	n.ready.Work = append(n.ready.Work, w)
}

// Emit queues an event for the driver and shows it to the observing
// plugins first.
func (n *Node) Emit(ev Event) {
	n.ready.Events = append(n.ready.Events, ev)
	for _, o := range n.observers {
		o.OnEvent(n.now, ev)
	}
}

// --- queries ----------------------------------------------------------------

// NodeTime is the mesh-synchronised clock at now (§6.1): µs since New plus
// Config.ClockStart plus the adopted offset, wrapping at 2^32.
func (n *Node) NodeTime(now time.Time) uint32 {
	return n.cfg.ClockStart + uint32(now.Sub(n.start).Microseconds()) + n.offset
}

// Tree is the node's full layout (subConnectionJson, §3.3): itself with
// its flags and the tree last received from every synced neighbour, in
// connection order. The result is a copy the caller may keep.
func (n *Node) Tree() protocol.NodeTree {
	t := n.layoutWithout(0)
	return t.Clone()
}

// NodeList is the sorted ids of every node in the layout, this node's
// own only if includeSelf. Duplicates (a transiently inconsistent layout)
// are listed once.
func (n *Node) NodeList(includeSelf bool) []uint32 {
	n.refreshRoutes()
	out := make([]uint32, 0, len(n.nodeList)+1)
	out = append(out, n.nodeList...)
	if includeSelf {
		if i, found := slices.BinarySearch(out, n.cfg.ID); !found {
			out = slices.Insert(out, i, n.cfg.ID)
		}
	}
	return out
}

// IsConnected reports whether id is reachable through a neighbour
// (mesh.isConnected; false for the node's own id).
func (n *Node) IsConnected(id uint32) bool { return n.findRoute(id) != nil }

// Connections describes every connection in creation order.
func (n *Node) Connections() []ConnInfo {
	out := make([]ConnInfo, len(n.conns))
	for i, c := range n.conns {
		out[i] = c.info()
	}
	return out
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	s := n.stats
	for _, c := range n.conns {
		if c.routable() {
			s.Connections++
		}
	}
	return s
}

// --- flags ------------------------------------------------------------------

// SetRoot sets the "root" flag advertised in the layout (setRoot). As in
// the C++ code, neighbours learn it with the next node sync.
func (n *Node) SetRoot(on bool) {
	if n.cfg.Root != on {
		n.cfg.Root = on
		n.gen++
	}
}

// SetTimeAuthority sets the "hasTimeAuthority" flag (setTimeAuthority) and
// forces a time sync on every synced connection.
func (n *Node) SetTimeAuthority(now time.Time, on bool) {
	n.now = now
	if n.cfg.TimeAuthority != on {
		n.cfg.TimeAuthority = on
		n.gen++
	}
	for _, c := range n.conns {
		if c.synced {
			c.timeSyncAt = now
		}
	}
	n.runDue(now)
}

// ShiftTime moves the node's mesh time by d, either way (modulo 2^32 µs),
// as adopting the clock of a partition far off in time does: it reports
// TimeAdjusted (NodeID 0: no neighbour) and starts time sync on every
// synced connection, as a successful adoption does, so the mesh pulls the
// node back or takes its time, by the adoption rule. A real node's mesh
// time moves only through time sync; this is for simulations and tests
// that model such a jump without that partition.
func (n *Node) ShiftTime(now time.Time, d time.Duration) {
	n.now = now
	off := uint32(d.Microseconds())
	n.offset += off
	n.Emit(TimeAdjusted{Offset: int32(off)})
	for _, c := range n.conns {
		if c.synced {
			c.timeSyncAt = now
		}
	}
	n.runDue(now)
}

// --- timers -----------------------------------------------------------------

// runDue fires every timer due at now, in connection order, the way the
// C++ scheduler runs tasks after a handler returns. A drop may force
// requests on connections already passed, so it loops until nothing fires;
// every firing moves its timer past now, so this ends.
func (n *Node) runDue(now time.Time) {
	t := &n.cfg.Timing
	for fired := true; fired; {
		fired = false
		for i := 0; i < len(n.conns); i++ {
			c := n.conns[i]
			for len(c.replies) > 0 && due(c.replies[0].at, now) {
				r := c.replies[0]
				c.replies = c.replies[1:]
				r.pkg.Msg.T2 = n.NodeTime(now)
				n.enqueue(c, r.pkg.AppendJSON(nil), r.prio)
				fired = true
			}
			if due(c.timeoutAt, now) {
				// §4.2 NODE_TIMEOUT: no NODE_SYNC_REPLY in time.
				n.drop(c, "timeout", true)
				i--
				fired = true
				continue
			}
			if due(c.nodeSyncAt, now) {
				n.enqueue(c, n.syncMessage(c, protocol.TypeNodeSyncRequest), PriorityHigh)
				c.nodeSyncAt = now.Add(t.NodeSyncInterval)
				c.layoutPending, c.requestAt = false, now
				if c.timeoutAt.IsZero() {
					// Not stock: the C++ nodeSyncTask restarts timeOutTask on
					// every request, so a peer that never answers survives
					// as long as other links keep changing the layout. Only
					// a reply on this connection disarms it.
					c.timeoutAt = now.Add(t.NodeTimeout)
				}
				c.retryAt = n.nextRetry(now, c)
				fired = true
			}
			if due(c.retryAt, now) {
				// Timing.NodeSyncRetry: still no reply. The repeat leaves
				// NODE_TIMEOUT where the first request set it.
				n.enqueue(c, n.syncMessage(c, protocol.TypeNodeSyncRequest), PriorityHigh)
				c.layoutPending, c.requestAt = false, now
				n.stats.NodeSyncRetries++
				c.retryAt = n.nextRetry(now, c)
				fired = true
			}
			if due(c.timeSyncAt, now) {
				n.startTimeSync(now, c)
				c.timeSyncAt = now.Add(t.TimeSyncInterval)
				fired = true
			}
		}
	}
}

// nextRetry is when an unanswered NODE_SYNC_REQUEST sent at now is
// repeated: zero when repeats are off or NODE_TIMEOUT comes first.
func (n *Node) nextRetry(now time.Time, c *conn) time.Time {
	r := n.cfg.Timing.NodeSyncRetry
	if r <= 0 || c.timeoutAt.IsZero() || !now.Add(r).Before(c.timeoutAt) {
		return time.Time{}
	}
	return now.Add(r)
}

// drop forgets connection c (§4.4). close is true when the node itself
// ends it, so the driver must close the transport. Messages still queued
// for it are discarded.
func (n *Node) drop(c *conn, reason string, close bool) {
	n.conns = slices.DeleteFunc(n.conns, func(x *conn) bool { return x == c })
	delete(n.byConn, c.id)
	if close {
		n.ready.Close = append(n.ready.Close, c.id)
	}
	n.ready.Messages = slices.DeleteFunc(n.ready.Messages, func(o Outgoing) bool {
		if o.Conn != c.id {
			return false
		}
		n.stats.MessagesDropped++
		return true
	})
	if c.routable() {
		// The lost branch changes our layout: tell every remaining
		// neighbour at once (syncLayout). Claims about the lost
		// neighbour made by others count again.
		n.pruneClaims()
		n.gen++
		n.stats.ConnectionChanges++
		n.syncLayout(c.nodeID)
		n.Emit(ChangedConnections{NodeID: c.nodeID})
	}
	n.Emit(DroppedConnection{Conn: c.id, NodeID: c.nodeID, Reason: reason})
}

// syncLayout forces an immediate NODE_SYNC_REQUEST on every synced
// neighbour other than changed (layout::syncLayout).
//
// Not stock: a neighbour that has not answered our last request yet gets
// the next one when its reply arrives, or layoutHold after the last
// request if the reply was lost. Stock sends one request per change to
// every neighbour, so a burst of N changes (N peers joining or leaving at
// once) queued N requests of the whole layout on each of N links, and a
// peer that stopped reading collected all of them.
func (n *Node) syncLayout(changed uint32) {
	for _, c := range n.conns {
		if c.synced && c.routable() && c.nodeID != changed {
			if c.timeoutAt.IsZero() {
				c.nodeSyncAt = n.now
			} else {
				c.layoutPending = true
				c.nodeSyncAt = earliest(c.nodeSyncAt, c.requestAt.Add(layoutHold))
			}
		}
	}
}

// layoutHold is the longest a layout change waits for the reply to the
// previous request on a link. Replies normally take milliseconds; when
// one is lost, the next request still carries the change (and its reply
// keeps the link, as stock's repeated requests do) without stacking one
// request per change.
const layoutHold = time.Second

// enqueue queues data for connection c.
func (n *Node) enqueue(c *conn, data []byte, p Priority) {
	n.ready.Messages = append(n.ready.Messages, Outgoing{Conn: c.id, Data: data, Priority: p})
	n.stats.MessagesTx++
	n.stats.BytesTx += uint64(len(data))
}

// withDefaults fills zero fields with the stock values.
func (t Timing) withDefaults() Timing {
	s := StockTiming()
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&t.NodeSyncInterval, s.NodeSyncInterval)
	def(&t.NodeTimeout, s.NodeTimeout)
	def(&t.APFirstSync, s.APFirstSync)
	def(&t.TimeSyncInterval, s.TimeSyncInterval)
	def(&t.TimeSyncPostpone, s.TimeSyncPostpone)
	def(&t.TimeSyncRetry, s.TimeSyncRetry)
	def(&t.TimeReplyProcessing, s.TimeReplyProcessing)
	def(&t.NodeSyncRetry, DefaultNodeSyncRetry)
	return t
}
