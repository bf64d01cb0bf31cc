package status

import (
	"log/slog"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// AggregatorConfig configures an Aggregator. Zero fields take the
// defaults.
type AggregatorConfig struct {
	// Collector is where the bundled frames go; only frames addressed to
	// it are taken. 0: the root of the layout (as ReporterConfig).
	Collector uint32
	// UrgentHold is how long all relays on a path together may hold a
	// keyframe or a frame sent early for a change (default 200 ms): the
	// price in freshness of sharing a bundle.
	UrgentHold time.Duration
	// RegularHold is the same for regular frames (default 1 s). It must
	// stay well under the collector's 3 s offline margin, which a frame
	// held longer would eat into.
	RegularHold time.Duration
	Logger      *slog.Logger
}

// Aggregator defaults.
const (
	DefaultUrgentHold  = 200 * time.Millisecond
	DefaultRegularHold = time.Second
)

func (c AggregatorConfig) withDefaults() AggregatorConfig {
	if c.UrgentHold <= 0 {
		c.UrgentHold = DefaultUrgentHold
	}
	if c.RegularHold <= 0 {
		c.RegularHold = DefaultRegularHold
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// AggregatorStats count what an Aggregator took and sent.
type AggregatorStats struct {
	FramesIn   uint64 `json:"frames_in"`   // frames taken: in transit, in bundles, and the node's own
	Transit    uint64 `json:"transit"`     // of those, frames of other nodes taken in transit
	BundlesIn  uint64 `json:"bundles_in"`  // bundles taken in transit from relays below
	BundlesOut uint64 `json:"bundles_out"` // bundles sent
	SinglesOut uint64 `json:"singles_out"` // frames sent alone (a bundle of one goes out as it came)
	// Dropped counts frames not delivered: no route to the collector, or
	// their node left the layout while they waited.
	Dropped uint64 `json:"dropped"`
}

// held is one frame waiting for its bundle.
type held struct {
	entry   telemetry.BundleEntry // Waited: before it arrived here
	arrived time.Time
	// single is the frame's 700 package as it arrived, sent unchanged if
	// the frame ends up alone.
	single []byte
}

// Aggregator is the status plugin of a relay that bundles its subtree's
// telemetry (package 704, status/PROTOCOL.md): it takes the 700 frames
// and 704 bundles passing through towards the collector, and the node's
// own frames (ReporterConfig.Aggregator), and sends them on as bundles of
// up to telemetry.MaxBundleSize bytes (a leaf, with nothing to share a
// bundle with, sends its own frames at once, as plain 700s). A frame waits
// at most its hold,
// less what relays below already held it, so the delay it adds does not
// grow with the depth of the tree. Frames are never kept past their bundle, never sent
// twice, and those of a node that left the layout are dropped, so the
// collector never hears an old value as a new one. Sans-IO: the node
// steps it.
type Aggregator struct {
	cfg     AggregatorConfig
	host    mesh.Host
	pending []held
	size    int // bundle bytes of pending, header included
	due     time.Time
	stats   AggregatorStats

	root      uint32
	rootValid bool
}

// NewAggregator returns an aggregator holding nothing.
func NewAggregator(cfg AggregatorConfig) *Aggregator {
	return &Aggregator{cfg: cfg.withDefaults()}
}

// Attach implements mesh.Plugin.
func (a *Aggregator) Attach(h mesh.Host) { a.host = h }

// Types implements mesh.Plugin: frames and bundles, which the node hands
// over in transit (HandleTransit).
func (a *Aggregator) Types() []int { return []int{TypeTelemetry, TypeTelemetryBundle} }

// Stats are the aggregator's counts.
func (a *Aggregator) Stats() AggregatorStats { return a.stats }

// HandlePackage implements mesh.Plugin. Frames addressed to this node
// itself are not in transit and not ours to bundle.
func (a *Aggregator) HandlePackage(time.Time, mesh.ConnID, protocol.Header, []byte) {}

// collector is where bundles go (0 if unknown).
func (a *Aggregator) collector() uint32 {
	if a.cfg.Collector != 0 {
		return a.cfg.Collector
	}
	if !a.rootValid {
		t := a.host.Tree()
		a.root, a.rootValid = findRoot(&t), true
	}
	return a.root
}

// HandleTransit implements mesh.TransitHandler: a frame or bundle on its
// way to the collector is taken; anything else, or what does not decode
// (the collector will count it), passes on untouched.
func (a *Aggregator) HandleTransit(now time.Time, _ mesh.ConnID, h protocol.Header, raw []byte) bool {
	c := a.collector()
	if c == 0 || h.Dest != c || c == a.host.ID() {
		return false
	}
	p, err := Decode(raw)
	if err != nil {
		return false
	}
	switch p := p.(type) {
	case *TelemetryPackage:
		if p.From == 0 || len(p.Frame) > telemetry.MaxFrameSize {
			return false
		}
		if _, err := telemetry.ParseHeader(p.Frame); err != nil {
			return false
		}
		a.stats.Transit++
		a.hold(now, telemetry.BundleEntry{Node: p.From, Frame: p.Frame}, slices.Clone(raw))
	case *TelemetryBundle:
		a.stats.BundlesIn++
		for _, e := range p.Entries {
			// The frames alias the decoded bundle, which nothing else keeps.
			a.stats.Transit++
			a.hold(now, e, nil)
		}
	default:
		return false
	}
	a.flushDue(now)
	return true
}

// Offer takes one of this node's own frames. It fails with mesh.ErrNoRoute
// when no collector is known or reachable, as a send would.
func (a *Aggregator) Offer(now time.Time, frame []byte) error {
	c := a.collector()
	if c == 0 || c == a.host.ID() {
		return mesh.ErrNoRoute
	}
	if _, found := slices.BinarySearch(a.host.NodeList(false), c); !found {
		return mesh.ErrNoRoute
	}
	if len(a.pending) == 0 && a.host.Stats().Connections <= 1 {
		// A leaf has no subtree to share a bundle with: waiting would
		// only delay the frame.
		if err := a.host.SendRaw(now, a.single(c, telemetry.BundleEntry{Node: a.host.ID(), Frame: frame})); err != nil {
			return err
		}
		a.stats.FramesIn++
		a.stats.SinglesOut++
		return nil
	}
	a.hold(now, telemetry.BundleEntry{Node: a.host.ID(), Frame: slices.Clone(frame)}, nil)
	a.flushDue(now)
	return nil
}

// single is the 700 package of one frame.
func (a *Aggregator) single(collector uint32, e telemetry.BundleEntry) []byte {
	p := TelemetryPackage{From: e.Node, Dest: collector, Frame: e.Frame}
	return p.AppendJSON(nil)
}

// hold queues one frame, sending what is pending first if the frame
// would not fit.
func (a *Aggregator) hold(now time.Time, e telemetry.BundleEntry, single []byte) {
	a.stats.FramesIn++
	n := telemetry.EntrySize(len(e.Frame))
	if a.size+n > telemetry.MaxBundleSize {
		a.flush(now)
	}
	if a.size == 0 {
		a.size = 1 // the bundle's version byte
	}
	budget := a.cfg.RegularHold
	if telemetry.Urgent(e.Frame) {
		budget = a.cfg.UrgentHold
	}
	due := now.Add(max(0, budget-e.Waited))
	if a.due.IsZero() || due.Before(a.due) {
		a.due = due
	}
	a.pending = append(a.pending, held{entry: e, arrived: now, single: single})
	a.size += n
}

func (a *Aggregator) flushDue(now time.Time) {
	if due(a.due, now) {
		a.flush(now)
	}
}

// flush sends everything pending as one bundle, or a frame that waited
// nowhere as the plain 700 it came as. A frame that waited goes in a
// bundle even alone, so the relays above know how long it has waited. All
// at normal priority: a bundle that overtook an earlier one would bring an
// old keyframe after a newer frame.
func (a *Aggregator) flush(now time.Time) {
	pending := a.pending
	a.pending, a.size, a.due = nil, 0, time.Time{}
	if len(pending) == 0 {
		return
	}
	c := a.collector()
	var msg []byte
	alone := len(pending) == 1 && pending[0].single != nil && pending[0].entry.Waited+now.Sub(pending[0].arrived) < telemetry.WaitUnit
	if alone {
		msg = pending[0].single
	} else {
		b := TelemetryBundle{From: a.host.ID(), Dest: c, Entries: make([]telemetry.BundleEntry, len(pending))}
		for i, p := range pending {
			e := p.entry
			e.Waited += now.Sub(p.arrived)
			b.Entries[i] = e
		}
		msg = b.AppendJSON(nil)
	}
	switch err := a.host.SendRaw(now, msg); {
	case err != nil:
		a.stats.Dropped += uint64(len(pending))
		a.cfg.Logger.Debug("status: telemetry bundle not sent", "collector", c, "frames", len(pending), "err", err)
	case alone:
		a.stats.SinglesOut++
	default:
		a.stats.BundlesOut++
	}
}

// Tick implements mesh.Plugin.
func (a *Aggregator) Tick(now time.Time) { a.flushDue(now) }

// NextDeadline implements mesh.Plugin.
func (a *Aggregator) NextDeadline() time.Time { return a.due }

// OnEvent implements mesh.EventObserver: a layout change may move the
// root, and drops the waiting frames of nodes that left it (the collector
// takes a node that left as offline at once; a frame delivered after that
// would bring it back on data it no longer has).
func (a *Aggregator) OnEvent(_ time.Time, ev mesh.Event) {
	switch ev.(type) {
	case mesh.DroppedConnection, mesh.NewConnection, mesh.ChangedConnections:
	default:
		return
	}
	a.rootValid = false
	if len(a.pending) == 0 {
		return
	}
	nodes := a.host.NodeList(true)
	kept := a.pending[:0]
	size := 1
	for _, p := range a.pending {
		if _, found := slices.BinarySearch(nodes, p.entry.Node); found {
			kept = append(kept, p)
			size += telemetry.EntrySize(len(p.entry.Frame))
			continue
		}
		a.stats.Dropped++
	}
	a.pending, a.size = kept, size
	if len(kept) == 0 {
		a.size, a.due = 0, time.Time{}
	}
}
