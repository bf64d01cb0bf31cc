package rollout

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Image is the image a rollout installs.
type Image struct {
	MD5      string `json:"md5"`
	Version  string `json:"version,omitempty"`
	Role     string `json:"role"`
	Hardware string `json:"hardware"`
}

// Targets selects a rollout's nodes among those the caller knows: every node
// of Role and Hardware (each optional), narrowed to Nodes and Tags when set.
// Nodes already running the image are skipped; Outdated only says so
// explicitly ("update everything outdated").
type Targets struct {
	Role     string   `json:"role,omitempty"`
	Hardware string   `json:"hardware,omitempty"`
	Nodes    []uint32 `json:"nodes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	Outdated bool     `json:"outdated,omitempty"`
}

// Wave is one step of a plan: Count nodes, or Percent of the targets
// counted from the start (cumulative: 25 then 100 means a wave that brings
// the rollout to a quarter of its nodes, then one that does the rest).
type Wave struct {
	Count   int     `json:"count,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// Exponential is a rate instead of listed waves: Start nodes, then each
// wave Factor times the one before, until every target is in a wave.
type Exponential struct {
	Start  int     `json:"start"`
	Factor float64 `json:"factor"`
}

// Window is a recurring maintenance window: new updates start only from
// From to To (HH:MM, To before From spans midnight) on Days (empty: every
// day), in the zone UTCOffsetMinutes east of UTC. Updates already running
// when it closes finish.
type Window struct {
	Days             []time.Weekday `json:"days,omitempty"`
	From             string         `json:"from"`
	To               string         `json:"to"`
	UTCOffsetMinutes int            `json:"utc_offset_minutes,omitempty"`
}

// Gates are the limits a node must keep, relative to its own baseline
// (its telemetry before its update), from its confirm until the wave's soak
// is over. Zero values take the defaults noted.
type Gates struct {
	// OfflineGrace is how long a node may be missing from the mesh during
	// the soak (30 s: a reconnect, not a crash).
	OfflineGrace time.Duration `json:"offline_grace,omitempty"`
	// MaxReboots after the confirm (0 → 1: one reboot may be anything, two
	// are a loop). Negative: none allowed.
	MaxReboots int `json:"max_reboots,omitempty"`
	// MemoryDrop is the fraction of the baseline's free memory a node may
	// lose (0.15).
	MemoryDrop float64 `json:"memory_drop,omitempty"`
	// DropsPerMinute is how many more messages per minute than its
	// baseline a node may drop (20).
	DropsPerMinute float64 `json:"drops_per_minute,omitempty"`
	// BaselineSamples is how many readings a node's baseline needs before
	// its update starts (0 → 3; negative: none); a node that sends none
	// starts after BaselineWait (2 min) without one, and is then judged
	// on its confirm, reboots, presence and alerts only.
	BaselineSamples int           `json:"baseline_samples,omitempty"`
	BaselineWait    time.Duration `json:"baseline_wait,omitempty"`
}

// Thresholds stop a rollout: failed nodes reaching Count, or reaching
// Percent of the nodes that were updated so far. Both zero: one failure
// stops it.
type Thresholds struct {
	Count   int     `json:"count,omitempty"`
	Percent float64 `json:"percent,omitempty"`
}

// Policy is what a stopped rollout does with the nodes it updated.
type Policy string

const (
	// PolicyStop leaves updated nodes on the new image.
	PolicyStop Policy = "stop"
	// PolicyRollback installs each updated node's previous image again.
	PolicyRollback Policy = "rollback"
)

// ParsePolicy parses a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch Policy(s) {
	case PolicyStop, PolicyRollback:
		return Policy(s), nil
	case "":
		return PolicyStop, nil
	}
	return "", fmt.Errorf("rollout: policy %q is not one of stop, rollback", s)
}

// Plan is how a rollout proceeds.
type Plan struct {
	// Waves in order; the first is the canary. Empty with no Exponential:
	// one wave of every target.
	Waves       []Wave       `json:"waves,omitempty"`
	Exponential *Exponential `json:"exponential,omitempty"`
	// Soak is how long a wave's nodes are watched after they confirmed
	// before the next wave starts.
	Soak time.Duration `json:"soak,omitempty"`
	// Approval waits for Approve before each wave after the first; Pause
	// pauses instead (Resume goes on), so that an outside check can run.
	Approval bool    `json:"approval,omitempty"`
	Pause    bool    `json:"pause,omitempty"`
	Window   *Window `json:"window,omitempty"`
	Gates    Gates   `json:"gates,omitzero"`
	// Failure stops the rollout; Policy says what then happens to the
	// updated nodes (and to a node that fails its gate on its own).
	Failure Thresholds `json:"failure,omitzero"`
	Policy  Policy     `json:"policy,omitempty"`
	// MaxConcurrent bounds the nodes updating at once (0: unbounded);
	// MaxPerSubtree bounds them under any one relay (0: 2).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	MaxPerSubtree int `json:"max_per_subtree,omitempty"`
	// IncludeRoot updates the root/bridge node too, last of all.
	IncludeRoot bool `json:"include_root,omitempty"`
	// UpdateTimeout fails a node whose update has no outcome by then
	// (30 min).
	UpdateTimeout time.Duration `json:"update_timeout,omitempty"`
	// Linger keeps a finished plan open for nodes still missing or joining
	// late (0: 24 h); the rollout completes when none is missing or it
	// passed.
	Linger time.Duration `json:"linger,omitempty"`
}

// Overlap is what a rollout does when an active rollout holds some of its
// nodes.
type Overlap string

const (
	OverlapWait      Overlap = "wait"
	OverlapSupersede Overlap = "supersede"
)

// Spec is a rollout as an operator asks for it.
type Spec struct {
	ID      string  `json:"id"`
	Image   Image   `json:"image"`
	Targets Targets `json:"targets"`
	Plan    Plan    `json:"plan"`
	// Force installs the image on nodes that run a newer version.
	Force   bool    `json:"force,omitempty"`
	Overlap Overlap `json:"overlap,omitempty"`
	Reason  string  `json:"reason,omitempty"` // recorded when it supersedes
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}$`)

// ErrSpec wraps every error of Validate.
var ErrSpec = errors.New("rollout: invalid spec")

// Validate checks a spec and fills its defaults, naming the field at fault.
func (s *Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrSpec, fmt.Sprintf(format, a...))
	}
	if !idRE.MatchString(s.ID) {
		return bad("id %q: want 1–32 of A-Z a-z 0-9 . _ -", s.ID)
	}
	if len(s.Image.MD5) != 32 || strings.Trim(strings.ToLower(s.Image.MD5), "0123456789abcdef") != "" {
		return bad("image.md5 %q: want 32 hex digits", s.Image.MD5)
	}
	s.Image.MD5 = strings.ToLower(s.Image.MD5)
	if s.Image.Role == "" || s.Image.Hardware == "" {
		return bad("image: needs a role and a hardware")
	}
	p := &s.Plan
	if p.Exponential != nil && len(p.Waves) > 0 {
		return bad("plan: waves and exponential are exclusive; give one")
	}
	if e := p.Exponential; e != nil && (e.Start < 1 || !(e.Factor > 1) || math.IsInf(e.Factor, 0)) {
		return bad("plan.exponential: start %d, factor %v: want start ≥ 1 and factor > 1", e.Start, e.Factor)
	}
	if len(p.Waves) > 100 {
		return bad("plan.waves: %d waves: at most 100", len(p.Waves))
	}
	last := 0.0
	for i, w := range p.Waves {
		switch {
		case w.Count < 0 || w.Percent < 0 || w.Percent > 100 || math.IsNaN(w.Percent):
			return bad("plan.waves[%d]: count %d, percent %v: want count ≥ 0 and 0 ≤ percent ≤ 100", i, w.Count, w.Percent)
		case (w.Count == 0) == (w.Percent == 0):
			return bad("plan.waves[%d]: give a count or a percent, one of them", i)
		case w.Percent > 0 && w.Percent < last:
			return bad("plan.waves[%d]: percent %v is below the wave before (%v); percents count from the start", i, w.Percent, last)
		}
		last = max(last, w.Percent)
	}
	for name, d := range map[string]time.Duration{"soak": p.Soak, "update_timeout": p.UpdateTimeout, "linger": p.Linger, "gates.offline_grace": p.Gates.OfflineGrace, "gates.baseline_wait": p.Gates.BaselineWait} {
		if d < 0 {
			return bad("plan.%s %v: must not be negative", name, d)
		}
	}
	if p.Gates.MemoryDrop < 0 || p.Gates.MemoryDrop >= 1 || p.Gates.DropsPerMinute < 0 {
		return bad("plan.gates: memory_drop %v must be in [0,1), drops_per_minute %v ≥ 0", p.Gates.MemoryDrop, p.Gates.DropsPerMinute)
	}
	if p.Failure.Count < 0 || p.Failure.Percent < 0 || p.Failure.Percent > 100 {
		return bad("plan.failure: count %d, percent %v: want count ≥ 0, 0 ≤ percent ≤ 100", p.Failure.Count, p.Failure.Percent)
	}
	pol, err := ParsePolicy(string(p.Policy))
	if err != nil {
		return bad("plan.policy: %v", err)
	}
	p.Policy = pol
	if p.MaxConcurrent < 0 || p.MaxPerSubtree < 0 {
		return bad("plan: max_concurrent %d, max_per_subtree %d must not be negative", p.MaxConcurrent, p.MaxPerSubtree)
	}
	if w := p.Window; w != nil {
		if _, _, err := w.minutes(); err != nil {
			return bad("plan.window: %v", err)
		}
		for _, d := range w.Days {
			if d < time.Sunday || d > time.Saturday {
				return bad("plan.window.days: %d is not a weekday (0 Sunday … 6 Saturday)", d)
			}
		}
		if w.UTCOffsetMinutes < -14*60 || w.UTCOffsetMinutes > 14*60 {
			return bad("plan.window.utc_offset_minutes %d: want −840…840", w.UTCOffsetMinutes)
		}
	}
	switch s.Overlap {
	case "":
		s.Overlap = OverlapWait
	case OverlapWait, OverlapSupersede:
	default:
		return bad("overlap %q is not one of wait, supersede", s.Overlap)
	}
	if p.Gates.OfflineGrace == 0 {
		p.Gates.OfflineGrace = 30 * time.Second
	}
	if p.Gates.MaxReboots == 0 {
		p.Gates.MaxReboots = 1
	}
	if p.Gates.MemoryDrop == 0 {
		p.Gates.MemoryDrop = 0.15
	}
	switch {
	case p.Gates.BaselineSamples == 0:
		p.Gates.BaselineSamples = 3
	case p.Gates.BaselineSamples < 0:
		p.Gates.BaselineSamples = -1
	}
	if p.Gates.BaselineWait == 0 {
		p.Gates.BaselineWait = 2 * time.Minute
	}
	if p.Gates.DropsPerMinute == 0 {
		p.Gates.DropsPerMinute = 20
	}
	if p.MaxPerSubtree == 0 {
		p.MaxPerSubtree = 2
	}
	if p.UpdateTimeout == 0 {
		p.UpdateTimeout = 30 * time.Minute
	}
	if p.Linger == 0 {
		p.Linger = 24 * time.Hour
	}
	slices.Sort(s.Targets.Nodes)
	s.Targets.Nodes = slices.Compact(s.Targets.Nodes)
	return nil
}

// sizes splits n targets into wave sizes by the plan.
func (p *Plan) sizes(n int) []int {
	var out []int
	done := 0
	add := func(k int) {
		k = min(max(k, 0), n-done)
		if k > 0 {
			out = append(out, k)
			done += k
		}
	}
	switch {
	case p.Exponential != nil:
		size := float64(p.Exponential.Start)
		for done < n {
			add(int(math.Ceil(size)))
			size *= p.Exponential.Factor
		}
	case len(p.Waves) > 0:
		for _, w := range p.Waves {
			if w.Count > 0 {
				add(w.Count)
			} else {
				add(int(math.Ceil(w.Percent*float64(n)/100)) - done)
			}
		}
		add(n - done) // the last wave takes whatever the plan left
	default:
		add(n)
	}
	return out
}

// minutes parses the window's bounds into minutes of the day.
func (w *Window) minutes() (from, to int, err error) {
	parse := func(s string) (int, error) {
		h, m, ok := strings.Cut(s, ":")
		hh, err1 := strconv.Atoi(h)
		mm, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || hh == 24 && mm != 0 {
			return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
		}
		return hh*60 + mm, nil
	}
	if from, err = parse(w.From); err != nil {
		return 0, 0, err
	}
	if to, err = parse(w.To); err != nil {
		return 0, 0, err
	}
	if from == to {
		return 0, 0, fmt.Errorf("from %s equals to %s: the window would be empty", w.From, w.To)
	}
	return from, to, nil
}

// Open reports whether the window is open at now, and if not when it opens.
func (w *Window) Open(now time.Time) (bool, time.Time) {
	from, to, err := w.minutes()
	if err != nil {
		return false, time.Time{}
	}
	zone := time.FixedZone("window", w.UTCOffsetMinutes*60)
	local := now.In(zone)
	inDay := func(t time.Time) bool { return len(w.Days) == 0 || slices.Contains(w.Days, t.Weekday()) }
	minute := local.Hour()*60 + local.Minute()
	midnight := time.Date(local.Year(), local.Month(), local.Day(), 0, 0, 0, 0, zone)
	if from < to {
		if minute >= from && minute < to && inDay(local) {
			return true, time.Time{}
		}
	} else {
		// Spanning midnight: the evening belongs to today's window, the
		// morning to yesterday's.
		if minute >= from && inDay(local) || minute < to && inDay(midnight.AddDate(0, 0, -1)) {
			return true, time.Time{}
		}
	}
	for d := 0; d <= 8; d++ {
		start := midnight.AddDate(0, 0, d).Add(time.Duration(from) * time.Minute)
		if start.After(now) && inDay(start) {
			return false, start
		}
	}
	return false, time.Time{}
}

// compareVersions orders dotted versions numerically where both parts are
// numbers ("1.10" > "1.9"), textually otherwise; a leading "v" is ignored.
func compareVersions(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		var x, y string
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		nx, ex := strconv.Atoi(x)
		ny, ey := strconv.Atoi(y)
		switch {
		case ex == nil && ey == nil:
			if nx != ny {
				return cmpInt(nx, ny)
			}
		case x != y:
			return strings.Compare(x, y)
		}
	}
	return 0
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
