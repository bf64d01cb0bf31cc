package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Kind is what an alert is about. Kinds 1–8 correspond to the alert flag
// bits 0–7.
type Kind uint8

// Alert kinds.
const (
	KindLowMemory Kind = iota + 1
	KindHighLatency
	KindPacketLoss
	KindConnectionLost
	KindOTAFailed
	KindSensorError
	KindWeakWiFi
	KindRebootLoop
	KindNodeOffline
	KindAnomaly

	numKinds = int(KindAnomaly)
)

var kindNames = [...]string{"", "low_memory", "high_latency", "packet_loss", "connection_lost",
	"ota_failed", "sensor_error", "weak_wifi", "reboot_loop", "node_offline", "anomaly"}

func (k Kind) String() string {
	if k >= 1 && int(k) <= numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Flag is the alert bit of kinds 1–8, else 0.
func (k Kind) Flag() AlertFlags {
	if k >= KindLowMemory && k <= KindRebootLoop {
		return 1 << (k - 1)
	}
	return 0
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	if k < 1 || int(k) > numKinds {
		return nil, fmt.Errorf("status: alert kind %d", k)
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i := 1; i <= numKinds; i++ {
		if kindNames[i] == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("status: unknown alert kind %q", b)
}

// Severity of an alert (the numbering of MeshAlertPackage 602).
type Severity uint8

// Severities.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityCritical
)

var severityNames = [...]string{"info", "warning", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) {
	if int(s) >= len(severityNames) {
		return nil, fmt.Errorf("status: severity %d", s)
	}
	return []byte(severityNames[s]), nil
}

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	i := slices.Index(severityNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("status: unknown severity %q", b)
	}
	*s = Severity(i)
	return nil
}

// Alert is one alert and its lifecycle. Alerts are de-duplicated by
// (Node, Kind, Metric): while one is active, the same condition updates it
// instead of raising another.
type Alert struct {
	ID        string    `json:"id"` // "<node>/<type>"
	Node      uint32    `json:"node_id"`
	Kind      Kind      `json:"kind"`
	Metric    string    `json:"metric,omitempty"` // the watched rate, for anomalies
	Severity  Severity  `json:"severity"`
	Active    bool      `json:"active"`
	Message   string    `json:"message"`
	Value     float64   `json:"value"`
	Threshold float64   `json:"threshold"`
	Raised    time.Time `json:"raised_at"`
	Updated   time.Time `json:"updated_at"`
	Cleared   time.Time `json:"cleared_at"` // zero while active
	Updates   int       `json:"updates"`
}

// Type is the alert's type name: the kind, or "anomaly_<metric>".
func (a *Alert) Type() string {
	if a.Kind == KindAnomaly {
		return "anomaly_" + a.Metric
	}
	return a.Kind.String()
}

// AlertTransition is what happened to an alert.
type AlertTransition uint8

// Alert transitions.
const (
	AlertRaised AlertTransition = iota + 1
	AlertUpdated
	AlertCleared
)

func (t AlertTransition) String() string {
	switch t {
	case AlertRaised:
		return "raised"
	case AlertUpdated:
		return "updated"
	case AlertCleared:
		return "cleared"
	}
	return "transition(" + strconv.Itoa(int(t)) + ")"
}

// AlertChange is one transition and the alert after it.
type AlertChange struct {
	Transition AlertTransition
	Alert      Alert
}

// Anomaly metrics watched by the alert engine.
const (
	MetricDropRate    = "drop_rate"    // messages dropped per second
	MetricMemoryTrend = "memory_trend" // free memory change, bytes per second
)

// AnomalyConfig tunes the rate-of-change rules. Zero fields take the
// defaults.
type AnomalyConfig struct {
	Disabled     bool
	Alpha        float64 // EWMA smoothing, default 0.2
	K            float64 // band half-width in standard deviations, default 4
	Warmup       int     // samples before judging, default 8
	ClearSamples int     // samples back inside the band to clear, default 3
	// Floors: deviations smaller than these never count, however quiet
	// the baseline (default 0.5 drops/s and 50 bytes/s).
	DropRateFloor    float64
	MemoryTrendFloor float64
}

// AlertConfig holds the rules' thresholds. Each numeric rule raises when
// the value crosses the first threshold and clears only once it is back
// beyond the second (hysteresis) for ClearSamples samples in a row. Zero
// fields take the defaults, which follow the alert flag table.
type AlertConfig struct {
	LowMemory, LowMemoryClear, LowMemoryCritical uint32        // bytes; default 10 KB, 12 KB, 5 KB
	HighLatency, HighLatencyClear                time.Duration // default 500 ms, 400 ms
	PacketLoss, PacketLossClear                  uint16        // permille; default 100, 50
	PacketLossCritical                           uint16        // default 250
	WeakRSSI, WeakRSSIClear                      int8          // dBm; default -80, -75
	// WeakWiFi and WeakWiFiClear apply to the 0..100 signal when a node
	// reports no RSSI (stock packages); default 40, 50 (-80 and -75 dBm
	// on the 2·(dBm+100) scale).
	WeakWiFi, WeakWiFiClear uint8
	// RebootCount restarts within RebootWindow are a reboot loop
	// (default 3 in 10 minutes).
	RebootCount  int
	RebootWindow time.Duration
	// IgnoreNodeFlags: judge by values only, not by the alert bits the
	// nodes set themselves.
	IgnoreNodeFlags bool
	RaiseSamples    int // bad samples in a row to raise, default 1
	ClearSamples    int // good samples in a row to clear, default 2
	// UpdateRatio: an active alert is reported as updated when its
	// severity changes or its value worsens by this fraction since the
	// last report (default 0.2).
	UpdateRatio float64
	RecentSize  int // cleared alerts kept, default 100
	Anomaly     AnomalyConfig
}

func (c AlertConfig) withDefaults() AlertConfig {
	def := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.LowMemory, 10*1024)
	def(&c.LowMemoryClear, max(12*1024, c.LowMemory))
	def(&c.LowMemoryCritical, min(5*1024, c.LowMemory))
	if c.HighLatency <= 0 {
		c.HighLatency = 500 * time.Millisecond
	}
	if c.HighLatencyClear <= 0 {
		c.HighLatencyClear = min(400*time.Millisecond, c.HighLatency)
	}
	if c.PacketLoss == 0 {
		c.PacketLoss = 100
	}
	if c.PacketLossClear == 0 {
		c.PacketLossClear = min(50, c.PacketLoss)
	}
	if c.PacketLossCritical == 0 {
		c.PacketLossCritical = max(250, c.PacketLoss)
	}
	if c.WeakRSSI == 0 {
		c.WeakRSSI = -80
	}
	if c.WeakRSSIClear == 0 {
		c.WeakRSSIClear = max(-75, c.WeakRSSI)
	}
	if c.WeakWiFi == 0 {
		c.WeakWiFi = 40
	}
	if c.WeakWiFiClear == 0 {
		c.WeakWiFiClear = max(50, c.WeakWiFi)
	}
	if c.RebootCount <= 0 {
		c.RebootCount = 3
	}
	if c.RebootWindow <= 0 {
		c.RebootWindow = 10 * time.Minute
	}
	if c.RaiseSamples <= 0 {
		c.RaiseSamples = 1
	}
	if c.ClearSamples <= 0 {
		c.ClearSamples = 2
	}
	if c.UpdateRatio <= 0 {
		c.UpdateRatio = 0.2
	}
	if c.RecentSize <= 0 {
		c.RecentSize = 100
	}
	a := &c.Anomaly
	if a.Alpha <= 0 || a.Alpha > 1 {
		a.Alpha = 0.2
	}
	if a.K <= 0 {
		a.K = 4
	}
	if a.Warmup <= 0 {
		a.Warmup = 8
	}
	if a.ClearSamples <= 0 {
		a.ClearSamples = 3
	}
	if a.DropRateFloor <= 0 {
		a.DropRateFloor = 0.5
	}
	if a.MemoryTrendFloor <= 0 {
		a.MemoryTrendFloor = 50
	}
	return c
}

type alertKey struct {
	node   uint32
	kind   Kind
	metric string
}

// streak counts consecutive bad and good samples of one rule.
type streak struct {
	Bad  int `json:"bad"`
	Good int `json:"good"`
}

// nodeAlertState is the engine's memory of one node between samples.
type nodeAlertState struct {
	Node      uint32             `json:"node"`
	BootAt    time.Time          `json:"boot_at"`
	Resets    []time.Time        `json:"resets"` // restarts within the reboot window
	LastAt    time.Time          `json:"last_at"`
	LastDrops uint32             `json:"last_drops"`
	LastMem   uint32             `json:"last_mem"`
	LastFlags AlertFlags         `json:"last_flags"`
	Streaks   map[string]*streak `json:"streaks"` // by alert type
	Drop      EWMA               `json:"drop"`
	Memory    EWMA               `json:"memory"`
}

// AlertEngine turns node metrics and online/offline transitions into
// alerts with a lifecycle: threshold rules for the alert flag kinds, a
// node offline rule, a reboot loop rule and EWMA anomaly rules on rates of
// change. Time is always passed in. Not safe for concurrent use.
type AlertEngine struct {
	cfg    AlertConfig
	nodes  map[uint32]*nodeAlertState
	active map[alertKey]*Alert
	recent []Alert // cleared, oldest first, at most RecentSize
}

// NewAlertEngine returns an engine with no alerts.
func NewAlertEngine(cfg AlertConfig) *AlertEngine {
	return &AlertEngine{
		cfg:    cfg.withDefaults(),
		nodes:  make(map[uint32]*nodeAlertState),
		active: make(map[alertKey]*Alert),
	}
}

// Config is the effective configuration.
func (e *AlertEngine) Config() AlertConfig { return e.cfg }

func (e *AlertEngine) node(id uint32) *nodeAlertState {
	n := e.nodes[id]
	if n == nil {
		n = &nodeAlertState{Node: id, Streaks: make(map[string]*streak)}
		e.nodes[id] = n
	}
	return n
}

// verdict of one rule on one sample.
type verdict int8

const (
	unknown verdict = iota // the sample says nothing about it
	bad
	good
)

// Observe evaluates node's new metrics at now and returns the alert
// changes, raised and updated before cleared, each in a fixed order.
func (e *AlertEngine) Observe(now time.Time, node uint32, m Metrics) []AlertChange {
	c := &e.cfg
	n := e.node(node)
	var out []AlertChange

	// Restarts: the boot time (now − uptime) moved forward.
	boot := now.Add(-time.Duration(m.Uptime) * time.Second)
	restarted := !n.BootAt.IsZero() && boot.Sub(n.BootAt) > rebootSlack
	n.BootAt = boot
	if restarted {
		n.Resets = append(n.Resets, now)
	}
	n.pruneResets(now, c.RebootWindow)

	flags := m.Alerts
	if c.IgnoreNodeFlags {
		flags = 0
	}
	flagged := func(k Kind) verdict {
		if flags&k.Flag() != 0 {
			return bad
		}
		return good
	}
	// combine: a set node flag makes the rule bad whatever the value.
	combine := func(k Kind, v verdict) verdict {
		if flags&k.Flag() != 0 {
			return bad
		}
		return v
	}

	// Low memory.
	{
		v, sev := unknown, SeverityWarning
		if m.FreeMemory != 0 {
			switch {
			case m.FreeMemory < c.LowMemory:
				v = bad
			case m.FreeMemory >= c.LowMemoryClear:
				v = good
			}
			if m.FreeMemory < c.LowMemoryCritical {
				sev = SeverityCritical
			}
		}
		out = e.rule(out, now, n, KindLowMemory, "", combine(KindLowMemory, v), sev, float64(m.FreeMemory), float64(c.LowMemory),
			fmt.Sprintf("free memory %d bytes, threshold %d", m.FreeMemory, c.LowMemory), true)
	}
	// High latency.
	{
		v := unknown
		lat := time.Duration(m.LatencyUs) * time.Microsecond
		if m.LatencyUs != 0 {
			switch {
			case lat > c.HighLatency:
				v = bad
			case lat <= c.HighLatencyClear:
				v = good
			}
		}
		out = e.rule(out, now, n, KindHighLatency, "", combine(KindHighLatency, v), SeverityWarning,
			float64(lat.Milliseconds()), float64(c.HighLatency.Milliseconds()),
			fmt.Sprintf("latency %v, threshold %v", lat, c.HighLatency), false)
	}
	// Packet loss.
	{
		v, sev := unknown, SeverityWarning
		switch {
		case m.LossPermille > c.PacketLoss:
			v = bad
		case m.LossPermille <= c.PacketLossClear:
			v = good
		}
		if m.LossPermille >= c.PacketLossCritical {
			sev = SeverityCritical
		}
		out = e.rule(out, now, n, KindPacketLoss, "", combine(KindPacketLoss, v), sev,
			float64(m.LossPermille)/10, float64(c.PacketLoss)/10,
			fmt.Sprintf("packet loss %.1f%%, threshold %.1f%%", float64(m.LossPermille)/10, float64(c.PacketLoss)/10), false)
	}
	// Weak WiFi: RSSI when known, else the 0..100 signal.
	{
		v := unknown
		var val, thr float64
		var msg string
		switch {
		case m.RSSI != 0:
			val, thr = float64(m.RSSI), float64(c.WeakRSSI)
			msg = fmt.Sprintf("RSSI %d dBm, threshold %d dBm", m.RSSI, c.WeakRSSI)
			switch {
			case m.RSSI < c.WeakRSSI:
				v = bad
			case m.RSSI >= c.WeakRSSIClear:
				v = good
			}
		case m.WiFi != 0:
			val, thr = float64(m.WiFi), float64(c.WeakWiFi)
			msg = fmt.Sprintf("WiFi signal %d%%, threshold %d%%", m.WiFi, c.WeakWiFi)
			switch {
			case m.WiFi < c.WeakWiFi:
				v = bad
			case m.WiFi >= c.WeakWiFiClear:
				v = good
			}
		}
		if msg == "" {
			msg = "node reports weak WiFi"
		}
		out = e.rule(out, now, n, KindWeakWiFi, "", combine(KindWeakWiFi, v), SeverityWarning, val, thr, msg, true)
	}
	// OTA failed.
	{
		v := good
		if m.OTAState == OTAFailed {
			v = bad
		}
		out = e.rule(out, now, n, KindOTAFailed, "", combine(KindOTAFailed, v), SeverityCritical, 0, 0,
			fmt.Sprintf("firmware update failed (OTA state %s, firmware %q)", m.OTAState, m.FirmwareVersion), false)
	}
	// Flag-only kinds.
	out = e.rule(out, now, n, KindConnectionLost, "", flagged(KindConnectionLost), SeverityWarning, 0, 0,
		"node reports it lost its connection to the root", false)
	out = e.rule(out, now, n, KindSensorError, "", flagged(KindSensorError), SeverityWarning, 0, 0,
		"node reports a sensor error", false)
	// Reboot loop.
	{
		v := good
		if len(n.Resets) >= c.RebootCount {
			v = bad
		}
		out = e.rule(out, now, n, KindRebootLoop, "", combine(KindRebootLoop, v), SeverityCritical,
			float64(len(n.Resets)), float64(c.RebootCount),
			fmt.Sprintf("%d restarts within %v", len(n.Resets), c.RebootWindow), false)
	}
	n.LastFlags = flags

	// Rates of change, skipped across a restart (counters start again).
	if !c.Anomaly.Disabled && !n.LastAt.IsZero() && !restarted {
		if dt := now.Sub(n.LastAt).Seconds(); dt >= 1 {
			a := &c.Anomaly
			if d := m.MessagesDropped - n.LastDrops; d < 1<<31 {
				rate := float64(d) / dt
				out = e.anomaly(out, now, n, MetricDropRate, &n.Drop, Band{K: a.K, Floor: a.DropRateFloor, Warmup: a.Warmup, Dir: Up}, rate,
					"message drop rate %.2f/s, baseline %.2f/s")
			}
			if m.FreeMemory != 0 && n.LastMem != 0 {
				slope := (float64(m.FreeMemory) - float64(n.LastMem)) / dt
				out = e.anomaly(out, now, n, MetricMemoryTrend, &n.Memory, Band{K: a.K, Floor: a.MemoryTrendFloor, Warmup: a.Warmup, Dir: Down}, slope,
					"free memory changing %.0f bytes/s, baseline %.0f bytes/s")
			}
		}
	}
	n.LastAt = now
	n.LastDrops = m.MessagesDropped
	n.LastMem = m.FreeMemory
	return orderChanges(out)
}

func (n *nodeAlertState) pruneResets(now time.Time, window time.Duration) {
	i := 0
	for i < len(n.Resets) && now.Sub(n.Resets[i]) >= window {
		i++
	}
	n.Resets = n.Resets[i:]
}

// rule applies one sample's verdict to the rule's alert. lowIsBad says a
// smaller value is worse (for the update check).
func (e *AlertEngine) rule(out []AlertChange, now time.Time, n *nodeAlertState, k Kind, metric string, v verdict,
	sev Severity, value, threshold float64, msg string, lowIsBad bool) []AlertChange {
	key := alertKey{n.Node, k, metric}
	s := n.Streaks[k.String()]
	if s == nil {
		s = &streak{}
		n.Streaks[k.String()] = s
	}
	switch v {
	case bad:
		s.Bad++
		s.Good = 0
	case good:
		s.Good++
		s.Bad = 0
	default:
		return out
	}
	a := e.active[key]
	switch {
	case a == nil && v == bad && s.Bad >= e.cfg.RaiseSamples:
		return append(out, e.raise(now, key, sev, value, threshold, msg))
	case a != nil && v == bad:
		return e.update(out, now, a, sev, value, msg, lowIsBad)
	case a != nil && v == good && s.Good >= e.cfg.ClearSamples:
		return append(out, e.clear(now, key, value, msg))
	}
	return out
}

func (e *AlertEngine) anomaly(out []AlertChange, now time.Time, n *nodeAlertState, metric string, base *EWMA, band Band, x float64, format string) []AlertChange {
	outside, _ := band.Outside(base, x)
	msg := fmt.Sprintf(format, x, base.Mean)
	key := alertKey{n.Node, KindAnomaly, metric}
	s := n.Streaks["anomaly_"+metric]
	if s == nil {
		s = &streak{}
		n.Streaks["anomaly_"+metric] = s
	}
	judged := base.N >= band.Warmup
	base.Update(x, e.cfg.Anomaly.Alpha)
	if !judged {
		return out
	}
	a := e.active[key]
	if outside {
		s.Bad++
		s.Good = 0
		if a == nil {
			return append(out, e.raise(now, key, SeverityWarning, x, band.Floor, msg))
		}
		return e.update(out, now, a, SeverityWarning, x, msg, band.Dir == Down)
	}
	s.Good++
	s.Bad = 0
	if a != nil && s.Good >= e.cfg.Anomaly.ClearSamples {
		return append(out, e.clear(now, key, x, msg))
	}
	return out
}

func alertID(k alertKey) string {
	a := Alert{Kind: k.kind, Metric: k.metric}
	return strconv.FormatUint(uint64(k.node), 10) + "/" + a.Type()
}

func (e *AlertEngine) raise(now time.Time, key alertKey, sev Severity, value, threshold float64, msg string) AlertChange {
	a := &Alert{
		ID: alertID(key), Node: key.node, Kind: key.kind, Metric: key.metric, Severity: sev, Active: true,
		Message: msg, Value: value, Threshold: threshold, Raised: now, Updated: now,
	}
	e.active[key] = a
	return AlertChange{AlertRaised, *a}
}

func (e *AlertEngine) update(out []AlertChange, now time.Time, a *Alert, sev Severity, value float64, msg string, lowIsBad bool) []AlertChange {
	worse := value - a.Value
	if lowIsBad {
		worse = -worse
	}
	significant := sev != a.Severity || worse > e.cfg.UpdateRatio*math.Max(math.Abs(a.Value), 1)
	if !significant {
		return out
	}
	a.Severity = sev
	a.Value = value
	a.Message = msg
	a.Updated = now
	a.Updates++
	return append(out, AlertChange{AlertUpdated, *a})
}

func (e *AlertEngine) clear(now time.Time, key alertKey, value float64, msg string) AlertChange {
	a := e.active[key]
	delete(e.active, key)
	a.Active = false
	a.Cleared = now
	a.Updated = now
	a.Value = value
	a.Message = "cleared: " + msg
	e.recent = append(e.recent, *a)
	if over := len(e.recent) - e.cfg.RecentSize; over > 0 {
		e.recent = slices.Delete(e.recent, 0, over)
	}
	return AlertChange{AlertCleared, *a}
}

func orderChanges(cs []AlertChange) []AlertChange {
	slices.SortStableFunc(cs, func(a, b AlertChange) int {
		if a.Transition != b.Transition {
			return int(a.Transition) - int(b.Transition)
		}
		return 0
	})
	return cs
}

// SetOnline applies a node going online or offline (from the Model):
// offline raises node_offline, online clears it. reason is shown in the
// alert's message.
func (e *AlertEngine) SetOnline(now time.Time, node uint32, online bool, reason string) []AlertChange {
	key := alertKey{node, KindNodeOffline, ""}
	a := e.active[key]
	switch {
	case !online && a == nil:
		e.node(node)
		return []AlertChange{e.raise(now, key, SeverityCritical, 0, 0, fmt.Sprintf("node %d offline: %s", node, reason))}
	case online && a != nil:
		return []AlertChange{e.clear(now, key, 0, fmt.Sprintf("node %d back online", node))}
	}
	return nil
}

// Tick clears reboot loops whose restarts have aged out of the window.
func (e *AlertEngine) Tick(now time.Time) []AlertChange {
	var out []AlertChange
	for _, id := range e.nodeIDs() {
		n := e.nodes[id]
		n.pruneResets(now, e.cfg.RebootWindow)
		key := alertKey{id, KindRebootLoop, ""}
		if e.active[key] != nil && len(n.Resets) < e.cfg.RebootCount && n.LastFlags&FlagRebootLoop == 0 {
			out = append(out, e.clear(now, key, float64(len(n.Resets)), fmt.Sprintf("%d restarts within %v", len(n.Resets), e.cfg.RebootWindow)))
		}
	}
	return out
}

// NextDeadline is when Tick next has something to do; zero if never.
func (e *AlertEngine) NextDeadline() time.Time {
	var d time.Time
	for key := range e.active {
		if key.kind != KindRebootLoop {
			continue
		}
		n := e.nodes[key.node]
		if n == nil || len(n.Resets) < e.cfg.RebootCount {
			continue
		}
		t := n.Resets[len(n.Resets)-e.cfg.RebootCount].Add(e.cfg.RebootWindow)
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

func (e *AlertEngine) nodeIDs() []uint32 {
	ids := make([]uint32, 0, len(e.nodes))
	for id := range e.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func compareAlerts(a, b Alert) int {
	if a.Node != b.Node {
		if a.Node < b.Node {
			return -1
		}
		return 1
	}
	if a.Kind != b.Kind {
		return int(a.Kind) - int(b.Kind)
	}
	if a.Metric < b.Metric {
		return -1
	}
	if a.Metric > b.Metric {
		return 1
	}
	return 0
}

// Active lists the active alerts by node, kind and metric.
func (e *AlertEngine) Active() []Alert {
	out := make([]Alert, 0, len(e.active))
	for _, a := range e.active {
		out = append(out, *a)
	}
	slices.SortFunc(out, compareAlerts)
	return out
}

// ActiveCount is the number of active alerts of one node.
func (e *AlertEngine) ActiveCount(node uint32) int {
	n := 0
	for k := range e.active {
		if k.node == node {
			n++
		}
	}
	return n
}

// Recent lists the last cleared alerts, oldest first.
func (e *AlertEngine) Recent() []Alert { return slices.Clone(e.recent) }

// Forget drops a node's state and alerts (without reporting them cleared).
func (e *AlertEngine) Forget(node uint32) {
	delete(e.nodes, node)
	for k := range e.active {
		if k.node == node {
			delete(e.active, k)
		}
	}
}

// alertStateVersion is the version of the persisted state format.
const alertStateVersion = 1

type alertState struct {
	Version int               `json:"version"`
	Active  []Alert           `json:"active"`
	Recent  []Alert           `json:"recent"`
	Nodes   []*nodeAlertState `json:"nodes"`
}

// ErrAlertState is wrapped by Restore's errors.
var ErrAlertState = errors.New("status: invalid alert state")

// MarshalJSON writes the engine's whole state (alerts, per-node rule and
// baseline state) so a gateway can persist it and Restore it after a
// restart.
func (e *AlertEngine) MarshalJSON() ([]byte, error) {
	st := alertState{Version: alertStateVersion, Active: e.Active(), Recent: e.Recent()}
	for _, id := range e.nodeIDs() {
		st.Nodes = append(st.Nodes, e.nodes[id])
	}
	return json.Marshal(st)
}

// Restore replaces the engine's state with one written by MarshalJSON. On
// error the engine is unchanged.
func (e *AlertEngine) Restore(data []byte) error {
	var st alertState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%w: %w", ErrAlertState, err)
	}
	if st.Version != alertStateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrAlertState, st.Version, alertStateVersion)
	}
	nodes := make(map[uint32]*nodeAlertState, len(st.Nodes))
	for _, n := range st.Nodes {
		if n == nil {
			return fmt.Errorf("%w: null node entry", ErrAlertState)
		}
		if _, dup := nodes[n.Node]; dup {
			return fmt.Errorf("%w: node %d listed twice", ErrAlertState, n.Node)
		}
		if n.Streaks == nil {
			n.Streaks = make(map[string]*streak)
		}
		for name, s := range n.Streaks {
			if s == nil || s.Bad < 0 || s.Good < 0 {
				return fmt.Errorf("%w: node %d: bad streak %q", ErrAlertState, n.Node, name)
			}
		}
		for _, w := range []*EWMA{&n.Drop, &n.Memory} {
			if w.N < 0 || w.Var < 0 {
				return fmt.Errorf("%w: node %d: bad baseline %+v", ErrAlertState, n.Node, *w)
			}
		}
		if !slices.IsSortedFunc(n.Resets, func(a, b time.Time) int { return a.Compare(b) }) {
			return fmt.Errorf("%w: node %d: restarts out of order", ErrAlertState, n.Node)
		}
		nodes[n.Node] = n
	}
	active := make(map[alertKey]*Alert, len(st.Active))
	for i := range st.Active {
		a := st.Active[i]
		if err := checkAlert(&a); err != nil {
			return err
		}
		if !a.Active {
			return fmt.Errorf("%w: alert %s listed as active is cleared", ErrAlertState, a.ID)
		}
		key := alertKey{a.Node, a.Kind, a.Metric}
		if active[key] != nil {
			return fmt.Errorf("%w: alert %s listed twice", ErrAlertState, a.ID)
		}
		active[key] = &a
	}
	for i := range st.Recent {
		if err := checkAlert(&st.Recent[i]); err != nil {
			return err
		}
	}
	if over := len(st.Recent) - e.cfg.RecentSize; over > 0 {
		st.Recent = st.Recent[over:]
	}
	e.nodes, e.active, e.recent = nodes, active, st.Recent
	return nil
}

func checkAlert(a *Alert) error {
	if a.Kind < 1 || int(a.Kind) > numKinds {
		return fmt.Errorf("%w: alert %q has kind %d", ErrAlertState, a.ID, a.Kind)
	}
	if (a.Kind == KindAnomaly) != (a.Metric != "") {
		return fmt.Errorf("%w: alert %q: metric %q with kind %s", ErrAlertState, a.ID, a.Metric, a.Kind)
	}
	if want := alertID(alertKey{a.Node, a.Kind, a.Metric}); a.ID != want {
		return fmt.Errorf("%w: alert id %q, want %q", ErrAlertState, a.ID, want)
	}
	return nil
}
