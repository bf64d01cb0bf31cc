package alert

import (
	"fmt"
	"time"
)

// rules is the rule table, in the order Observe reports changes of the
// same transition. Each row is one of:
//   - a threshold rule: readings judged against thresholds from Config;
//   - a predicate rule (failing): a condition no comparison fits;
//   - a flag rule (neither): raised by the node's own alert bit alone;
//   - a presence rule: raised and cleared by SetOnline, not by samples;
//   - an anomaly rule (trend): a rate of change against its baseline.
//
// Every rule of a kind with an alert bit (Kind.Flag) is bad while the
// node sets that bit, unless Config.IgnoreNodeFlags.
var rules = []rule{
	{
		kind: KindLowMemory, severity: SeverityWarning,
		readings: []reading{{
			read:     func(o *observation) (float64, bool) { return float64(o.sample.FreeMemory), o.sample.FreeMemory != 0 },
			raise:    bound{below, func(c *Config) float64 { return float64(c.LowMemory) }},
			clear:    bound{atLeast, func(c *Config) float64 { return float64(c.LowMemoryClear) }},
			critical: bound{below, func(c *Config) float64 { return float64(c.LowMemoryCritical) }},
			message: func(o *observation, x float64) string {
				return fmt.Sprintf("free memory %d bytes, threshold %d", uint32(x), o.cfg.LowMemory)
			},
		}},
	},
	{
		kind: KindHighLatency, severity: SeverityWarning,
		readings: []reading{{
			// In nanoseconds, to compare exactly with the Duration thresholds.
			read: func(o *observation) (float64, bool) {
				return float64(o.sample.LatencyUs) * 1e3, o.sample.LatencyUs != 0
			},
			raise: bound{above, func(c *Config) float64 { return float64(c.HighLatency) }},
			clear: bound{atMost, func(c *Config) float64 { return float64(c.HighLatencyClear) }},
			unit:  nanoseconds,
			message: func(o *observation, x float64) string {
				return fmt.Sprintf("latency %v, threshold %v", time.Duration(x), o.cfg.HighLatency)
			},
		}},
	},
	{
		kind: KindPacketLoss, severity: SeverityWarning,
		readings: []reading{{
			read:     func(o *observation) (float64, bool) { return float64(o.sample.LossPermille), true },
			raise:    bound{above, func(c *Config) float64 { return float64(c.PacketLoss) }},
			clear:    bound{atMost, func(c *Config) float64 { return float64(c.PacketLossClear) }},
			critical: bound{atLeast, func(c *Config) float64 { return float64(c.PacketLossCritical) }},
			unit:     permille,
			message: func(o *observation, x float64) string {
				return fmt.Sprintf("packet loss %.1f%%, threshold %.1f%%", x/10, float64(o.cfg.PacketLoss)/10)
			},
		}},
	},
	{
		// RSSI when known, else the 0..100 signal of stock packages.
		kind: KindWeakWiFi, severity: SeverityWarning,
		readings: []reading{{
			read:  func(o *observation) (float64, bool) { return float64(o.sample.RSSI), o.sample.RSSI != 0 },
			raise: bound{below, func(c *Config) float64 { return float64(c.WeakRSSI) }},
			clear: bound{atLeast, func(c *Config) float64 { return float64(c.WeakRSSIClear) }},
			message: func(o *observation, x float64) string {
				return fmt.Sprintf("RSSI %d dBm, threshold %d dBm", int8(x), o.cfg.WeakRSSI)
			},
		}, {
			read:  func(o *observation) (float64, bool) { return float64(o.sample.WiFi), o.sample.WiFi != 0 },
			raise: bound{below, func(c *Config) float64 { return float64(c.WeakWiFi) }},
			clear: bound{atLeast, func(c *Config) float64 { return float64(c.WeakWiFiClear) }},
			message: func(o *observation, x float64) string {
				return fmt.Sprintf("WiFi signal %d%%, threshold %d%%", uint8(x), o.cfg.WeakWiFi)
			},
		}},
		message: func(*observation) string { return "node reports weak WiFi" },
	},
	{
		kind: KindOTAFailed, severity: SeverityCritical,
		failing: func(o *observation) bool { return o.sample.OTAFailed },
		message: func(o *observation) string {
			return fmt.Sprintf("firmware update failed (OTA state %s, firmware %q)", o.sample.OTAState, o.sample.FirmwareVersion)
		},
	},
	{
		kind: KindConnectionLost, severity: SeverityWarning,
		message: func(*observation) string { return "node reports it lost its connection to the root" },
	},
	{
		kind: KindSensorError, severity: SeverityWarning,
		message: func(*observation) string { return "node reports a sensor error" },
	},
	{
		// Restarts within the window, counted by Observe from the uptime;
		// Tick clears the loop once they age out.
		kind: KindRebootLoop, severity: SeverityCritical,
		readings: []reading{{
			read:  func(o *observation) (float64, bool) { return float64(o.restarts), true },
			raise: bound{atLeast, func(c *Config) float64 { return float64(c.RebootCount) }},
			clear: bound{below, func(c *Config) float64 { return float64(c.RebootCount) }},
			message: func(o *observation, x float64) string {
				return restartsMessage(int(x), o.cfg.RebootWindow)
			},
		}},
	},
	{
		kind: KindNodeOffline, severity: SeverityCritical, presence: true,
		message: func(o *observation) string {
			if o.online {
				return fmt.Sprintf("node %d back online", o.node)
			}
			return fmt.Sprintf("node %d offline: %s", o.node, o.reason)
		},
	},
	{
		kind: KindAnomaly, metric: MetricDropRate, severity: SeverityWarning,
		trend: &trend{
			rate: func(o *observation) (float64, bool) {
				d := o.sample.MessagesDropped - o.state.LastDrops
				return float64(d) / o.elapsed, d < 1<<31 // a counter that went back is no rate
			},
			baseline: func(n *nodeState) *EWMA { return &n.Drop },
			dir:      upward,
			floor:    func(a *AnomalyConfig) float64 { return a.DropRateFloor },
			format:   "message drop rate %.2f/s, baseline %.2f/s",
		},
	},
	{
		kind: KindAnomaly, metric: MetricMemoryTrend, severity: SeverityWarning,
		trend: &trend{
			rate: func(o *observation) (float64, bool) {
				now, last := o.sample.FreeMemory, o.state.LastMem
				return (float64(now) - float64(last)) / o.elapsed, now != 0 && last != 0
			},
			baseline: func(n *nodeState) *EWMA { return &n.Memory },
			dir:      downward,
			floor:    func(a *AnomalyConfig) float64 { return a.MemoryTrendFloor },
			format:   "free memory changing %.0f bytes/s, baseline %.0f bytes/s",
		},
	},
}

// anomalyTypes are the anomaly rules' alert types by metric, formatted
// once: they name the rules' streaks on every sample.
var anomalyTypes = func() map[string]string {
	m := map[string]string{}
	for _, r := range rules {
		if r.trend != nil {
			m[r.metric] = (&Alert{Kind: r.kind, Metric: r.metric}).Type()
		}
	}
	return m
}()

func restartsMessage(n int, window time.Duration) string {
	return fmt.Sprintf("%d restarts within %v", n, window)
}

// rule is one row of the rule table.
type rule struct {
	kind     Kind
	metric   string   // the watched rate, for anomaly rules
	severity Severity // unless a reading is beyond its critical bound
	// readings are the values a threshold rule can judge, in order of
	// preference: the first one the sample holds decides. When it holds
	// none, message describes the alert if set, else the last reading.
	readings []reading
	// failing is a predicate rule's condition: bad while true, else good.
	failing  func(o *observation) bool
	message  func(o *observation) string
	presence bool   // judged by SetOnline
	trend    *trend // anomaly rules
}

// reading is one value a threshold rule judges.
type reading struct {
	read func(o *observation) (x float64, held bool)
	// raise makes the reading bad; clear makes it good. Between the two
	// the rule keeps its state (hysteresis).
	raise, clear bound
	critical     bound // optional: the alert is critical while it holds
	unit         unit
	message      func(o *observation, x float64) string
}

// trend is an anomaly rule's rate of change, judged against the node's
// own EWMA baseline of it in a band from Config.Anomaly.
type trend struct {
	rate     func(o *observation) (x float64, ok bool) // per second since the last sample
	baseline func(n *nodeState) *EWMA
	dir      direction
	floor    func(a *AnomalyConfig) float64
	format   string // of the rate and the baseline mean
}

// observation is what the rules see of one sample or presence change.
type observation struct {
	node     uint32
	cfg      *Config
	sample   Sample
	state    *nodeState // its Last fields are still the previous sample's
	restarts int        // within the reboot window, this sample's included
	elapsed  float64    // seconds since the previous sample
	online   bool       // presence rules: the node's new state
	reason   string     // and why
}

// op compares a reading x with a threshold t.
type op uint8

const (
	below   op = iota + 1 // x < t
	atMost                // x <= t
	above                 // x > t
	atLeast               // x >= t
)

// bound is a comparison with a threshold taken from the configuration.
type bound struct {
	op        op
	threshold func(c *Config) float64
}

func (b bound) holds(x float64, c *Config) bool {
	if b.op == 0 {
		return false
	}
	t := b.threshold(c)
	switch b.op {
	case below:
		return x < t
	case atMost:
		return x <= t
	case above:
		return x > t
	}
	return x >= t
}

// unit is how a reading is shown in an alert's value and threshold.
type unit uint8

const (
	plain       unit = iota // as read
	nanoseconds             // shown in whole milliseconds
	permille                // shown in percent
)

func (u unit) show(x float64) float64 {
	switch u {
	case nanoseconds:
		return float64(time.Duration(x).Milliseconds())
	case permille:
		return x / 10
	}
	return x
}

// verdict of one rule on one sample.
type verdict int8

const (
	unknown verdict = iota // the sample says nothing about it
	bad
	good
)

// judgement is a rule's verdict on one sample and how the alert shows it.
type judgement struct {
	verdict          verdict
	severity         Severity
	value, threshold float64
	reading          *reading // that decided, or described the alert; nil: the rule's message
	x                float64  // what it read
}

// judge evaluates a threshold, predicate or flag rule on a sample. flags
// are the node's alert bits to honour.
func (r *rule) judge(o *observation, flags uint8) judgement {
	j := judgement{severity: r.severity}
	switch {
	case len(r.readings) > 0:
		rd, x, held := r.reading(o)
		if rd == nil {
			break
		}
		if held {
			switch {
			case rd.raise.holds(x, o.cfg):
				j.verdict = bad
			case rd.clear.holds(x, o.cfg):
				j.verdict = good
			}
			if rd.critical.holds(x, o.cfg) {
				j.severity = SeverityCritical
			}
		}
		j.reading, j.x = rd, x
		j.value = rd.unit.show(x)
		j.threshold = rd.unit.show(rd.raise.threshold(o.cfg))
	case r.failing != nil:
		j.verdict = good
		if r.failing(o) {
			j.verdict = bad
		}
	default:
		j.verdict = good
	}
	if flags&r.kind.Flag() != 0 {
		j.verdict = bad
	}
	return j
}

// message is the alert's message for judgement j. It is formatted only
// for an alert that changes.
func (j *judgement) message(r *rule, o *observation) string {
	if j.reading != nil {
		return j.reading.message(o, j.x)
	}
	return r.message(o)
}

// reading picks the reading that decides: the first the sample holds;
// else the last, to describe the alert, unless the rule has its own
// message for that (then nil).
func (r *rule) reading(o *observation) (*reading, float64, bool) {
	var x float64
	for i := range r.readings {
		var held bool
		if x, held = r.readings[i].read(o); held {
			return &r.readings[i], x, true
		}
	}
	if r.message != nil {
		return nil, 0, false
	}
	return &r.readings[len(r.readings)-1], x, false
}

// lowIsBad: a smaller value is worse (for the update check).
func (r *rule) lowIsBad() bool {
	return len(r.readings) > 0 && r.readings[0].raise.op == below
}
