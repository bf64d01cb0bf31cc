package alert

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

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

// nodeState is the engine's memory of one node between samples.
type nodeState struct {
	Node      uint32             `json:"node"`
	BootAt    time.Time          `json:"boot_at"`
	Resets    []time.Time        `json:"resets"` // restarts within the reboot window
	LastAt    time.Time          `json:"last_at"`
	LastDrops uint32             `json:"last_drops"`
	LastMem   uint32             `json:"last_mem"`
	LastFlags uint8              `json:"last_flags"`
	Streaks   map[string]*streak `json:"streaks"` // by alert type
	Drop      EWMA               `json:"drop"`
	Memory    EWMA               `json:"memory"`
}

// rebootSlack absorbs the jitter of estimating the boot time from an
// uptime in whole seconds and a report's arrival time.
const rebootSlack = 5 * time.Second

// Engine turns node samples and online/offline transitions into alerts
// with a lifecycle, by the rule table: threshold rules for the alert flag
// kinds, a node offline rule, a reboot loop rule and EWMA anomaly rules on
// rates of change. Time is always passed in. Not safe for concurrent use.
type Engine struct {
	cfg    Config
	nodes  map[uint32]*nodeState
	active map[alertKey]*Alert
	recent []Alert     // cleared, oldest first, at most RecentSize
	obs    observation // scratch for the rules, so a sample costs no allocation
}

// NewEngine returns an engine with no alerts.
func NewEngine(cfg Config) *Engine {
	return &Engine{
		cfg:    cfg.withDefaults(),
		nodes:  make(map[uint32]*nodeState),
		active: make(map[alertKey]*Alert),
	}
}

// Config is the effective configuration.
func (e *Engine) Config() Config { return e.cfg }

func (e *Engine) node(id uint32) *nodeState {
	n := e.nodes[id]
	if n == nil {
		n = &nodeState{Node: id, Streaks: make(map[string]*streak)}
		e.nodes[id] = n
	}
	return n
}

// Observe evaluates node's new sample at now against the rule table and
// returns the alert changes, raised and updated before cleared, each in
// the table's order.
func (e *Engine) Observe(now time.Time, node uint32, s Sample) []Change {
	c := &e.cfg
	n := e.node(node)

	// Restarts: the boot time (now − uptime) moved forward.
	boot := now.Add(-time.Duration(s.Uptime) * time.Second)
	restarted := !n.BootAt.IsZero() && boot.Sub(n.BootAt) > rebootSlack
	n.BootAt = boot
	if restarted {
		n.Resets = append(n.Resets, now)
	}
	n.pruneResets(now, c.RebootWindow)

	flags := s.Flags
	if c.IgnoreNodeFlags {
		flags = 0
	}
	o := &e.obs
	*o = observation{node: node, sample: s, cfg: c, state: n, restarts: len(n.Resets)}
	// Rates of change need a previous sample at least a second back, and
	// are skipped across a restart (counters start again).
	trends := !c.Anomaly.Disabled && !n.LastAt.IsZero() && !restarted
	if trends {
		o.elapsed = now.Sub(n.LastAt).Seconds()
		trends = o.elapsed >= 1
	}

	var out []Change
	for i := range rules {
		r := &rules[i]
		switch {
		case r.presence:
		case r.trend != nil:
			if trends {
				out = e.anomaly(out, now, n, r, o)
			}
		default:
			j := r.judge(o, flags)
			out = e.apply(out, now, n, r, o, &j)
		}
	}
	n.LastFlags = flags
	n.LastAt = now
	n.LastDrops = s.MessagesDropped
	n.LastMem = s.FreeMemory
	return orderChanges(out)
}

func (n *nodeState) pruneResets(now time.Time, window time.Duration) {
	i := 0
	for i < len(n.Resets) && now.Sub(n.Resets[i]) >= window {
		i++
	}
	n.Resets = n.Resets[i:]
}

func (n *nodeState) streak(name string) *streak {
	s := n.Streaks[name]
	if s == nil {
		s = &streak{}
		n.Streaks[name] = s
	}
	return s
}

// apply applies one sample's judgement to the rule's alert.
func (e *Engine) apply(out []Change, now time.Time, n *nodeState, r *rule, o *observation, j *judgement) []Change {
	key := alertKey{n.Node, r.kind, ""}
	s := n.streak(r.kind.String())
	switch j.verdict {
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
	case a == nil && j.verdict == bad && s.Bad >= e.cfg.RaiseSamples:
		return append(out, e.raise(now, key, j.severity, j.value, j.threshold, j.message(r, o)))
	case a != nil && j.verdict == bad && e.significant(a, j.severity, j.value, r.lowIsBad()):
		return append(out, e.update(now, a, j.severity, j.value, j.message(r, o)))
	case a != nil && j.verdict == good && s.Good >= e.cfg.ClearSamples:
		return append(out, e.clear(now, key, j.value, j.message(r, o)))
	}
	return out
}

// anomaly applies an anomaly rule: the rate of change against the node's
// baseline for it, which the rate then joins.
func (e *Engine) anomaly(out []Change, now time.Time, n *nodeState, r *rule, o *observation) []Change {
	t := r.trend
	x, ok := t.rate(o)
	if !ok {
		return out
	}
	a := &e.cfg.Anomaly
	base := t.baseline(n)
	limits := band{K: a.K, Floor: t.floor(a), Warmup: a.Warmup, Dir: t.dir}
	outside, _ := limits.outside(base, x)
	mean := base.Mean // the message shows the baseline before x joins it
	key := alertKey{n.Node, KindAnomaly, r.metric}
	s := n.streak(anomalyTypes[r.metric])
	judged := base.N >= limits.Warmup
	base.Update(x, a.Alpha)
	if !judged {
		return out
	}
	act := e.active[key]
	if outside {
		s.Bad++
		s.Good = 0
		switch {
		case act == nil:
			return append(out, e.raise(now, key, r.severity, x, limits.Floor, fmt.Sprintf(t.format, x, mean)))
		case e.significant(act, r.severity, x, limits.Dir == downward):
			return append(out, e.update(now, act, r.severity, x, fmt.Sprintf(t.format, x, mean)))
		}
		return out
	}
	s.Good++
	s.Bad = 0
	if act != nil && s.Good >= a.ClearSamples {
		return append(out, e.clear(now, key, x, fmt.Sprintf(t.format, x, mean)))
	}
	return out
}

func alertID(k alertKey) string {
	a := Alert{Kind: k.kind, Metric: k.metric}
	return strconv.FormatUint(uint64(k.node), 10) + "/" + a.Type()
}

func (e *Engine) raise(now time.Time, key alertKey, sev Severity, value, threshold float64, msg string) Change {
	a := &Alert{
		ID: alertID(key), Node: key.node, Kind: key.kind, Metric: key.metric, Severity: sev, Active: true,
		Message: msg, Value: value, Threshold: threshold, Raised: now, Updated: now,
	}
	e.active[key] = a
	return Change{Raised, *a}
}

// significant: an active alert's new severity or value is worth
// reporting. lowIsBad says a smaller value is worse.
func (e *Engine) significant(a *Alert, sev Severity, value float64, lowIsBad bool) bool {
	worse := value - a.Value
	if lowIsBad {
		worse = -worse
	}
	return sev != a.Severity || worse > e.cfg.UpdateRatio*math.Max(math.Abs(a.Value), 1)
}

func (e *Engine) update(now time.Time, a *Alert, sev Severity, value float64, msg string) Change {
	a.Severity = sev
	a.Value = value
	a.Message = msg
	a.Updated = now
	a.Updates++
	return Change{Updated, *a}
}

func (e *Engine) clear(now time.Time, key alertKey, value float64, msg string) Change {
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
	return Change{Cleared, *a}
}

func orderChanges(cs []Change) []Change {
	slices.SortStableFunc(cs, func(a, b Change) int {
		if a.Transition != b.Transition {
			return int(a.Transition) - int(b.Transition)
		}
		return 0
	})
	return cs
}

// SetOnline applies a node going online or offline (from the status
// model) to the presence rules: offline raises node_offline, online
// clears it. reason is shown in the alert's message.
func (e *Engine) SetOnline(now time.Time, node uint32, online bool, reason string) []Change {
	o := &e.obs
	*o = observation{node: node, cfg: &e.cfg, online: online, reason: reason}
	var out []Change
	for i := range rules {
		r := &rules[i]
		if !r.presence {
			continue
		}
		key := alertKey{node, r.kind, ""}
		a := e.active[key]
		switch {
		case !online && a == nil:
			e.node(node)
			out = append(out, e.raise(now, key, r.severity, 0, 0, r.message(o)))
		case online && a != nil:
			out = append(out, e.clear(now, key, 0, r.message(o)))
		}
	}
	return out
}

// Tick clears reboot loops whose restarts have aged out of the window.
func (e *Engine) Tick(now time.Time) []Change {
	var out []Change
	for _, id := range e.nodeIDs() {
		n := e.nodes[id]
		n.pruneResets(now, e.cfg.RebootWindow)
		key := alertKey{id, KindRebootLoop, ""}
		if e.active[key] != nil && len(n.Resets) < e.cfg.RebootCount && n.LastFlags&KindRebootLoop.Flag() == 0 {
			out = append(out, e.clear(now, key, float64(len(n.Resets)), restartsMessage(len(n.Resets), e.cfg.RebootWindow)))
		}
	}
	return out
}

// NextDeadline is when Tick next has something to do; zero if never.
func (e *Engine) NextDeadline() time.Time {
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

func (e *Engine) nodeIDs() []uint32 {
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
func (e *Engine) Active() []Alert {
	out := make([]Alert, 0, len(e.active))
	for _, a := range e.active {
		out = append(out, *a)
	}
	slices.SortFunc(out, compareAlerts)
	return out
}

// ActiveCount is the number of active alerts of one node.
func (e *Engine) ActiveCount(node uint32) int {
	n := 0
	for k := range e.active {
		if k.node == node {
			n++
		}
	}
	return n
}

// Recent lists the last cleared alerts, oldest first.
func (e *Engine) Recent() []Alert { return slices.Clone(e.recent) }

// Forget drops a node's state and alerts (without reporting them cleared).
func (e *Engine) Forget(node uint32) {
	delete(e.nodes, node)
	for k := range e.active {
		if k.node == node {
			delete(e.active, k)
		}
	}
}
