package scenario

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// StatusInterval is the telemetry interval of the status scenario. The
// age of the root's data about a node runs from the path latency up to one
// interval plus that latency, so its 99th percentile is about 0.99
// interval: 1 s keeps it under 2 s, 2 s would not (frames state their
// interval in whole seconds, so nothing lies between).
const StatusInterval = time.Second

// Scenario fault timing: the silent node stays down this long before it
// restarts, and the low-memory node stays low this long.
const (
	scenarioDownTime = 30 * time.Second
	scenarioLowTime  = 30 * time.Second
	// scenarioMinWindow is the shortest measurement window that has room
	// for both faults and their recovery.
	scenarioMinWindow = 100 * time.Second
	// scenarioReadyLimit bounds the wait, after the mesh converged, for
	// every node to be online at the root.
	scenarioReadyLimit = time.Minute
	// Free heap of the low-memory fault: under the 10 KB LOW_MEMORY
	// threshold, above the 5 KB critical one.
	scenarioLowMemory = 8 * 1024
)

// StatusConfig describes one status scenario: the mesh of the meshfleet
// sim command with a Collector on the root and a Reporter on every other
// node, a node that goes silent and one that runs low on memory.
type StatusConfig struct {
	Nodes    int // the root included
	Topology sim.Topology
	Seed     uint64
	// Duration is the whole run in virtual time, convergence included
	// (default sim.DefaultScenarioTime).
	Duration time.Duration
	// Link is the link model; a zero Model means sim.ESP8266().
	Link sim.Model
	// Loss, if positive, replaces Link.Link.Loss.
	Loss float64
	// Interval is the nodes' telemetry interval, whole seconds (default
	// StatusInterval).
	Interval time.Duration
	// Aggregate turns on what cuts the root's share: every reporting node
	// runs a status.Aggregator (relays bundle their subtree's frames) and
	// reports on change (status.ReporterConfig.MaxInterval). Off, every
	// node sends one frame every Interval, the stream a stock-compatible
	// node sends.
	Aggregate bool
	// MaxInterval is the longest interval of change-driven reporting,
	// whole seconds (default DefaultMaxInterval); Interval or less keeps
	// the interval fixed (bundling alone). Only with Aggregate.
	MaxInterval time.Duration
}

// DefaultMaxInterval is StatusConfig.MaxInterval when left zero: a node
// whose values stay within their steps sends a frame every 30 s, the
// default interval of a reporter.
const DefaultMaxInterval = 30 * time.Second

func (c *StatusConfig) normalise() error {
	if c.Nodes < 2 || c.Nodes > sim.MaxScenarioNodes {
		return fmt.Errorf("status: scenario needs 2..%d nodes, got %d", sim.MaxScenarioNodes, c.Nodes)
	}
	if c.Topology == "" {
		c.Topology = sim.TopologyRandom
	}
	if _, err := sim.ParseTopology(string(c.Topology)); err != nil {
		return err
	}
	if c.Duration == 0 {
		c.Duration = sim.DefaultScenarioTime
	}
	if c.Duration < 0 {
		return fmt.Errorf("status: negative scenario duration %v", c.Duration)
	}
	if c.Link == (sim.Model{}) {
		c.Link = sim.ESP8266()
	}
	if c.Loss != 0 {
		if !(c.Loss > 0 && c.Loss <= 1) {
			return fmt.Errorf("status: loss %v outside [0,1]", c.Loss)
		}
		c.Link.Link.Loss = c.Loss
	}
	if c.Interval == 0 {
		c.Interval = StatusInterval
	}
	if c.Interval < time.Second || c.Interval%time.Second != 0 || c.Interval > math.MaxUint16*time.Second {
		return fmt.Errorf("status: telemetry interval %v: want whole seconds, 1s..%ds", c.Interval, math.MaxUint16)
	}
	if c.Aggregate && c.MaxInterval == 0 {
		c.MaxInterval = DefaultMaxInterval
	}
	if !c.Aggregate && c.MaxInterval != 0 {
		return fmt.Errorf("status: a longest interval (%v) needs aggregation on", c.MaxInterval)
	}
	if c.MaxInterval < 0 || c.MaxInterval%time.Second != 0 || c.MaxInterval > math.MaxUint16*time.Second {
		return fmt.Errorf("status: longest telemetry interval %v: want whole seconds, up to %ds", c.MaxInterval, math.MaxUint16)
	}
	if c.MaxInterval < c.Interval {
		c.MaxInterval = c.Interval
	}
	return c.Link.Validate()
}

// StatusReport is the outcome of RunStatus. Times are virtual. The
// measurement window runs from the first instant every node is online at
// the root (or one minute after convergence) to the end of the run.
type StatusReport struct {
	// Visibility is the fraction of the nodes other than the root that the
	// root's model has online at the end. VisibilityMin is the smallest
	// such fraction over the window's samples (one per virtual second),
	// not counting the silent node from its crash until it is back.
	Visibility    float64 `json:"visibility"`
	VisibilityMin float64 `json:"visibility_min"`
	// Freshness is how long the root's knowledge of a node lags a change
	// of the node (see freshness): FreshnessP50S, FreshnessP99S and
	// FreshnessMaxS are the nearest-rank percentiles and the largest of
	// the durations of the Changes episodes in the window in which the
	// root's model differed from a counted reporting node's real free
	// memory, RSSI, node or connection count or firmware by a change step
	// or more, each from the last sample (every 0.1 s) at which they
	// agreed to the first at which they agreed again.
	FreshnessP50S float64 `json:"freshness_p50_s"`
	FreshnessP99S float64 `json:"freshness_p99_s"`
	FreshnessMaxS float64 `json:"freshness_max_s"`
	Changes       int     `json:"changes"`
	// DataAgeP99S is the 99th percentile (nearest rank), over one sample
	// per virtual second of the window for every node counted in
	// VisibilityMin, of now minus the time the node measured the latest
	// telemetry the root has accepted from it: the age of the values that
	// travel only with regular frames (uptime, counters, throughput).
	// DataAgeMaxS is the largest sample.
	DataAgeP99S    float64 `json:"data_age_p99_s"`
	DataAgeMaxS    float64 `json:"data_age_max_s"`
	DataAgeSamples int     `json:"data_age_samples"`
	// AlertDetectionS is the worse of OfflineDetectionS and
	// LowMemoryDetectionS; null when the window was too short for the
	// faults (under 100 s) or an alert never came.
	AlertDetectionS *float64 `json:"alert_detection_s"`
	// OfflineDetectionS: from the silent node's last expected report (the
	// root's receipt of its last frame plus the interval that frame
	// stated) to the
	// node_offline alert at the root. OfflineAfterCrashS: from the crash.
	OfflineDetectionS  *float64 `json:"offline_detection_s"`
	OfflineAfterCrashS *float64 `json:"offline_after_crash_s"`
	// LowMemoryDetectionS: from the moment the node's free heap fell
	// under the threshold to the low_memory alert at the root;
	// LowMemoryClearS from its recovery to the alert's clearing.
	LowMemoryDetectionS *float64 `json:"low_memory_detection_s"`
	LowMemoryClearS     *float64 `json:"low_memory_clear_s"`
	// UnexpectedAlerts counts alerts raised in the window other than the
	// two the faults call for.
	UnexpectedAlerts int    `json:"unexpected_alerts"`
	SilentNode       uint32 `json:"silent_node"`
	LowMemoryNode    uint32 `json:"low_memory_node"`

	// StatusOverheadFraction is the status share of the mesh's link
	// capacity: the status bytes sent over all radios times ByteTime over
	// (nodes × window). StatusOverheadBusiest is the share of the busiest
	// radio (with every report ending at the root, the root's):
	// for every node, the status bytes its radio sent times its ByteTime
	// and the status bytes it received times its RxByteTime, each divided
	// by the window; the largest of these. Status bytes are the packages
	// of the status types (IsStatusType) and the TIME_DELAY probes the
	// reporters make, NUL terminators included, counted when a node hands
	// them to its radio (queue drops included) and when a radio delivers
	// them. StatusAirtimeFraction is the busiest radio's status
	// airtime, TxOverhead per message included; StatusOverheadTx the
	// busiest sender's share (sent bytes only). Zero for a model with
	// unlimited bandwidth.
	StatusOverheadFraction float64 `json:"status_overhead_fraction"`
	StatusOverheadBusiest  float64 `json:"status_overhead_busiest_radio"`
	StatusOverheadTx       float64 `json:"status_overhead_tx"`
	StatusAirtimeFraction  float64 `json:"status_airtime_fraction"`
	BusiestRadio           uint32  `json:"busiest_radio"`
	// BusiestProbeFraction is the part of the busiest radio's status
	// bytes (in the direction that made it busiest) that are TIME_DELAY
	// latency probes.
	BusiestProbeFraction float64 `json:"busiest_probe_fraction"`
	BusiestRadioIsRoot   bool    `json:"busiest_radio_is_root"`
	StatusLinkBytes      uint64  `json:"status_link_bytes"` // sent in the window
	LinkBytesWindow      uint64  `json:"link_bytes_window"` // everything transmitted in the window

	// Telemetry: frames the nodes sent and the collector's counts (whole
	// run). ReconstructionChecked counts accepted frames compared with
	// the values their node encoded (exact equality of every field);
	// ReconstructionMismatches those that differed. EncodingMismatches
	// counts frames whose values differ from what the node's providers
	// and counters said when it sent them.
	FramesSent       uint64 `json:"frames_sent"`
	FramesAccepted   uint64 `json:"frames_accepted"`
	FramesMissed     uint64 `json:"frames_missed"`
	FramesRefused    uint64 `json:"frames_refused"`
	KeyframeRequests uint64 `json:"keyframe_requests"`
	Bundles          uint64 `json:"bundles"` // bundles (704) the root took
	// FrameDelayMaxS is the longest any checked frame took from its node
	// handing it over to the root accepting it: relays hold frames, and
	// must never deliver an old one.
	FrameDelayMaxS           float64 `json:"frame_delay_max_s"`
	ReconstructionChecked    uint64  `json:"reconstruction_checked"`
	ReconstructionMismatches uint64  `json:"reconstruction_mismatches"`
	EncodingMismatches       uint64  `json:"encoding_mismatches"`

	ConvergedAtS   *float64 `json:"converged_at_s"`
	StatusReadyAtS *float64 `json:"status_ready_at_s"` // every node online at the root
	WindowS        float64  `json:"window_s"`
	VirtualS       float64  `json:"virtual_s"`
	IntervalS      float64  `json:"interval_s"`
	MaxIntervalS   float64  `json:"max_interval_s"` // longest interval of change-driven reporting; 0 off
	Aggregate      bool     `json:"aggregate"`
	Nodes          int      `json:"nodes"`
	Topology       string   `json:"topology"`
	Link           string   `json:"link"`
	Seed           uint64   `json:"seed"`
	Lost           uint64   `json:"lost"`
	QueueDrops     uint64   `json:"queue_drops"`
}

// RunStatus builds the mesh of cfg (node 0 of the topology is the root,
// with a Collector and its own Reporter; every other node runs a Reporter
// streaming telemetry every cfg.Interval), waits for the mesh to converge
// and every node to be online at the root, and measures until
// cfg.Duration: visibility and freshness every virtual second, a leaf
// that crashes silently at a quarter of the window (restarted 30 s
// later), and another leaf whose free heap falls to 8 KB at half of it
// (for 30 s). It stops with ctx's error if ctx ends (checked every virtual
// second). If the mesh never converges the report is filled in as far as
// it goes and the error wraps sim.ErrNotConverged.
func RunStatus(ctx context.Context, cfg StatusConfig) (StatusReport, error) {
	if err := cfg.normalise(); err != nil {
		return StatusReport{}, err
	}
	sm, err := newScenarioMesh(cfg, scenarioOptions{})
	if err != nil {
		return StatusReport{}, err
	}
	return sm.run(ctx)
}

// run runs the scenario of RunStatus on a mesh built by newScenarioMesh.
func (sm *scenarioMesh) run(ctx context.Context) (StatusReport, error) {
	cfg := sm.cfg
	rep := StatusReport{
		Nodes: cfg.Nodes, Topology: string(cfg.Topology), Link: cfg.Link.Name, Seed: cfg.Seed,
		IntervalS: cfg.Interval.Seconds(), MaxIntervalS: cfg.MaxInterval.Seconds(), Aggregate: cfg.Aggregate,
	}
	net := sm.net
	end := net.Now().Add(cfg.Duration)
	finish := func() StatusReport {
		sm.fillCounts(&rep)
		rep.VirtualS = net.Elapsed().Seconds()
		return rep
	}

	// Convergence, as the sim command's scenario waits for it.
	converged := false
	for !converged && net.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return finish(), err
		}
		converged = net.RunUntil(net.Converged, min(time.Second, end.Sub(net.Now())))
	}
	if !converged {
		return finish(), fmt.Errorf("%w within %v (%d nodes, %s, %s link)",
			sim.ErrNotConverged, cfg.Duration, cfg.Nodes, cfg.Topology, cfg.Link.Name)
	}
	rep.ConvergedAtS = seconds(net.Elapsed())

	// Every node online at the root.
	readyBy := minTime(net.Now().Add(scenarioReadyLimit), end)
	ready := sm.visible() == 1
	for !ready && net.Now().Before(readyBy) {
		if err := ctx.Err(); err != nil {
			return finish(), err
		}
		ready = net.RunUntil(func() bool { return sm.visible() == 1 }, min(time.Second, readyBy.Sub(net.Now())))
	}
	if ready {
		rep.StatusReadyAtS = seconds(net.Elapsed())
	}

	start := net.Now()
	window := end.Sub(start)
	rep.WindowS = window.Seconds()
	sm.startWindow()
	var silent, lowMem *sim.Node
	var crashAt, restartAt, lowAt, restoreAt time.Time
	if window >= scenarioMinWindow {
		// The deepest leaf goes silent (a node with children would take
		// its subtree with it) and the deepest other node runs low: their
		// reports cross the most hops.
		order := sm.byDepth()
		if len(order) >= 2 && order[0].leaf {
			silent, lowMem = sm.net.Node(order[0].id), sm.net.Node(order[1].id)
			crashAt, lowAt = start.Add(window/4), start.Add(window/2)
			restartAt, restoreAt = crashAt.Add(scenarioDownTime), lowAt.Add(scenarioLowTime)
			rep.SilentNode, rep.LowMemoryNode = silent.ID(), lowMem.ID()
			net.At(crashAt, func() {
				sm.excluded[silent.ID()] = true
				net.CrashSilent(silent)
			})
			net.At(restartAt, func() { net.Restart(silent) })
			dev := sm.dev[lowMem.ID()]
			net.At(lowAt, func() { dev.freeOverride = scenarioLowMemory })
			net.At(restoreAt, func() { dev.freeOverride = 0 })
		}
	}

	// Freshness every freshStep; visibility and data age once per
	// virtual second.
	var ages []float64
	rep.VisibilityMin = 1
	fresh := newFreshness()
	for i, t := 0, start; !t.After(end); i, t = i+1, t.Add(freshStep) {
		net.Run(t)
		if i%int(time.Second/freshStep) == 0 {
			if err := ctx.Err(); err != nil {
				return finish(), err
			}
			if silent != nil && sm.excluded[silent.ID()] && !t.Before(restartAt) {
				if st, ok := sm.collector.Model().Node(silent.ID()); ok && st.Online && st.LastSeen.After(restartAt) {
					delete(sm.excluded, silent.ID())
				}
			}
			vis, sample := sm.sample(t)
			rep.VisibilityMin = min(rep.VisibilityMin, vis)
			ages = append(ages, sample...)
		}
		fresh.sample(sm, t)
	}
	net.Run(end)

	rep.Visibility = sm.visible()
	rep.DataAgeSamples = len(ages)
	slices.Sort(ages)
	rep.DataAgeP99S, rep.DataAgeMaxS = percentile(ages, 0.99), percentile(ages, 1)
	changes := fresh.finish(end)
	rep.Changes = len(changes)
	rep.FreshnessP50S, rep.FreshnessP99S, rep.FreshnessMaxS = percentile(changes, 0.5), percentile(changes, 0.99), percentile(changes, 1)

	// Alerts in the window.
	expected := map[alertKey]bool{}
	if silent != nil {
		expected[alertKey{silent.ID(), alert.KindNodeOffline, ""}] = true
		expected[alertKey{lowMem.ID(), alert.KindLowMemory, ""}] = true
		// The heap falls at once: a memory trend anomaly is right too.
		expected[alertKey{lowMem.ID(), alert.KindAnomaly, alert.MetricMemoryTrend}] = true
	}
	for _, a := range sm.alertLog {
		if a.at.Before(start) || a.change.Transition != alert.Raised {
			continue
		}
		al := a.change.Alert
		if !expected[alertKey{al.Node, al.Kind, al.Metric}] {
			rep.UnexpectedAlerts++
		}
	}
	if silent != nil {
		if at, ok := sm.firstAlert(silent.ID(), alert.KindNodeOffline, alert.Raised, crashAt); ok {
			rep.OfflineAfterCrashS = seconds(at.Sub(crashAt))
			if last, ok := sm.lastFrameBefore(silent.ID(), at); ok {
				rep.OfflineDetectionS = seconds(at.Sub(last.at.Add(last.interval)))
			}
		}
		if at, ok := sm.firstAlert(lowMem.ID(), alert.KindLowMemory, alert.Raised, lowAt); ok {
			rep.LowMemoryDetectionS = seconds(at.Sub(lowAt))
		}
		if at, ok := sm.firstAlert(lowMem.ID(), alert.KindLowMemory, alert.Cleared, restoreAt); ok {
			rep.LowMemoryClearS = seconds(at.Sub(restoreAt))
		}
		if rep.OfflineDetectionS != nil && rep.LowMemoryDetectionS != nil {
			worst := max(*rep.OfflineDetectionS, *rep.LowMemoryDetectionS)
			rep.AlertDetectionS = &worst
		}
	}
	sm.fillOverhead(&rep, window)
	return finish(), nil
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// scenarioOptions are the knobs tests turn beyond StatusConfig.
type scenarioOptions struct {
	// stock says which nodes (by index; 0 is the root) run no Reporter,
	// like stock ESP nodes.
	stock func(i int) bool
	// plain says which reporting nodes run no Aggregator when the
	// scenario aggregates, like nodes of the esp/ library: they send
	// single frames and pass their children's on untouched.
	plain func(i int) bool
}

// simDevice is the hardware of a simulated node as its providers read it:
// it survives restarts, and scenarios change it while the mesh runs.
type simDevice struct {
	stock        bool
	plain        bool               // reports, but does not aggregate
	mem          status.MemoryModel // Boot is set at every start
	freeOverride uint32             // when non-zero, the free heap
	rssi         int8
	firmware     [2]string
}

func (d *simDevice) free(now time.Time) uint32 {
	if d.freeOverride != 0 {
		return d.freeOverride
	}
	return d.mem.Free(now)
}

func (d *simDevice) providers() status.Providers {
	return status.Providers{
		Firmware:   func() (string, string) { return d.firmware[0], d.firmware[1] },
		FreeMemory: d.free,
		RSSI:       func(time.Time) int8 { return d.rssi },
	}
}

// radioTally counts the status traffic of one node's radio.
type radioTally struct {
	txMsgs, txBytes, rxBytes uint64
	// The TIME_DELAY part of txBytes and rxBytes.
	txProbeBytes, rxProbeBytes uint64
}

// sentFrame is one telemetry frame as its node encoded it.
type sentFrame struct {
	seq    uint16
	at     time.Time
	values telemetry.Values
}

// sentFrames is the recent frames of one node's current start.
type sentFrames struct {
	ring [64]sentFrame
	n    int
}

func (s *sentFrames) add(f sentFrame) {
	s.ring[s.n%len(s.ring)] = f
	s.n++
}

func (s *sentFrames) find(seq uint16) (sentFrame, bool) {
	for i := s.n - 1; i >= 0 && i >= s.n-len(s.ring); i-- {
		if f := s.ring[i%len(s.ring)]; f.seq == seq {
			return f, true
		}
	}
	return sentFrame{}, false
}

// alertKey identifies an alert as the engine de-duplicates it.
type alertKey struct {
	node   uint32
	kind   alert.Kind
	metric string
}

type alertRecord struct {
	at     time.Time
	change alert.Change
}

// scenarioMesh is a simulated mesh with the status system on it and the
// instruments that measure it: every node's radio traffic, what every
// reporter encoded, and what the root made of it.
type scenarioMesh struct {
	cfg       StatusConfig
	net       *sim.Network
	nodes     []*sim.Node // nodes[0] is the root
	dev       map[uint32]*simDevice
	collector *status.Collector // of the root's current start

	tally map[uint32]*radioTally
	base  map[uint32]radioTally // at the start of the window
	// baseLinkBytes is the network's transmitted bytes at the window start.
	baseLinkBytes uint64

	sent      map[uint32]*sentFrames // by node, its current start
	framesOut uint64
	// dataAt is, per node, when it measured the latest telemetry the root
	// accepted; frameAt when the root accepted it (every one, in order).
	dataAt                            map[uint32]time.Time
	frameAt                           map[uint32][]rootFrame
	checked, mismatched, badEncodings uint64
	frameDelayMax                     time.Duration
	// superseded counts bundled frames followed by a later frame of the
	// same node in the same bundle: the model shows only the later one,
	// so they cannot be checked.
	superseded uint64
	rootFrames uint64 // collector's accepted frames seen so far

	excluded map[uint32]bool // nodes not counted while a fault keeps them away
	alertLog []alertRecord
	// reporters is every Reporter started on a node other than the root,
	// restarts included, in order.
	reporters []*status.Reporter
}

func newScenarioMesh(cfg StatusConfig, opt scenarioOptions) (*scenarioMesh, error) {
	sm := &scenarioMesh{
		cfg:      cfg,
		dev:      map[uint32]*simDevice{},
		tally:    map[uint32]*radioTally{},
		sent:     map[uint32]*sentFrames{},
		dataAt:   map[uint32]time.Time{},
		frameAt:  map[uint32][]rootFrame{},
		excluded: map[uint32]bool{},
	}
	fleet, err := Build(Spec{
		Devices: cfg.Nodes - 1, Seed: cfg.Seed, Model: cfg.Link,
		Layout:       Layout{Topology: cfg.Topology},
		Root:         Root{RandomClock: true, Plugins: sm.rootPlugins},
		RandomClocks: true,
		Prepare: func(i int, id uint32, rng *rand.Rand) {
			sm.dev[id] = &simDevice{
				stock: i > 0 && opt.stock != nil && opt.stock(i),
				plain: i > 0 && opt.plain != nil && opt.plain(i),
				// Heaps between 30 and 46 KB that ripple by 1 KB over a few
				// minutes and leak up to 1 KB an hour: never near the 10 KB
				// threshold, never a trend worth an anomaly.
				mem: status.MemoryModel{Start: 30_000 + uint32(rng.IntN(16_000)), Floor: 20_000, LeakPerHour: uint32(rng.IntN(1000)),
					Ripple: 500, RipplePeriod: time.Duration(3+rng.IntN(5)) * time.Minute},
				// Signals from -45 to -74 dBm: above the weak-WiFi clearing level.
				rssi:     int8(-45 - rng.IntN(30)),
				firmware: [2]string{"3.0.1", "9e107d9d372bb6826bd81d3542a419d6"},
			}
			sm.tally[id] = &radioTally{}
		},
		Plugins: sm.devicePlugins,
		Wrap: func(nd *sim.Node, mn *mesh.Node) sim.Machine {
			return &meteredNode{Node: mn, tally: sm.tally[nd.ID()]}
		},
	})
	if err != nil {
		return nil, err
	}
	sm.net, sm.nodes = fleet.Net, fleet.Nodes()
	root := fleet.Root
	sm.net.OnEvent(func(nd *sim.Node, at time.Time, ev mesh.Event) {
		if e, ok := ev.(status.AlertEvent); ok && nd == root {
			sm.alertLog = append(sm.alertLog, alertRecord{at, e.Change})
		}
	})
	return sm, nil
}

// rootPlugins are the root's status plugins for one start: its own
// reporter, the collector and the check of what the collector accepts.
func (sm *scenarioMesh) rootPlugins(now time.Time, id uint32) []mesh.Plugin {
	d := sm.dev[id]
	d.mem.Boot = now
	local := status.NewReporter(status.ReporterConfig{Interval: sm.cfg.Interval, Providers: d.providers()}, now)
	sm.collector = status.NewCollector(status.CollectorConfig{Local: local}, now)
	sm.rootFrames = 0
	return []mesh.Plugin{local, sm.collector, &frameCheck{sm: sm}}
}

// devicePlugins are a device's status plugins for one start: a reporter
// whose frames are recorded (with an aggregator in front of it when the
// scenario aggregates), or none on a stock node.
func (sm *scenarioMesh) devicePlugins(dv *Device, now time.Time) []mesh.Plugin {
	d := sm.dev[dv.ID]
	d.mem.Boot = now
	if d.stock {
		return nil
	}
	sm.sent[dv.ID] = &sentFrames{}
	tr := &tappedReporter{sm: sm, dev: d, boot: now, dec: telemetry.NewDecoder()}
	cfg := status.ReporterConfig{Interval: sm.cfg.Interval, MaxInterval: sm.cfg.MaxInterval, Providers: d.providers()}
	var plugins []mesh.Plugin
	if sm.cfg.Aggregate && !d.plain {
		agg := status.NewAggregator(status.AggregatorConfig{})
		cfg.Aggregator = &tapBundler{agg: agg, r: tr}
		plugins = append(plugins, agg)
	}
	tr.Reporter = status.NewReporter(cfg, now)
	sm.reporters = append(sm.reporters, tr.Reporter)
	return append(plugins, tr)
}

// rootMesh is the root's current mesh.Node.
func (sm *scenarioMesh) rootMesh() *mesh.Node {
	m, _ := sm.nodes[0].Machine().(*meteredNode)
	if m == nil {
		return nil
	}
	return m.Node
}

// visible is the fraction of the nodes other than the root that the
// root's model has online.
func (sm *scenarioMesh) visible() float64 {
	model := sm.collector.Model()
	online := 0
	for _, nd := range sm.nodes[1:] {
		if st, ok := model.Node(nd.ID()); ok && st.Online {
			online++
		}
	}
	return float64(online) / float64(len(sm.nodes)-1)
}

// startWindow notes the counters at the start of the measurement window.
func (sm *scenarioMesh) startWindow() {
	sm.base = map[uint32]radioTally{}
	for id, t := range sm.tally {
		sm.base[id] = *t
	}
	sm.baseLinkBytes = sm.net.Stats().Bytes
}

// sample returns the fraction of the counted nodes online at the root and
// the age in seconds of the root's telemetry of each counted streaming
// node at now. Counted: every node but the root and the excluded ones.
func (sm *scenarioMesh) sample(now time.Time) (float64, []float64) {
	model := sm.collector.Model()
	counted, online := 0, 0
	var ages []float64
	for _, nd := range sm.nodes[1:] {
		id := nd.ID()
		if sm.excluded[id] {
			continue
		}
		counted++
		if st, ok := model.Node(id); ok && st.Online {
			online++
		}
		if sm.dev[id].stock {
			continue
		}
		at, ok := sm.dataAt[id]
		if !ok {
			// Never heard: as old as the run.
			at = sm.net.Now().Add(-sm.net.Elapsed())
		}
		ages = append(ages, now.Sub(at).Seconds())
	}
	if counted == 0 {
		return 1, ages
	}
	return float64(online) / float64(counted), ages
}

// placed is a node's place in the root's layout.
type placed struct {
	id    uint32
	depth int
	leaf  bool
}

// byDepth lists the reporting nodes of the root's layout, leaves first,
// then deepest first, then by id.
func (sm *scenarioMesh) byDepth() []placed {
	var out []placed
	var walk func(t *protocol.NodeTree, depth int)
	walk = func(t *protocol.NodeTree, depth int) {
		if d := sm.dev[t.NodeID]; depth > 0 && d != nil && !d.stock {
			out = append(out, placed{t.NodeID, depth, len(t.Subs) == 0})
		}
		for i := range t.Subs {
			walk(&t.Subs[i], depth+1)
		}
	}
	if mn := sm.rootMesh(); mn != nil {
		tree := mn.Tree()
		walk(&tree, 0)
	}
	slices.SortFunc(out, func(a, b placed) int {
		switch {
		case a.leaf != b.leaf:
			if a.leaf {
				return -1
			}
			return 1
		case a.depth != b.depth:
			return b.depth - a.depth
		}
		return cmp.Compare(a.id, b.id)
	})
	return out
}

// firstAlert is when the root first reported transition tr of node's
// alert of kind at or after from.
func (sm *scenarioMesh) firstAlert(node uint32, kind alert.Kind, tr alert.Transition, from time.Time) (time.Time, bool) {
	for _, a := range sm.alertLog {
		if !a.at.Before(from) && a.change.Transition == tr && a.change.Alert.Node == node && a.change.Alert.Kind == kind {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// rootFrame is a frame the root accepted: when, and the interval to the
// next regular frame that it stated.
type rootFrame struct {
	at       time.Time
	interval time.Duration
}

// lastFrameBefore is the frame of node the root last accepted before t.
func (sm *scenarioMesh) lastFrameBefore(node uint32, t time.Time) (rootFrame, bool) {
	fs := sm.frameAt[node]
	i, _ := slices.BinarySearchFunc(fs, t, func(a rootFrame, b time.Time) int { return a.at.Compare(b) })
	if i == 0 {
		return rootFrame{}, false
	}
	return fs[i-1], true
}

func (sm *scenarioMesh) fillCounts(rep *StatusReport) {
	st := sm.collector.Stats()
	rep.FramesSent = sm.framesOut
	rep.FramesAccepted = st.Frames
	rep.FramesMissed = st.FramesMissed
	rep.FramesRefused = st.FramesRefused
	rep.KeyframeRequests = st.KeyframeRequests
	rep.Bundles = st.Bundles
	rep.FrameDelayMaxS = sm.frameDelayMax.Seconds()
	rep.ReconstructionChecked = sm.checked
	rep.ReconstructionMismatches = sm.mismatched
	rep.EncodingMismatches = sm.badEncodings
	ns := sm.net.Stats()
	rep.Lost, rep.QueueDrops = ns.Lost, ns.QueueDrops
}

// fillOverhead computes the status shares of the radios over the window.
func (sm *scenarioMesh) fillOverhead(rep *StatusReport, window time.Duration) {
	if window <= 0 {
		return
	}
	radio := sm.cfg.Link.Radio
	w := float64(window)
	var sent float64
	for i, nd := range sm.nodes {
		t, b := sm.tally[nd.ID()], sm.base[nd.ID()]
		tx, rx, msgs := t.txBytes-b.txBytes, t.rxBytes-b.rxBytes, t.txMsgs-b.txMsgs
		rep.StatusLinkBytes += tx
		sent += float64(tx) * float64(radio.ByteTime)
		txShare := float64(tx) * float64(radio.ByteTime) / w
		rep.StatusOverheadTx = max(rep.StatusOverheadTx, txShare)
		rxShare := float64(rx) * float64(radio.RxByteTime) / w
		share := max(txShare, rxShare)
		if share > rep.StatusOverheadBusiest {
			rep.StatusOverheadBusiest = share
			rep.BusiestRadio, rep.BusiestRadioIsRoot = nd.ID(), i == 0
			if txShare >= rxShare {
				rep.BusiestProbeFraction = float64(t.txProbeBytes-b.txProbeBytes) / float64(max(tx, 1))
			} else {
				rep.BusiestProbeFraction = float64(t.rxProbeBytes-b.rxProbeBytes) / float64(max(rx, 1))
			}
		}
		air := (float64(msgs)*float64(radio.TxOverhead) + float64(tx)*float64(radio.ByteTime)) / w
		rep.StatusAirtimeFraction = max(rep.StatusAirtimeFraction, air)
	}
	rep.StatusOverheadFraction = sent / (w * float64(len(sm.nodes)))
	rep.LinkBytesWindow = sm.net.Stats().Bytes - sm.baseLinkBytes
}
