package status

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// CollectorConfig configures a Collector. Zero fields take the defaults.
type CollectorConfig struct {
	Model  ModelConfig
	Alerts alert.Config
	// DisableAlerts runs without an alert engine.
	DisableAlerts bool
	// QueryTimeout is how long one attempt of a query waits for a node
	// (default 5 s, plus the query's spread); QueryRetries how often a
	// node that did not answer is asked again (default 2; negative none).
	QueryTimeout time.Duration
	QueryRetries int
	// QuerySpread is the reply spread of broadcast queries (default 2 s).
	QuerySpread time.Duration
	// KeyframeGap: at most one keyframe request per node per gap
	// (default 10 s).
	KeyframeGap time.Duration
	// FirmwareGap: a node whose telemetry names a firmware the model has
	// no strings for is queried for a full report at once when that hash
	// is new for the node (an OTA update), but is asked again about the
	// same hash only after the gap, and at most 3 times per gap in all
	// (default 1 min). Another node naming the same unknown hash is asked
	// only once the first query could have been answered (QueryTimeout).
	FirmwareGap time.Duration
	// Local is the collector node's own reporter (a node cannot send
	// itself packages): it is sampled every LocalInterval (default its
	// interval, or 30 s) and answers queries for this node. NewCollector
	// makes it report to this node: it never flags CONNECTION_LOST.
	Local         *Reporter
	LocalInterval time.Duration
	Logger        *slog.Logger
}

func (c CollectorConfig) withDefaults() CollectorConfig {
	if c.QueryTimeout <= 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.QueryRetries == 0 {
		c.QueryRetries = 2
	}
	if c.QueryRetries < 0 {
		c.QueryRetries = 0
	}
	if c.QuerySpread <= 0 {
		c.QuerySpread = 2 * time.Second
	}
	if c.KeyframeGap <= 0 {
		c.KeyframeGap = 10 * time.Second
	}
	if c.FirmwareGap <= 0 {
		c.FirmwareGap = time.Minute
	}
	if c.LocalInterval <= 0 {
		c.LocalInterval = defaultReportInterval
		if c.Local != nil && c.Local.cfg.Interval > 0 {
			c.LocalInterval = c.Local.cfg.Interval
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Events a Collector emits through the node (Ready().Events).

// NodeUpdated is new status data about a node, merged into the model.
type NodeUpdated struct {
	mesh.EventBase
	Node    uint32
	Source  Source
	Metrics Metrics
}

// NodeOnline is a node going online or offline in the model.
type NodeOnline struct {
	mesh.EventBase
	Transition
}

// AlertEvent is an alert raised, updated or cleared.
type AlertEvent struct {
	mesh.EventBase
	alert.Change
}

// QueryDone ends a query started with Collector.Query.
type QueryDone struct {
	mesh.EventBase
	ID       uint32
	Answered []uint32 // replied to this query
	Cached   []uint32 // fresh enough in the model, not asked
	Missing  []uint32 // did not reply after every attempt
}

// QueryOptions tune one query. Zero fields take the collector's defaults.
type QueryOptions struct {
	Form ReportForm
	// MaxAge: nodes whose status in the model is at most this old (and
	// whose firmware strings are known) are answered from the model.
	MaxAge  time.Duration
	Timeout time.Duration
	Retries int // negative: no retries
	Spread  time.Duration
}

// ErrNoTargets is returned by Query when there is no node to ask.
var ErrNoTargets = errors.New("status: query has no target node")

type queryTarget struct {
	attempts int
	deadline time.Time
	done     bool
}

type query struct {
	id      uint32
	opt     QueryOptions
	started time.Time
	targets map[uint32]*queryTarget
	result  QueryDone
}

// CollectorStats count what the collector received.
type CollectorStats struct {
	Frames           uint64 `json:"frames"`            // telemetry frames accepted
	FramesMissed     uint64 `json:"frames_missed"`     // lost frames seen from sequence gaps
	FramesRefused    uint64 `json:"frames_refused"`    // deltas whose keyframe was lost
	FramesStale      uint64 `json:"frames_stale"`      // old or duplicate frames
	FramesBad        uint64 `json:"frames_bad"`        // frames that did not decode
	Reports          uint64 `json:"reports"`           // status reports (702)
	StockPackages    uint64 `json:"stock_packages"`    // 202, 204, 604, 605, native or wrapped
	BadPackages      uint64 `json:"bad_packages"`      // malformed status packages
	KeyframeRequests uint64 `json:"keyframe_requests"` // 703 sent
	Bundles          uint64 `json:"bundles"`           // telemetry bundles (704) from relays
}

// Collector is the status plugin of the root (or any node that gathers
// status): it decodes telemetry streams, runs status queries with
// timeouts, retries and caching, takes stock status packages (native or
// wrapped in a type 8/9 message, Q-13), and keeps the Model and the
// alert engine current. Sans-IO: it is stepped by the node it runs in.
type Collector struct {
	cfg    CollectorConfig
	host   mesh.Host
	model  *Model
	alerts *alert.Engine
	dec    *telemetry.Decoder

	now         time.Time // of the latest input
	started     bool
	topoDirty   bool
	nextLocal   time.Time
	nextQueryID uint32
	queries     map[uint32]*query
	keyframeAt  map[uint32]time.Time
	firmwareAt  map[uint32]*firmwareAsks // node → its firmware queries
	hashAskedAt map[uint32]time.Time     // firmware hash → last firmware query
	// firmwareOwed are firmware queries that found no route: node → hash.
	firmwareOwed map[uint32]uint32

	stats   CollectorStats
	traffic Traffic
}

// NewCollector returns a collector with an empty model, created at now.
func NewCollector(cfg CollectorConfig, now time.Time) *Collector {
	cfg = cfg.withDefaults()
	c := &Collector{
		cfg:          cfg,
		now:          now,
		model:        newModel(cfg.Model),
		dec:          telemetry.NewDecoder(),
		queries:      make(map[uint32]*query),
		keyframeAt:   make(map[uint32]time.Time),
		firmwareAt:   make(map[uint32]*firmwareAsks),
		hashAskedAt:  make(map[uint32]time.Time),
		firmwareOwed: make(map[uint32]uint32),
		topoDirty:    true,
	}
	if !cfg.DisableAlerts {
		c.alerts = alert.NewEngine(cfg.Alerts)
	}
	if cfg.Local != nil && cfg.Local.cfg.Collector == 0 {
		cfg.Local.collectorHere = true
	}
	return c
}

// Model is the collector's health model.
func (c *Collector) Model() *Model { return c.model }

// Alerts is the alert engine, nil when disabled.
func (c *Collector) Alerts() *alert.Engine { return c.alerts }

// Stats are the collector's receive counters.
func (c *Collector) Stats() CollectorStats { return c.stats }

// Traffic is what the collector has sent (queries, keyframe requests).
func (c *Collector) Traffic() Traffic { return c.traffic }

// Health is the mesh health from the model, counting active alerts.
func (c *Collector) Health() Health {
	if c.alerts == nil {
		return c.model.health(nil)
	}
	return c.model.health(c.alerts.ActiveCount)
}

// Attach implements mesh.Plugin.
func (c *Collector) Attach(h mesh.Host) { c.host = h }

// Forget drops everything the collector holds about a node (a node
// removed from the fleet): its model state, alerts and telemetry state.
func (c *Collector) Forget(id uint32) {
	c.model.forget(id)
	if c.alerts != nil {
		c.alerts.Forget(id)
	}
	c.dec.Forget(id)
	delete(c.keyframeAt, id)
	delete(c.firmwareAt, id)
}

// Types implements mesh.Plugin: telemetry and status reports. Stock
// status packages are not claimed, so the application still sees them;
// the collector reads them from the node's events.
func (c *Collector) Types() []int {
	return []int{TypeTelemetry, TypeTelemetryBundle, TypeStatusReport}
}

// HandlePackage implements mesh.Plugin.
func (c *Collector) HandlePackage(now time.Time, _ mesh.ConnID, h protocol.Header, raw []byte) {
	c.now = now
	c.handle(now, h.Type, raw)
}

// handle dispatches one package's JSON by type.
func (c *Collector) handle(now time.Time, typ int, raw []byte) {
	switch typ {
	case TypeTelemetry, TypeTelemetryBundle, TypeStatusReport:
		p, err := Decode(raw)
		if err != nil {
			c.stats.BadPackages++
			c.cfg.Logger.Debug("status: bad package", "err", err)
			return
		}
		switch p := p.(type) {
		case *TelemetryPackage:
			c.handleFrame(now, p)
		case *TelemetryBundle:
			// Each frame as if its node had sent it alone: the bundle
			// only saved the envelopes.
			c.stats.Bundles++
			for _, e := range p.Entries {
				c.handleFrame(now, &TelemetryPackage{From: e.Node, Dest: p.Dest, Frame: e.Frame})
			}
		case *StatusReport:
			c.handleReport(now, p)
		}
	case protocol.TypeStatus, protocol.TypeMetrics, protocol.TypeEnhancedStatus, protocol.TypeHealthCheck:
		p, err := protocol.Decode(raw)
		if err != nil {
			c.stats.BadPackages++
			return
		}
		c.handleStock(now, p)
	}
}

// handleMessage takes an application message (type 8/9) whose text may be
// a wrapped status package. It reports whether it was one.
func (c *Collector) handleMessage(now time.Time, from uint32, typ int, msg string) bool {
	outer := protocol.Package(&protocol.Broadcast{From: from, Msg: msg})
	if typ == protocol.TypeSingle {
		outer = &protocol.Single{From: from, Msg: msg}
	}
	inner, ok := protocol.Unwrap(outer)
	if !ok || !IsStatusType(inner.PackageType()) {
		return false
	}
	if raw, isRaw := inner.(*protocol.Raw); isRaw {
		c.handle(now, raw.Type, raw.JSON)
	} else {
		c.handleStock(now, inner)
	}
	return true
}

func (c *Collector) handleStock(now time.Time, p protocol.Package) {
	var from uint32
	var src Source
	var update func(*Metrics)
	switch p := p.(type) {
	case *protocol.EnhancedStatus:
		from, src, update = p.From, SourceEnhanced, func(m *Metrics) { m.applyEnhancedStatus(p) }
	case *protocol.Status:
		from, src, update = p.From, SourceStatus, func(m *Metrics) { m.applyStatus(p) }
	case *protocol.Metrics:
		from, src, update = p.From, SourceMetrics, func(m *Metrics) { m.applyMetrics(p) }
	case *protocol.HealthCheck:
		from, src, update = p.From, SourceHealth, func(m *Metrics) { m.applyHealthCheck(p) }
	default:
		return
	}
	if from == 0 {
		c.stats.BadPackages++
		return
	}
	c.stats.StockPackages++
	c.observe(now, from, src, update)
	if src == SourceEnhanced {
		c.answered(now, from, 0, FormEnhanced)
	}
}

func (c *Collector) handleFrame(now time.Time, p *TelemetryPackage) {
	if p.From == 0 {
		c.stats.BadPackages++
		return
	}
	f, err := c.dec.Decode(p.From, p.Frame)
	switch {
	case errors.Is(err, telemetry.ErrKeyframeMismatch):
		c.stats.FramesRefused++
		c.requestKeyframe(now, p.From)
		return
	case errors.Is(err, telemetry.ErrStale):
		c.stats.FramesStale++
		return
	case err != nil:
		c.stats.FramesBad++
		c.cfg.Logger.Debug("status: bad telemetry frame", "from", p.From, "err", err)
		return
	}
	c.stats.Frames++
	c.stats.FramesMissed += uint64(f.Missed)
	c.observe(now, p.From, SourceTelemetry, func(m *Metrics) { m.applyValues(f.Values) })
	if !c.model.knowsFirmware(p.From) {
		c.askFirmware(now, p.From, f.Values.FirmwareHash)
	}
}

// firmwareQueryBurst is the most firmware queries one node gets per
// FirmwareGap, so a node whose firmware hash flaps cannot keep the root
// querying it.
const firmwareQueryBurst = 3

// firmwareAsks are the firmware queries sent to one node.
type firmwareAsks struct {
	hash uint32      // the hash the latest query asked about
	at   []time.Time // the latest queries, oldest first, at most firmwareQueryBurst
}

// askFirmware queries node for a full report because its telemetry names
// firmware hash fw, which the model has no strings for. A hash new for
// the node (an OTA update just ran) is asked about at once; the same hash
// again only after FirmwareGap. Across nodes a hash is asked about once
// per QueryTimeout: after a fleet update the first node's answer names
// the firmware for all the others, and if it does not come the next node
// is asked.
func (c *Collector) askFirmware(now time.Time, node, fw uint32) {
	gap := c.cfg.FirmwareGap
	a := c.firmwareAt[node]
	if a == nil {
		a = &firmwareAsks{}
		c.firmwareAt[node] = a
	}
	if n := len(a.at); n > 0 {
		if a.hash == fw && now.Sub(a.at[n-1]) < gap {
			return
		}
		if n == firmwareQueryBurst && now.Sub(a.at[0]) < gap {
			return
		}
	}
	if last, ok := c.hashAskedAt[fw]; ok && now.Sub(last) < min(c.cfg.QueryTimeout, gap) {
		return
	}
	if err := c.sendQuery(now, 0, []uint32{node}, FormFull, 0); err != nil {
		// Not sent: a node's first frame can arrive before the layout
		// names it, and the query then finds no route. An ask that never
		// went out does not count; it is made again once the layout
		// changes (or at the node's next frame, which may be a long
		// interval away).
		c.firmwareOwed[node] = fw
		return
	}
	delete(c.firmwareOwed, node)
	if len(a.at) == firmwareQueryBurst {
		a.at = append(a.at[:0], a.at[1:]...)
	}
	a.hash, a.at = fw, append(a.at, now)
	c.pruneHashAsks(now)
	c.hashAskedAt[fw] = now
}

// askOwedFirmware makes again the firmware queries that found no route,
// now that the layout changed.
func (c *Collector) askOwedFirmware(now time.Time) {
	for _, node := range slices.Sorted(maps.Keys(c.firmwareOwed)) {
		fw := c.firmwareOwed[node]
		delete(c.firmwareOwed, node)
		if !c.model.knowsFirmware(node) {
			c.askFirmware(now, node, fw)
		}
	}
}

// pruneHashAsks drops the hashes asked about longer ago than any gate
// looks back, so a long run with many firmware images stays small.
func (c *Collector) pruneHashAsks(now time.Time) {
	if len(c.hashAskedAt) < 64 {
		return
	}
	for h, at := range c.hashAskedAt {
		if now.Sub(at) >= c.cfg.FirmwareGap {
			delete(c.hashAskedAt, h)
		}
	}
}

func (c *Collector) requestKeyframe(now time.Time, node uint32) {
	if last, ok := c.keyframeAt[node]; ok && now.Sub(last) < c.cfg.KeyframeGap {
		return
	}
	c.keyframeAt[node] = now
	p := TelemetryControl{From: c.host.ID(), Dest: node, Keyframe: true}
	if c.send(now, TypeTelemetryControl, p.AppendJSON(nil)) == nil {
		c.stats.KeyframeRequests++
	}
}

func (c *Collector) handleReport(now time.Time, p *StatusReport) {
	if p.From == 0 {
		c.stats.BadPackages++
		return
	}
	c.stats.Reports++
	m := p.Metrics
	c.observe(now, p.From, SourceQuery, func(dst *Metrics) { *dst = m })
	c.answered(now, p.From, p.QueryID, FormFull)
}

// observe merges data into the model and runs the alert rules on it.
func (c *Collector) observe(now time.Time, id uint32, src Source, update func(*Metrics)) {
	st, came := c.model.Observe(now, id, src, update)
	if came {
		c.emit(NodeOnline{Transition: Transition{Node: id, Online: true, At: now, Reason: "report"}})
		if c.alerts != nil {
			c.emitAlerts(c.alerts.SetOnline(now, id, true, "report"))
		}
	}
	if c.alerts != nil {
		c.emitAlerts(c.alerts.Observe(now, id, alertSample(&st.Metrics)))
	}
	c.emit(NodeUpdated{Node: id, Source: src, Metrics: st.Metrics})
}

// alertSample is what the alert rules read of a node's metrics.
func alertSample(m *Metrics) alert.Sample {
	return alert.Sample{
		Uptime:          m.Uptime,
		FreeMemory:      m.FreeMemory,
		LatencyUs:       m.LatencyUs,
		LossPermille:    m.LossPermille,
		RSSI:            m.RSSI,
		WiFi:            m.WiFi,
		Flags:           uint8(m.Alerts),
		OTAFailed:       m.OTAState == OTAFailed,
		OTAState:        m.OTAState.String(),
		FirmwareVersion: m.FirmwareVersion,
		MessagesDropped: m.MessagesDropped,
	}
}

func (c *Collector) emit(ev mesh.Event) {
	if c.host != nil {
		c.host.Emit(ev)
	}
}

func (c *Collector) emitAlerts(cs []alert.Change) {
	for _, ch := range cs {
		c.emit(AlertEvent{Change: ch})
	}
}

func (c *Collector) transitions(now time.Time, ts []Transition) {
	for _, t := range ts {
		c.emit(NodeOnline{Transition: t})
		if c.alerts != nil {
			c.emitAlerts(c.alerts.SetOnline(now, t.Node, t.Online, t.Reason))
		}
	}
}

// OnEvent implements mesh.EventObserver: layout changes refresh the
// topology; stock status packages no plugin consumed and wrapped ones
// feed the model.
func (c *Collector) OnEvent(now time.Time, ev mesh.Event) {
	c.now = now
	switch e := ev.(type) {
	case mesh.NewConnection, mesh.ChangedConnections, mesh.DroppedConnection:
		c.topoDirty = true
	case mesh.PackageReceived:
		if IsStatusType(e.Header.Type) {
			c.handle(now, e.Header.Type, e.JSON)
		}
	case mesh.MessageReceived:
		c.handleMessage(now, e.From, e.Type, e.Msg)
	}
}

func (c *Collector) send(now time.Time, typ int, msg []byte) error {
	if err := c.host.SendRaw(now, msg); err != nil {
		c.traffic.Failed++
		return err
	}
	c.traffic.add(typ, len(msg))
	return nil
}

// Tick implements mesh.Plugin.
func (c *Collector) Tick(now time.Time) {
	if c.host == nil {
		return
	}
	c.now = now
	if !c.started {
		c.started = true
		c.nextLocal = now
	}
	if c.topoDirty {
		c.topoDirty = false
		c.transitions(now, c.model.setTopology(now, c.host.Tree()))
		c.askOwedFirmware(now)
	}
	if c.cfg.Local != nil && due(c.nextLocal, now) {
		c.nextLocal = nextAfter(c.nextLocal, c.cfg.LocalInterval, now)
		c.observeLocal(now)
	}
	c.transitions(now, c.model.tick(now))
	if c.alerts != nil {
		c.emitAlerts(c.alerts.Tick(now))
	}
	c.tickQueries(now)
}

func (c *Collector) observeLocal(now time.Time) {
	m := c.cfg.Local.Snapshot(now)
	c.observe(now, c.host.ID(), SourceLocal, func(dst *Metrics) { *dst = m })
}

// NextDeadline implements mesh.Plugin.
func (c *Collector) NextDeadline() time.Time {
	if !c.started || c.topoDirty {
		return c.now // at once: the layout is to be read
	}
	d := c.model.nextDeadline()
	if c.cfg.Local != nil {
		d = earliest(d, c.nextLocal)
	}
	if c.alerts != nil {
		d = earliest(d, c.alerts.NextDeadline())
	}
	for _, q := range c.queries {
		for _, t := range q.targets {
			if !t.done {
				d = earliest(d, t.deadline)
			}
		}
	}
	return d
}

// Query asks nodes for a status report: targets, or every node of the
// layout if empty. Nodes fresh enough in the model (opt.MaxAge) are not
// asked. Replies and non-replies are reported by a QueryDone event with
// the returned id; the replies are in the model.
func (c *Collector) Query(now time.Time, targets []uint32, opt QueryOptions) (uint32, error) {
	if c.host == nil {
		return 0, fmt.Errorf("status: query: collector not attached to a node")
	}
	if opt.Form == "" {
		opt.Form = FormFull
	}
	if opt.Form != FormFull && opt.Form != FormEnhanced {
		return 0, fmt.Errorf("status: query: unknown form %q", opt.Form)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = c.cfg.QueryTimeout
	}
	if opt.Retries == 0 {
		opt.Retries = c.cfg.QueryRetries
	}
	if opt.Spread <= 0 {
		opt.Spread = c.cfg.QuerySpread
	}
	all := len(targets) == 0
	if all {
		targets = c.host.NodeList(c.cfg.Local != nil)
	}
	targets = slices.Clone(targets)
	slices.Sort(targets)
	targets = slices.Compact(targets)
	if len(targets) == 0 {
		return 0, ErrNoTargets
	}
	c.nextQueryID++
	if c.nextQueryID == 0 { // 0 is the collector's own firmware queries
		c.nextQueryID = 1
	}
	q := &query{id: c.nextQueryID, opt: opt, started: now, targets: make(map[uint32]*queryTarget), result: QueryDone{ID: c.nextQueryID}}
	c.queries[q.id] = q
	self := c.host.ID()
	var ask []uint32
	for _, id := range targets {
		t := &queryTarget{}
		q.targets[id] = t
		if st, ok := c.model.Node(id); ok && opt.MaxAge > 0 && !st.LastSeen.IsZero() &&
			now.Sub(st.LastSeen) <= opt.MaxAge && c.model.knowsFirmware(id) {
			t.done = true
			q.result.Cached = append(q.result.Cached, id)
			continue
		}
		if id == self {
			if c.cfg.Local != nil {
				c.observeLocal(now)
				t.done = true
				q.result.Answered = append(q.result.Answered, id)
				continue
			}
		}
		ask = append(ask, id)
	}
	if len(ask) > 0 {
		// Asking the whole layout: an empty target list says "all".
		list := ask
		if all && len(ask) == len(c.host.NodeList(false)) {
			list = nil
		}
		c.attempt(now, q, ask, list)
	}
	c.finish(q)
	return q.id, nil
}

// attempt sends one round of q to the nodes in ask; list is the target
// list put in a broadcast query (nil for all).
func (c *Collector) attempt(now time.Time, q *query, ask, list []uint32) {
	wait := q.opt.Timeout
	if len(ask) == 1 {
		c.sendQuery(now, q.id, ask, q.opt.Form, 0)
	} else {
		c.sendQuery(now, q.id, list, q.opt.Form, q.opt.Spread)
		wait += q.opt.Spread
	}
	for _, id := range ask {
		t := q.targets[id]
		t.attempts++
		t.deadline = now.Add(wait)
	}
}

// sendQuery sends a query to one node (a single target) or broadcasts it.
func (c *Collector) sendQuery(now time.Time, qid uint32, targets []uint32, form ReportForm, spread time.Duration) error {
	p := StatusQuery{From: c.host.ID(), ID: qid, Targets: targets, Form: form}
	if len(targets) == 1 {
		p.Dest = targets[0]
		p.Targets = nil
	} else {
		p.Spread = spread
	}
	err := c.send(now, TypeStatusQuery, p.AppendJSON(nil))
	if err != nil {
		c.cfg.Logger.Debug("status: query not sent", "qid", qid, "err", err)
	}
	return err
}

// answered marks node's reply to query qid (or, for the enhanced form, a
// 604 from it, which carries no query id).
func (c *Collector) answered(now time.Time, node, qid uint32, form ReportForm) {
	for _, id := range c.queryIDs() {
		q := c.queries[id]
		if (form == FormFull && id != qid) || q.opt.Form != form {
			continue
		}
		t := q.targets[node]
		if t == nil || t.done || t.attempts == 0 {
			continue
		}
		t.done = true
		q.result.Answered = append(q.result.Answered, node)
		c.finish(q)
	}
}

func (c *Collector) queryIDs() []uint32 {
	ids := make([]uint32, 0, len(c.queries))
	for id := range c.queries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c *Collector) tickQueries(now time.Time) {
	for _, id := range c.queryIDs() {
		q := c.queries[id]
		var retry []uint32
		for _, node := range sortedKeys(q.targets) {
			t := q.targets[node]
			if t.done || t.deadline.After(now) {
				continue
			}
			if t.attempts <= q.opt.Retries {
				retry = append(retry, node)
				continue
			}
			t.done = true
			q.result.Missing = append(q.result.Missing, node)
		}
		if len(retry) > 0 {
			c.attempt(now, q, retry, retry)
		}
		c.finish(q)
	}
}

func sortedKeys(m map[uint32]*queryTarget) []uint32 {
	ids := make([]uint32, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// finish reports q if every target is settled.
func (c *Collector) finish(q *query) {
	for _, t := range q.targets {
		if !t.done {
			return
		}
	}
	delete(c.queries, q.id)
	r := q.result
	slices.Sort(r.Answered)
	slices.Sort(r.Cached)
	slices.Sort(r.Missing)
	c.emit(r)
}
