package status

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// Source says where a node's latest status came from.
type Source string

// Sources of status data.
const (
	SourceTelemetry Source = "telemetry"   // a telemetry frame (700)
	SourceQuery     Source = "query"       // a status report (702)
	SourceStatus    Source = "status-202"  // a stock StatusPackage
	SourceEnhanced  Source = "status-604"  // a stock EnhancedStatusPackage
	SourceMetrics   Source = "metrics-204" // a stock MetricsPackage
	SourceHealth    Source = "health-605"  // a stock HealthCheckPackage
	SourceLocal     Source = "local"       // the collector node's own reporter
)

// full reports whether a source carries the firmware strings.
func (s Source) full() bool {
	switch s {
	case SourceQuery, SourceEnhanced, SourceStatus, SourceLocal:
		return true
	}
	return false
}

// ModelConfig tunes the Model. Zero fields take the defaults.
type ModelConfig struct {
	// DefaultInterval is the report interval assumed for a node that does
	// not state its own (stock packages): default 30 s.
	DefaultInterval time.Duration
	// StreamMissed is how many telemetry intervals may pass without a
	// frame before a streaming node is offline (default 1), and Grace the
	// extra wait after that (default 3 s): with the defaults a node is
	// offline 3 s after the frame it should have sent.
	StreamMissed int
	Grace        time.Duration
	// ReportMissed is the same count for nodes heard only through stock
	// packages and query replies, which come less regularly (default 3).
	ReportMissed int
	// HistorySize is how many samples are kept per node (default 120).
	HistorySize int
	// KeepOnlineOffTree keeps a reporting node online when it drops out of
	// the layout; by default leaving the layout makes it offline at once.
	KeepOnlineOffTree bool
	Health            HealthConfig
}

// Model defaults.
const (
	defaultReportInterval = 30 * time.Second
	DefaultGrace          = 3 * time.Second
	defaultHistorySize    = 120
)

func (c ModelConfig) withDefaults() ModelConfig {
	if c.DefaultInterval <= 0 {
		c.DefaultInterval = defaultReportInterval
	}
	if c.StreamMissed <= 0 {
		c.StreamMissed = 1
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.ReportMissed <= 0 {
		c.ReportMissed = 3
	}
	if c.HistorySize <= 0 {
		c.HistorySize = defaultHistorySize
	}
	c.Health = c.Health.withDefaults()
	return c
}

// sample is one observation of a node, as kept in its history.
type sample struct {
	At      time.Time `json:"at"`
	Source  Source    `json:"source"`
	Metrics Metrics   `json:"metrics"`
}

// NodeState is what the Model knows about one node.
type NodeState struct {
	ID uint32 `json:"node_id"`
	// Online: status data arrived and the node is not overdue. A node that
	// never reported (known from the layout only) is not online.
	Online bool `json:"online"`
	// InTopology: the node is in the collector's current layout.
	InTopology bool `json:"in_topology"`
	// Hops from the collector in the layout (0 for itself, -1 if absent).
	Hops      int       `json:"hops"`
	FirstSeen time.Time `json:"first_seen"` // first status data; zero if none yet
	LastSeen  time.Time `json:"last_seen"`
	// LastFull is the last data with firmware strings (queries, stock 202/604).
	LastFull time.Time `json:"last_full"`
	// Deadline is when the node goes offline unless more data arrives.
	Deadline time.Time `json:"deadline"`
	// OfflineSince is when it went offline (zero while online).
	OfflineSince time.Time `json:"offline_since"`
	Source       Source    `json:"source"`
	Streaming    bool      `json:"streaming"` // telemetry frames arrived since it came online
	Metrics      Metrics   `json:"metrics"`
	Reboots      int       `json:"reboots"` // restarts seen (uptime went back)
	LastReboot   time.Time `json:"last_reboot"`
}

// Transition is a node going online or offline.
type Transition struct {
	Node   uint32
	Online bool
	At     time.Time
	Reason string // "report", "overdue", "left mesh"
}

type nodeEntry struct {
	NodeState
	bootAt  time.Time // now − uptime at the last sample
	history []sample  // ring
	next    int       // ring write position once full
}

// Model is the root's picture of the mesh: per-node state, history and
// layout, fed with status data from any source and stepped with time
// (Tick) for offline detection. Not safe for concurrent use; output never
// depends on map order.
type Model struct {
	cfg       ModelConfig
	self      uint32
	nodes     map[uint32]*nodeEntry
	tree      protocol.NodeTree
	haveTree  bool
	firmwares map[uint32]firmwareStrings // by FirmwareHash
}

// firmwareStrings is what a full report says about a firmware, so nodes
// that stream only its hash are named too. Role and hardware go with the
// firmware: a painlessMesh image is built for one role and one board.
type firmwareStrings struct {
	version, md5, role, hardware string
}

// newModel returns an empty model.
func newModel(cfg ModelConfig) *Model {
	return &Model{
		cfg:       cfg.withDefaults(),
		nodes:     make(map[uint32]*nodeEntry),
		firmwares: make(map[uint32]firmwareStrings),
	}
}

func (m *Model) entry(id uint32) *nodeEntry {
	e := m.nodes[id]
	if e == nil {
		e = &nodeEntry{NodeState: NodeState{ID: id, Hops: -1}}
		m.nodes[id] = e
		if m.haveTree {
			e.Hops = hopsTo(&m.tree, id, 0)
			e.InTopology = e.Hops >= 0
		}
	}
	return e
}

// rebootSlack absorbs the jitter of estimating the boot time from an
// uptime in whole seconds that travelled through the mesh.
const rebootSlack = 5 * time.Second

// Observe records status data about node id from src at now: update
// changes the node's metrics in place (it starts from the latest ones, so
// a source that carries only some fields leaves the others). It reports
// whether the node came online with this data.
func (m *Model) Observe(now time.Time, id uint32, src Source, update func(*Metrics)) (NodeState, bool) {
	e := m.entry(id)
	prevHash := e.Metrics.FirmwareHash
	update(&e.Metrics)
	mt := &e.Metrics
	if src.full() {
		mt.FirmwareHash = FirmwareHash(mt.FirmwareVersion, mt.FirmwareMD5)
		if mt.FirmwareHash != 0 {
			fw := firmwareStrings{version: mt.FirmwareVersion, md5: mt.FirmwareMD5, role: mt.Role, hardware: mt.Hardware}
			// A stock status package names the firmware but not the role:
			// keep what a full report said.
			if old := m.firmwares[mt.FirmwareHash]; fw.role == "" && fw.hardware == "" {
				fw.role, fw.hardware = old.role, old.hardware
			}
			m.firmwares[mt.FirmwareHash] = fw
		}
		e.LastFull = now
	} else if mt.FirmwareVersion == "" || mt.FirmwareHash != prevHash {
		if fw, ok := m.firmwares[mt.FirmwareHash]; ok {
			mt.FirmwareVersion, mt.FirmwareMD5 = fw.version, fw.md5
			if mt.Role == "" && mt.Hardware == "" {
				mt.Role, mt.Hardware = fw.role, fw.hardware
			}
		}
	}

	boot := now.Add(-time.Duration(mt.Uptime) * time.Second)
	if !e.bootAt.IsZero() && boot.Sub(e.bootAt) > rebootSlack {
		e.Reboots++
		e.LastReboot = now
	}
	e.bootAt = boot

	came := !e.Online
	if came {
		e.Online = true
		e.OfflineSince = time.Time{}
		e.Streaming = false
	}
	if e.FirstSeen.IsZero() {
		e.FirstSeen = now
	}
	e.LastSeen = now
	e.Source = src
	if src == SourceTelemetry {
		e.Streaming = true
	}
	interval := m.cfg.DefaultInterval
	if mt.ReportInterval != 0 {
		interval = time.Duration(mt.ReportInterval) * time.Second
	}
	missed := m.cfg.ReportMissed
	if e.Streaming {
		missed = m.cfg.StreamMissed
	}
	e.Deadline = now.Add(time.Duration(missed)*interval + m.cfg.Grace)
	m.record(e, sample{At: now, Source: src, Metrics: *mt})
	return e.NodeState, came
}

func (m *Model) record(e *nodeEntry, s sample) {
	if len(e.history) < m.cfg.HistorySize {
		e.history = append(e.history, s)
		return
	}
	e.history[e.next] = s
	e.next = (e.next + 1) % len(e.history)
}

// knowsFirmware reports whether the firmware strings of node id's current
// firmware hash are known (a telemetry frame with a new hash leaves them
// unknown until a full report arrives).
func (m *Model) knowsFirmware(id uint32) bool {
	e := m.nodes[id]
	if e == nil {
		return false
	}
	if e.Metrics.FirmwareHash == 0 {
		return true
	}
	_, ok := m.firmwares[e.Metrics.FirmwareHash]
	return ok
}

// tick marks the nodes whose deadline passed as offline.
func (m *Model) tick(now time.Time) []Transition {
	var out []Transition
	for _, id := range m.ids() {
		e := m.nodes[id]
		if e.Online && !e.Deadline.After(now) {
			out = append(out, m.setOffline(e, e.Deadline, "overdue"))
		}
	}
	return out
}

func (m *Model) setOffline(e *nodeEntry, at time.Time, reason string) Transition {
	e.Online = false
	e.OfflineSince = at
	e.Streaming = false
	return Transition{Node: e.ID, Online: false, At: at, Reason: reason}
}

// nextDeadline is the earliest time an online node becomes overdue; zero
// if none is online.
func (m *Model) nextDeadline() time.Time {
	var d time.Time
	for _, e := range m.nodes {
		if e.Online && (d.IsZero() || e.Deadline.Before(d)) {
			d = e.Deadline
		}
	}
	return d
}

// setTopology replaces the layout with tree (the collector node's
// Tree(), rooted at itself). Nodes in it become known; reporting nodes
// that left it go offline unless KeepOnlineOffTree.
func (m *Model) setTopology(now time.Time, tree protocol.NodeTree) []Transition {
	m.tree = tree.Clone()
	m.haveTree = true
	m.self = tree.NodeID
	hops := make(map[uint32]int)
	walkHops(&m.tree, 0, hops)
	for id := range hops {
		m.entry(id)
	}
	var out []Transition
	for _, id := range m.ids() {
		e := m.nodes[id]
		h, ok := hops[id]
		e.InTopology = ok
		e.Hops = -1
		if ok {
			e.Hops = h
		}
		if !ok && e.Online && !m.cfg.KeepOnlineOffTree {
			out = append(out, m.setOffline(e, now, "left mesh"))
		}
	}
	return out
}

func walkHops(t *protocol.NodeTree, depth int, out map[uint32]int) {
	if _, dup := out[t.NodeID]; !dup {
		out[t.NodeID] = depth
	}
	for i := range t.Subs {
		walkHops(&t.Subs[i], depth+1, out)
	}
}

func hopsTo(t *protocol.NodeTree, id uint32, depth int) int {
	if t.NodeID == id {
		return depth
	}
	for i := range t.Subs {
		if h := hopsTo(&t.Subs[i], id, depth+1); h >= 0 {
			return h
		}
	}
	return -1
}

// Topology is the last layout given to SetTopology (a copy).
func (m *Model) Topology() protocol.NodeTree { return m.tree.Clone() }

// link is one edge of the layout, parent (nearer the collector) to child.
type link struct {
	From uint32 `json:"from"`
	To   uint32 `json:"to"`
	Hops int    `json:"hops"` // of To from the collector
}

// links lists the layout's edges, depth first in layout order.
func (m *Model) links() []link {
	var out []link
	var walk func(t *protocol.NodeTree, depth int)
	walk = func(t *protocol.NodeTree, depth int) {
		for i := range t.Subs {
			out = append(out, link{From: t.NodeID, To: t.Subs[i].NodeID, Hops: depth + 1})
			walk(&t.Subs[i], depth+1)
		}
	}
	walk(&m.tree, 0)
	return out
}

// MaxHops is the depth of the layout.
func (m *Model) MaxHops() int {
	var depth func(t *protocol.NodeTree) int
	depth = func(t *protocol.NodeTree) int {
		d := 0
		for i := range t.Subs {
			d = max(d, 1+depth(&t.Subs[i]))
		}
		return d
	}
	return depth(&m.tree)
}

func (m *Model) ids() []uint32 {
	ids := make([]uint32, 0, len(m.nodes))
	for id := range m.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Node returns one node's state.
func (m *Model) Node(id uint32) (NodeState, bool) {
	e := m.nodes[id]
	if e == nil {
		return NodeState{}, false
	}
	return e.NodeState, true
}

// Nodes returns every known node's state, by id.
func (m *Model) Nodes() []NodeState {
	out := make([]NodeState, 0, len(m.nodes))
	for _, id := range m.ids() {
		out = append(out, m.nodes[id].NodeState)
	}
	return out
}

// history returns node id's samples, oldest first.
func (m *Model) history(id uint32) []sample {
	e := m.nodes[id]
	if e == nil {
		return nil
	}
	out := make([]sample, 0, len(e.history))
	out = append(out, e.history[e.next:]...)
	return append(out, e.history[:e.next]...)
}

// forget removes a node.
func (m *Model) forget(id uint32) { delete(m.nodes, id) }

// counts returns how many nodes the model knows and how many are online.
func (m *Model) counts() (known, online int) {
	for _, e := range m.nodes {
		known++
		if e.Online {
			online++
		}
	}
	return known, online
}
