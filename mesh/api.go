// Package mesh is the painlessMesh node as a sans-IO state machine.
//
// A Node never touches sockets, goroutines, timers or the wall clock. A
// driver (transport/tcp for real sockets, sim for the simulator) steps it
// with inputs and collects its outputs, the way etcd's raft.RawNode is run:
//
//	n := mesh.New(cfg, now)
//	n.Connect(now, conn, station)   // a TCP connection came up
//	n.Receive(now, conn, msg)       // one NUL-framed message arrived on conn
//	n.Disconnect(now, conn)         // the connection went away
//	n.Tick(now)                     // time passed; fire due timers
//	rd := n.Ready()                 // bytes to write per connection, connections to close, events, work
//	n.WorkDone(now, w, err)         // the driver did a Work the node asked for
//	next := n.NextDeadline()        // when to call Tick again
//
// Every input takes the current time; the node keeps no other notion of
// time. Same inputs in the same order give the same outputs, bit for bit.
package mesh

import (
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// ConnID names one transport connection. The driver chooses the values;
// the node only compares them.
type ConnID uint64

// Priority is the outgoing queue priority of a message (docs/protocol.md §1.2).
// Drivers should write higher priorities (lower values) first, never
// interrupting a message already partly written.
type Priority int

// Queue priorities as the C++ buffer defines them.
const (
	PriorityCritical Priority = 0
	PriorityHigh     Priority = 1
	PriorityNormal   Priority = 2
	PriorityLow      Priority = 3
)

// Outgoing is one message the driver must write on a connection, followed
// by the NUL terminator (protocol.Writer adds it).
type Outgoing struct {
	Conn     ConnID
	Data     []byte // JSON text, no NUL; may be shared between Outgoings: do not modify
	Priority Priority
}

// Ready is what the node wants done after the inputs so far.
type Ready struct {
	Messages []Outgoing
	Close    []ConnID // connections the node dropped (already forgotten by it)
	Events   []Event
	// Work is slow work the plugins asked for (see Work): the driver runs
	// it off the step and answers each with Node.WorkDone.
	Work []Work
}

// Work is slow work a plugin asks the driver to do outside the node's
// steps (fsyncs, decompressing and hashing a whole image), as raft's Ready
// hands the application the entries to persist: the state machine asks,
// the driver does the disk work and answers with an input. The driver
// calls Do outside any step (the TCP driver on a worker goroutine, so the
// loop keeps serving the mesh; the simulator between steps, in virtual
// time), one Work of a node at a time in the order asked, then hands the
// result to Node.WorkDone, which calls Done inside a step. Do must not
// touch the node; Done may, as any step does.
type Work struct {
	Do   func() error
	Done func(now time.Time, err error)
}

// WorkHost is implemented by hosts whose driver runs Work off the step
// (*Node does). A plugin whose host does not (a test's fake) runs the
// work inline.
type WorkHost interface {
	Defer(w Work)
}

// Event is something the application may want to know. Concrete types are
// listed below; plugins add their own.
type Event interface{ isEvent() }

// EventBase can be embedded by plugin event types to satisfy Event.
type EventBase struct{}

func (EventBase) isEvent() {}

// MessageReceived is a SINGLE (9) or BROADCAST (8) delivered to this node.
type MessageReceived struct {
	EventBase
	Type int // protocol.TypeSingle or protocol.TypeBroadcast
	From uint32
	Msg  string
}

// PackageReceived is any other package handled locally (not consumed by a
// plugin): custom and Alteriom types, so applications and bridges see them.
type PackageReceived struct {
	EventBase
	Conn   ConnID
	Header protocol.Header
	JSON   []byte
}

// NewConnection is the first successful node sync on a connection.
type NewConnection struct {
	EventBase
	Conn   ConnID
	NodeID uint32
}

// ChangedConnections means the layout changed (a neighbour's subtree changed,
// or a connection was dropped).
type ChangedConnections struct {
	EventBase
	NodeID uint32 // the neighbour whose subtree changed
}

// DroppedConnection is a connection the node no longer uses.
type DroppedConnection struct {
	EventBase
	Conn   ConnID
	NodeID uint32 // 0 if the connection never synced
	Reason string // "closed", "timeout", "invalid sync", "already connected", "layout too large", "replaced"
}

// TimeAdjusted is reported after every TIME_REPLY this node computed an
// offset from (offset 0 included, as stock does).
type TimeAdjusted struct {
	EventBase
	NodeID uint32 // the neighbour we synced with (0: ShiftTime)
	Offset int32  // µs
}

// DelayMeasured is the answer to StartDelayMeasurement.
type DelayMeasured struct {
	EventBase
	NodeID uint32
	Delay  int32 // one-way estimate, µs
}

// InvalidPackage reports packages received on Conn that could not be
// parsed and were dropped (docs/protocol.md §1.5). It comes at most once per
// connection per InvalidReportInterval; Suppressed is how many more
// arrived on the connection since the previous report. Stats.ParseErrors
// counts them all. Reason InvalidBody also covers well-formed packages
// that needed a field coerced (protocol.Defect), which are handled all the
// same, as stock handles them.
type InvalidPackage struct {
	EventBase
	Conn       ConnID
	NodeID     uint32 // the neighbour; 0 before its first node sync
	Reason     string // InvalidHeader or InvalidBody
	Err        string // the parser's error for this package
	Suppressed uint64
}

// ConnInfo describes one connection of a node (Node.Connections).
type ConnInfo struct {
	Conn    ConnID
	NodeID  uint32 // the neighbour's id; 0 until the first node sync
	Station bool   // we connected (STA side)
	Synced  bool   // the first node sync succeeded
	// SubtreeSize is the number of nodes reachable through this
	// connection, the neighbour included; 0 while not synced.
	SubtreeSize int
}

// Host is the part of a Node a plugin may use. *Node implements it.
type Host interface {
	ID() uint32
	NodeTime(now time.Time) uint32
	NodeList(includeSelf bool) []uint32
	Tree() protocol.NodeTree
	// SendPackage encodes p and routes it by its own type/routing/dest keys.
	SendPackage(now time.Time, p protocol.Package) error
	// SendRaw routes an already encoded package.
	SendRaw(now time.Time, msg []byte) error
	// Emit queues an event for the driver (reported in the next Ready).
	Emit(ev Event)
	// Stats are the node's traffic counters (for status reporting).
	Stats() Stats
	// StartDelayMeasurement sends a TIME_DELAY request to id; the answer
	// arrives as a DelayMeasured event. False if id is not reachable.
	StartDelayMeasurement(now time.Time, id uint32) bool
}

// Plugin is an optional feature run inside the node's steps (OTA, status):
// sans-IO like the node, with the node as its only way out.
type Plugin interface {
	// Attach is called once when the plugin is added with Node.Use.
	Attach(h Host)
	// Types lists the package types the plugin wants delivered.
	Types() []int
	// HandlePackage is called for each locally handled package of those
	// types; raw is the exact JSON received (do not keep it past the call).
	HandlePackage(now time.Time, conn ConnID, h protocol.Header, raw []byte)
	// Tick is called on every Node.Tick.
	Tick(now time.Time)
	// NextDeadline is when the plugin next needs Tick; zero means never.
	NextDeadline() time.Time
}

// TransitHandler is implemented by plugins that may take over a
// single-routed package of their Types passing through this node towards
// another node (a status relay bundling its subtree's telemetry). The
// package is forwarded as usual unless HandleTransit returns true; a
// plugin that consumes a package becomes responsible for delivering what
// it carries.
type TransitHandler interface {
	HandleTransit(now time.Time, conn ConnID, h protocol.Header, raw []byte) bool
}

// EventObserver is implemented by plugins that want to see the node's
// events (connections, delays) as they happen, before the driver does.
type EventObserver interface {
	OnEvent(now time.Time, ev Event)
}

// Stats are the node's real traffic counters.
type Stats struct {
	MessagesRx, MessagesTx uint64 // every message received / queued for writing
	MessagesDropped        uint64 // unroutable, unparsable, unhandled or to a closed connection
	BytesRx, BytesTx       uint64
	ParseErrors            uint64 // InvalidPackages.Header + InvalidPackages.Body
	// InvalidPackages are the invalid packages by reason.
	InvalidPackages   InvalidCounts
	Connections       int    // synced connections
	ConnectionChanges uint64 // layout changes: ChangedConnections events
	// TimeSyncs counts TIME_REPLYs we computed an offset from;
	// TimeSyncAdopts those whose offset was non-zero (the clock moved).
	TimeSyncs, TimeSyncAdopts uint64
	// NodeSyncRetries counts repeated NODE_SYNC_REQUESTs (Timing.NodeSyncRetry).
	NodeSyncRetries uint64
	// NodeSyncsRefused counts node syncs refused by closing the connection:
	// invalid (a loop or a changed id), a duplicate link, or a layout over
	// the limits.
	NodeSyncsRefused uint64
}

// Config is a node's identity and role.
type Config struct {
	ID            uint32 // non-zero, unique in the mesh
	Root          bool   // advertise "root" (setRoot)
	ContainsRoot  bool   // setContainsRoot; local only
	TimeAuthority bool   // advertise "hasTimeAuthority" (setTimeAuthority)
	// ClockStart is the node's micros() reading at creation; different
	// values model unsynchronised ESP clocks. Node time wraps at 2^32 µs.
	ClockStart uint32
	// Timing: zero fields take the stock values (StockTiming), except
	// NodeSyncRetry, which takes DefaultNodeSyncRetry.
	Timing Timing

	// MaxLayoutNodes bounds the nodes of our whole layout (ourselves and
	// every neighbour's subtree), MaxLayoutBytes one node-sync message. A
	// sync that would pass either is refused and its connection closed.
	// Zero takes DefaultMaxLayoutNodes and DefaultMaxLayoutBytes.
	MaxLayoutNodes int
	MaxLayoutBytes int
}

// Layout limits when Config leaves them zero. Stock meshes stay far below
// them (an ESP32 accepts 10 connections, and JSON nesting caps a chain at
// about 127 hops, docs/protocol.md §1.3); the simulator runs 500 nodes. A node
// costs about 22 bytes of node-sync JSON, so 4096 nodes need about 90 KB.
const (
	DefaultMaxLayoutNodes = 4096
	DefaultMaxLayoutBytes = 256 << 10
)

// Timing holds the protocol timers; StockTiming gives the C++ values.
type Timing struct {
	NodeSyncInterval    time.Duration // 60 s
	NodeTimeout         time.Duration // 10 s, NODE_TIMEOUT
	APFirstSync         time.Duration // 10 s: AP side's first request after accept
	TimeSyncInterval    time.Duration // 10 s task interval
	TimeSyncPostpone    time.Duration // 60 s after success
	TimeSyncRetry       time.Duration // 200 ms after a bad offset
	TimeReplyProcessing time.Duration // our responder's t2-t1 separation; negative: none
	// NodeSyncRetry repeats an unanswered NODE_SYNC_REQUEST this long
	// after it was sent, and again every NodeSyncRetry while NODE_TIMEOUT
	// has not expired. Not stock: the C++ node sends one request and
	// closes the connection when its reply is lost, and the whole subtree
	// behind it drops out of the mesh until the station dials again. The
	// repeat is the same package a stock node sends, and a stock peer
	// answers it like any request, so nothing new appears on the wire.
	// Zero takes DefaultNodeSyncRetry; negative disables it (StockTiming).
	NodeSyncRetry time.Duration

	// AcceptZeroOffset makes a computed offset of 0 count as a successful
	// time sync, as painlessMesh 1.4.2 did ([G]); stock [A] retries after
	// 200 ms instead. Off by default. Meant for simulations with
	// perfectly regular links, where clocks that agree exactly would
	// otherwise make every adopter retry five times a second forever; do
	// not set it against stock responders, whose instant answers always
	// give 0 (the outlier rule), so the clock would never be corrected.
	AcceptZeroOffset bool
}

// StockTiming returns the timers of the C++ library ([A],
// docs/protocol.md §12), our TIME_REPLY processing time (2 ms, in the range of an ESP's)
// and no NODE_SYNC_REQUEST repeats, as the C++ code.
func StockTiming() Timing {
	return Timing{
		NodeSyncInterval:    60 * time.Second,
		NodeTimeout:         10 * time.Second,
		APFirstSync:         10 * time.Second,
		TimeSyncInterval:    10 * time.Second,
		TimeSyncPostpone:    60 * time.Second,
		TimeSyncRetry:       200 * time.Millisecond,
		TimeReplyProcessing: 2 * time.Millisecond,
		NodeSyncRetry:       -1,
	}
}

// DefaultNodeSyncRetry is Timing.NodeSyncRetry when left zero: a lost
// request or reply is repeated at 3, 6 and 9 s, before the 10 s
// NODE_TIMEOUT.
const DefaultNodeSyncRetry = 3 * time.Second
