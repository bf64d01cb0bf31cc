package status

import (
	"hash/fnv"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// Providers supply what a Reporter cannot learn from the node. Every field
// is optional; a missing provider reports "unknown" (0 or "").
type Providers struct {
	// Firmware is the running firmware's version and MD5 (the OTA slot
	// store knows them).
	Firmware func() (version, md5 string)
	// Identity is the node's OTA role and hardware (what its OTA receiver
	// accepts images for).
	Identity func() (role, hardware string)
	// FreeMemory is the free heap in bytes: RuntimeMemory on a Linux
	// node, a model in the simulator.
	FreeMemory func(now time.Time) uint32
	// RSSI is the station's signal in dBm.
	RSSI func(now time.Time) int8
	// OTA is the update state and progress in percent.
	OTA func() (OTAState, uint8)
	// Alerts are bits the application sets itself (SENSOR_ERROR, or
	// REBOOT_LOOP from a persistent boot counter). They are added to the
	// bits the Reporter derives from its metrics.
	Alerts func(now time.Time) AlertFlags
	// DeviceStatus is the application's status byte.
	DeviceStatus func() uint8
	// LastError is the application's last error message.
	LastError func() string
}

// ReporterConfig configures a Reporter. Zero fields take the defaults.
type ReporterConfig struct {
	// Collector is the node reports go to. 0: the node that sent the
	// last status query, else the root of the layout.
	Collector uint32
	// Interval between regular telemetry frames (default 30 s); a
	// negative value turns the stream off (queries are still answered).
	Interval time.Duration
	// MaxInterval, when above Interval, turns on change-driven
	// reporting: a value that moves by its step (Steps) since the last
	// frame goes out at once (at the next check, at most one such frame
	// per half Interval) with the priority flag, and a regular frame one
	// Interval later; then the interval is a quarter of what it was
	// before the change (not below Interval), and each regular frame
	// that carries no change doubles it up to MaxInterval. Every frame
	// states the time to the next regular one, so the collector's
	// offline rule follows the interval. Latency is probed every
	// 2·MaxInterval. Whole seconds. 0: a frame every Interval.
	MaxInterval time.Duration
	Steps       ChangeSteps
	// Aggregator, if set, takes the node's own frames into the bundles it
	// sends for its subtree (an *Aggregator on the same node) instead of
	// each frame going out alone.
	Aggregator Bundler
	Telemetry  telemetry.EncoderConfig
	// CheckInterval is how often, between frames, the providers are read
	// for critical changes (new alert bits, and with MaxInterval values
	// past their step), which are sent at once with the priority flag
	// (default 1 s; 500 ms with MaxInterval).
	CheckInterval time.Duration
	// PriorityGap: at most one early frame per gap (default 2 s).
	PriorityGap time.Duration
	// ProbeInterval between TIME_DELAY measurements to the collector,
	// whose smoothed result is the reported latency (default Interval).
	ProbeInterval time.Duration
	// EnhancedInterval: also broadcast a stock EnhancedStatusPackage
	// (604) this often, for stock tools; 0 never.
	EnhancedInterval time.Duration
	Thresholds       Thresholds
	Providers        Providers
	Logger           *slog.Logger
}

// Reporter defaults.
const (
	DefaultCheckInterval = time.Second
	defaultPriorityGap   = 2 * time.Second
)

func (c ReporterConfig) withDefaults() ReporterConfig {
	if c.Interval == 0 {
		c.Interval = defaultReportInterval
	}
	if c.MaxInterval <= c.Interval {
		c.MaxInterval = 0
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
		if c.MaxInterval > 0 {
			// Change-driven, a check is what sends a change: checking
			// twice as often halves the wait, and costs no radio.
			c.CheckInterval = DefaultCheckInterval / 2
		}
	}
	if c.PriorityGap <= 0 {
		c.PriorityGap = defaultPriorityGap
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = defaultReportInterval
		if c.Interval > 0 {
			// Change-driven: latency is one more slow value, and each
			// probe costs the collector's radio a request and a reply
			// (more than a regular frame in a bundle).
			c.ProbeInterval = max(c.Interval, 2*c.MaxInterval, defaultReportInterval/6)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Bundler takes a node's own telemetry frames into bundles; *Aggregator
// is one. Offer fails, as a send would, when the collector is out of
// reach.
type Bundler interface {
	Offer(now time.Time, frame []byte) error
}

// latencyAlpha smooths the TIME_DELAY measurements.
const latencyAlpha = 0.3

// answer is a query reply waiting for its spread delay.
type answer struct {
	due     time.Time
	querier uint32
	qid     uint32
	form    ReportForm
}

// Reporter is the status plugin every node runs: it measures the node
// (uptime, traffic counters and drops from Host.Stats, latency to the
// collector by TIME_DELAY, connections, node count, and the providers'
// firmware, memory, radio and OTA state), streams telemetry frames to the
// collector, sends a frame at once on a critical change, and answers
// status queries. Sans-IO: all it does goes through the Host.
type Reporter struct {
	cfg   ReporterConfig
	host  mesh.Host
	start time.Time
	enc   *telemetry.Encoder

	learned uint32 // collector learnt from a query
	// collectorHere: the reporter is a Collector's Local reporter, so the
	// collector is this node and "lost the connection to the collector"
	// does not apply (a gateway alone at startup is not cut off).
	collectorHere bool
	root          uint32 // root of the layout, cached until the layout changes
	rootValid     bool

	nextFrame, nextCheck, nextProbe, nextEnhanced time.Time
	lastPriority                                  time.Time
	sentFlags                                     AlertFlags // alert bits of the last frame sent
	unreachable                                   bool       // no frame sent yet, or the last found no route
	// Change-driven reporting (MaxInterval): the interval the last frame
	// stated, what it carried and when it went out.
	every    time.Duration
	resume   time.Duration // the interval to go back to once a change is confirmed; 0 none
	sent     Metrics
	haveSent bool
	sentAt   time.Time

	// Rate window for loss and throughput.
	prevStats  mesh.Stats
	prevAt     time.Time
	loss       uint16
	throughput uint32

	latency   alert.EWMA // µs
	latencyAt time.Time
	// probeSpoiled: the node's clock moved since the last TIME_DELAY
	// request went out, so its round trip measures the jump, not the path.
	probeSpoiled bool

	answers []answer
	traffic Traffic
}

// NewReporter returns a reporter for a node started at now.
func NewReporter(cfg ReporterConfig, now time.Time) *Reporter {
	cfg = cfg.withDefaults()
	// unreachable until a frame got through: the first connection that
	// reaches the collector sends one at once.
	r := &Reporter{cfg: cfg, start: now, enc: telemetry.NewEncoder(cfg.Telemetry), prevAt: now, unreachable: true,
		every: cfg.Interval}
	if cfg.Interval > 0 {
		// The first frame soon after start, when the node has had a
		// chance to join; a new connection brings it forward.
		r.nextFrame = now.Add(min(cfg.Interval, 5*time.Second))
		r.nextCheck = now.Add(cfg.CheckInterval)
	}
	r.nextProbe = now.Add(min(cfg.ProbeInterval, 5*time.Second))
	if cfg.EnhancedInterval > 0 {
		r.nextEnhanced = now.Add(cfg.EnhancedInterval)
	}
	return r
}

// Attach implements mesh.Plugin.
func (r *Reporter) Attach(h mesh.Host) { r.host = h }

// Types implements mesh.Plugin: status queries and telemetry control.
func (r *Reporter) Types() []int { return []int{TypeStatusQuery, TypeTelemetryControl} }

// Traffic is what the reporter has sent.
func (r *Reporter) Traffic() Traffic { return r.traffic }

// Collector is the node reports currently go to (0 if none is known).
func (r *Reporter) Collector() uint32 {
	if r.cfg.Collector != 0 {
		return r.cfg.Collector
	}
	if r.collectorHere {
		return r.host.ID()
	}
	if r.learned != 0 {
		return r.learned
	}
	if !r.rootValid {
		t := r.host.Tree()
		r.root, r.rootValid = findRoot(&t), true
	}
	return r.root
}

func findRoot(t *protocol.NodeTree) uint32 {
	if t.Root {
		return t.NodeID
	}
	for i := range t.Subs {
		if id := findRoot(&t.Subs[i]); id != 0 {
			return id
		}
	}
	return 0
}

// reachable reports whether id is in the layout (or is this node).
func (r *Reporter) reachable(id uint32) bool {
	if id == r.host.ID() {
		return true
	}
	_, found := slices.BinarySearch(r.host.NodeList(false), id)
	return found
}

// Snapshot measures the node at now. Loss and throughput are taken over
// the time since the previous snapshot, if at least a second ago, else
// the previous figures are kept.
func (r *Reporter) Snapshot(now time.Time) Metrics {
	st := r.host.Stats()
	if dt := now.Sub(r.prevAt); dt >= time.Second {
		tx := st.MessagesTx - r.prevStats.MessagesTx
		drop := st.MessagesDropped - r.prevStats.MessagesDropped
		r.loss = 0
		if tx+drop > 0 {
			r.loss = uint16(min(1000, (drop*1000+(tx+drop)/2)/(tx+drop)))
		}
		bytes := st.BytesRx + st.BytesTx - r.prevStats.BytesRx - r.prevStats.BytesTx
		r.throughput = uint32(min(math.MaxUint32, float64(bytes)/dt.Seconds()))
		r.prevStats, r.prevAt = st, now
	}
	m := r.measure(now, st)
	m.LossPermille = r.loss
	m.Throughput = r.throughput
	m.Alerts |= r.cfg.Thresholds.flags(&m)
	return m
}

// measure reads everything but the windowed rates and the derived flags.
func (r *Reporter) measure(now time.Time, st mesh.Stats) Metrics {
	p := &r.cfg.Providers
	m := Metrics{
		Uptime:          uint32(min(now.Sub(r.start)/time.Second, math.MaxUint32)),
		MessagesRx:      uint32(st.MessagesRx),
		MessagesTx:      uint32(st.MessagesTx),
		MessagesDropped: uint32(st.MessagesDropped),
		Connections:     uint8(min(st.Connections, math.MaxUint8)),
		Nodes:           uint16(min(len(r.host.NodeList(false)), math.MaxUint16)),
		LossPermille:    r.loss,
		Throughput:      r.throughput,
	}
	if r.every > 0 {
		m.ReportInterval = sat16(uint32(min(r.every/time.Second, math.MaxUint16)))
	}
	if !r.latencyAt.IsZero() && now.Sub(r.latencyAt) <= 3*r.cfg.ProbeInterval {
		m.LatencyUs = uint32(math.Round(r.latency.Mean))
	}
	if p.Firmware != nil {
		m.FirmwareVersion, m.FirmwareMD5 = p.Firmware()
		m.FirmwareHash = FirmwareHash(m.FirmwareVersion, m.FirmwareMD5)
	}
	if p.Identity != nil {
		m.Role, m.Hardware = p.Identity()
	}
	if p.FreeMemory != nil {
		m.FreeMemory = p.FreeMemory(now)
	}
	if p.RSSI != nil {
		m.RSSI = p.RSSI(now)
		m.WiFi = WiFiPercent(m.RSSI)
	}
	if p.OTA != nil {
		m.OTAState, m.OTAProgress = p.OTA()
	}
	if p.Alerts != nil {
		m.Alerts = p.Alerts(now)
	}
	if p.DeviceStatus != nil {
		m.DeviceStatus = p.DeviceStatus()
	}
	if p.LastError != nil {
		m.LastError = p.LastError()
	}
	// A node that is itself the collector (the root, or the gateway's
	// own node) cannot lose its connection to it; having no neighbours
	// yet is the mesh not formed, not this node cut off.
	if c := r.Collector(); c != r.host.ID() && ((c != 0 && !r.reachable(c)) || st.Connections == 0) {
		m.Alerts |= FlagConnectionLost
	}
	return m
}

// flagsNow is the alert bits at now without moving the rate window.
func (r *Reporter) flagsNow(now time.Time) AlertFlags {
	m := r.measure(now, r.host.Stats())
	return m.Alerts | r.cfg.Thresholds.flags(&m)
}

// PrioritySender is implemented by hosts that can queue a message ahead of
// normal traffic on its first hop. A Reporter whose host implements it
// sends priority frames with mesh.PriorityHigh; with other hosts they
// only go out early, at normal priority.
type PrioritySender interface {
	SendRawPriority(now time.Time, msg []byte, p mesh.Priority) error
}

// send routes msg, counting it.
func (r *Reporter) send(now time.Time, typ int, msg []byte) error {
	return r.sendPriority(now, typ, msg, false)
}

func (r *Reporter) sendPriority(now time.Time, typ int, msg []byte, high bool) error {
	var err error
	if ps, ok := r.host.(PrioritySender); ok && high {
		err = ps.SendRawPriority(now, msg, mesh.PriorityHigh)
	} else {
		err = r.host.SendRaw(now, msg)
	}
	if err != nil {
		r.traffic.Failed++
		return err
	}
	r.traffic.add(typ, len(msg))
	return nil
}

// sendFrame sends a telemetry frame to the collector.
func (r *Reporter) sendFrame(now time.Time, priority bool) {
	dest := r.Collector()
	if dest == 0 || dest == r.host.ID() {
		// No collector, or it runs on this node and reads Snapshot.
		return
	}
	r.adapt(now, priority)
	m := r.Snapshot(now)
	frame := r.enc.Encode(now, r.host.NodeTime(now), m.Values(), priority)
	r.sentFlags = m.Alerts
	r.sent, r.haveSent, r.sentAt = m, true, now
	var err error
	if r.cfg.Aggregator != nil {
		if err = r.cfg.Aggregator.Offer(now, frame); err == nil {
			// Counted as its entry in the relay's bundle (add counts
			// a NUL terminator, which an entry does not have).
			r.traffic.add(TypeTelemetryBundle, telemetry.EntrySize(len(frame))-1)
		}
	} else {
		p := TelemetryPackage{From: r.host.ID(), Dest: dest, Frame: frame}
		err = r.sendPriority(now, TypeTelemetry, p.AppendJSON(nil), priority)
	}
	if err != nil {
		// The frame is lost; make sure the next one stands alone.
		r.enc.RequestKeyframe()
		if !r.unreachable {
			r.cfg.Logger.Debug("status: telemetry frame not sent", "collector", dest, "err", err)
		}
		r.unreachable = true
		return
	}
	r.unreachable = false
}

// Tick implements mesh.Plugin.
func (r *Reporter) Tick(now time.Time) {
	if r.host == nil {
		return
	}
	if due(r.nextFrame, now) {
		r.sendFrame(now, false)
		r.nextFrame = nextAfter(r.nextFrame, r.every, now)
		r.nextCheck = now.Add(r.cfg.CheckInterval)
	}
	if due(r.nextCheck, now) {
		r.nextCheck = nextAfter(r.nextCheck, r.cfg.CheckInterval, now)
		r.checkCritical(now)
	}
	if due(r.nextProbe, now) {
		r.nextProbe = nextAfter(r.nextProbe, r.cfg.ProbeInterval, now)
		r.probeSpoiled = false // a new round trip starts (its answer may come at once)
		if c := r.Collector(); c != 0 && c != r.host.ID() && r.host.StartDelayMeasurement(now, c) {
			// Count the request the node sends for us (its reply comes
			// from the collector's node and is not ours).
			req := protocol.TimeSync{Type: protocol.TypeTimeDelay, Dest: c, From: r.host.ID(),
				Msg: protocol.TimeMsg{Type: protocol.TimeRequest, T0: r.host.NodeTime(now)}}
			r.traffic.add(protocol.TypeTimeDelay, len(req.AppendJSON(nil)))
		}
	}
	if due(r.nextEnhanced, now) {
		r.nextEnhanced = nextAfter(r.nextEnhanced, r.cfg.EnhancedInterval, now)
		m := r.Snapshot(now)
		p := m.enhancedStatus(r.host.ID())
		_ = r.send(now, protocol.TypeEnhancedStatus, p.AppendJSON(nil))
	}
	r.sendAnswers(now)
}

// checkCritical sends a priority frame when alert bits appeared since the
// last frame, at most one per PriorityGap (a change inside the gap goes
// out when it ends).
func (r *Reporter) checkCritical(now time.Time) {
	if r.cfg.Interval < 0 {
		return
	}
	if c := r.Collector(); c == 0 || c == r.host.ID() {
		return
	}
	if r.flagsNow(now)&^r.sentFlags == 0 {
		r.checkChange(now)
		return
	}
	if !r.lastPriority.IsZero() && now.Sub(r.lastPriority) < r.cfg.PriorityGap {
		r.nextCheck = r.lastPriority.Add(r.cfg.PriorityGap)
		return
	}
	r.lastPriority = now
	r.sendFrame(now, true)
}

// Notify tells the reporter something critical happened (an OTA failure,
// a sensor fault): the providers are read at once and a priority frame
// goes out if alert bits appeared.
func (r *Reporter) Notify(now time.Time) {
	if r.host != nil {
		r.checkCritical(now)
	}
}

func due(t, now time.Time) bool { return !t.IsZero() && !t.After(now) }

// nextAfter advances a periodic deadline by whole periods past now.
func nextAfter(t time.Time, period time.Duration, now time.Time) time.Time {
	if period <= 0 {
		return time.Time{}
	}
	t = t.Add(period)
	if !t.After(now) {
		t = now.Add(period)
	}
	return t
}

// NextDeadline implements mesh.Plugin.
func (r *Reporter) NextDeadline() time.Time {
	d := earliest(r.nextFrame, r.nextCheck)
	d = earliest(d, r.nextProbe)
	d = earliest(d, r.nextEnhanced)
	for _, a := range r.answers {
		d = earliest(d, a.due)
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// OnEvent implements mesh.EventObserver: delay measurements to the
// collector become the latency, unless the node's clock was adjusted
// while the measurement was under way; a new connection after the
// collector was unreachable brings the next frame (a keyframe) forward.
func (r *Reporter) OnEvent(now time.Time, ev mesh.Event) {
	switch e := ev.(type) {
	case mesh.TimeAdjusted:
		if e.Offset != 0 {
			r.probeSpoiled = true
		}
	case mesh.DelayMeasured:
		if e.NodeID == r.Collector() && e.Delay > 0 && !r.probeSpoiled {
			r.latency.Update(float64(e.Delay), latencyAlpha)
			r.latencyAt = now
		}
	case mesh.DroppedConnection:
		r.rootValid = false
	case mesh.NewConnection, mesh.ChangedConnections:
		r.rootValid = false
		if r.unreachable && r.cfg.Interval > 0 {
			if c := r.Collector(); c != 0 && r.reachable(c) {
				r.enc.RequestKeyframe()
				r.nextFrame = now
				r.unreachable = false
			}
		}
	}
}

// HandlePackage implements mesh.Plugin: status queries and telemetry
// control from the collector.
func (r *Reporter) HandlePackage(now time.Time, _ mesh.ConnID, h protocol.Header, raw []byte) {
	p, err := Decode(raw)
	if err != nil {
		r.cfg.Logger.Debug("status: bad package", "type", h.Type, "from", h.From, "err", err)
		return
	}
	switch q := p.(type) {
	case *StatusQuery:
		r.handleQuery(now, q)
	case *TelemetryControl:
		if q.Keyframe && r.cfg.Interval > 0 {
			r.enc.RequestKeyframe()
			r.nextFrame = now
		}
	}
}

func (r *Reporter) handleQuery(now time.Time, q *StatusQuery) {
	self := r.host.ID()
	if q.From == 0 || q.From == self {
		return
	}
	if q.Dest != 0 && q.Dest != self {
		return
	}
	if q.Dest == 0 && len(q.Targets) > 0 && !slices.Contains(q.Targets, self) {
		return
	}
	if r.cfg.Collector == 0 {
		r.learned = q.From
	}
	a := answer{due: now, querier: q.From, qid: q.ID, form: q.Form}
	if q.Dest == 0 && q.Spread > 0 {
		a.due = now.Add(spreadDelay(self, q.ID, q.Spread))
	}
	for _, p := range r.answers {
		if p.querier == a.querier && p.qid == a.qid {
			return // already waiting to answer this query
		}
	}
	r.answers = append(r.answers, a)
	r.sendAnswers(now)
}

// spreadDelay is this node's reply delay for a broadcast query: a hash of
// node and query id, so nodes spread out but each one's delay is fixed.
func spreadDelay(node, qid uint32, spread time.Duration) time.Duration {
	h := fnv.New64a()
	var b [8]byte
	for i := range 4 {
		b[i] = byte(node >> (8 * i))
		b[4+i] = byte(qid >> (8 * i))
	}
	h.Write(b[:])
	return time.Duration(h.Sum64() % uint64(spread))
}

// sendAnswers sends the query replies that are due.
func (r *Reporter) sendAnswers(now time.Time) {
	kept := r.answers[:0]
	for _, a := range r.answers {
		if a.due.After(now) {
			kept = append(kept, a)
			continue
		}
		if err := r.sendAnswer(now, a); err != nil {
			r.cfg.Logger.Debug("status: query reply not sent", "to", a.querier, "qid", a.qid, "err", err)
		}
	}
	r.answers = kept
}

func (r *Reporter) sendAnswer(now time.Time, a answer) error {
	m := r.Snapshot(now)
	self := r.host.ID()
	if a.form == FormEnhanced {
		msg, err := addressTo(m.enhancedStatus(self).AppendJSON(nil), a.querier)
		if err != nil {
			return err
		}
		return r.send(now, protocol.TypeEnhancedStatus, msg)
	}
	p := StatusReport{From: self, Dest: a.querier, QueryID: a.qid, Metrics: m}
	return r.send(now, TypeStatusReport, p.AppendJSON(nil))
}
