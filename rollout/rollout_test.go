package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t0     = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC) // a Monday
	newMD5 = strings.Repeat("b", 32)
	oldMD5 = strings.Repeat("a", 32)
)

func image() Image { return Image{MD5: newMD5, Version: "2.0", Role: "sensor", Hardware: "ESP32"} }

// tree builds a topology: parent[i] is node i's parent (0: the root, id 1000).
func tree(parent map[uint32]uint32) Topology {
	t := Topology{Root: 1000, Parent: map[uint32]uint32{}}
	for c, p := range parent {
		if p == 0 {
			p = 1000
		}
		t.Parent[c] = p
	}
	return t
}

// flat is n leaves under the root, ids 1..n.
func flat(n int) Topology {
	p := map[uint32]uint32{}
	for i := 1; i <= n; i++ {
		p[uint32(i)] = 0
	}
	return tree(p)
}

func infos(topo Topology) []NodeInfo {
	var out []NodeInfo
	for id := range topo.Parent {
		out = append(out, NodeInfo{ID: id, Role: "sensor", Hardware: "ESP32", Version: "1.0", MD5: oldMD5, Online: true})
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return int(a.ID) - int(b.ID) })
	return out
}

// rig drives one rollout like a caller: it records actions and events.
type rig struct {
	t      *testing.T
	now    time.Time
	r      *Rollout
	events []Event
	acts   []Action
}

func newRig(t *testing.T, spec Spec, topo Topology) *rig {
	t.Helper()
	r, err := New(t0, spec, infos(topo), topo)
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{t: t, now: t0, r: r}
	g.take()
	return g
}

// spec is a rollout of image() with plan; its nodes need no baseline
// unless the plan says so (baseline tests set it).
func spec(plan Plan) Spec {
	if plan.Gates.BaselineSamples == 0 {
		plan.Gates.BaselineSamples = -1
	}
	return Spec{ID: "r1", Image: image(), Plan: plan}
}

// take collects Ready and returns the actions of this batch.
func (g *rig) take() []Action {
	rd := g.r.Ready()
	g.r.Advance()
	g.events = append(g.events, rd.Events...)
	g.acts = append(g.acts, rd.Actions...)
	return rd.Actions
}

func (g *rig) after(d time.Duration) []Action {
	g.now = g.now.Add(d)
	g.r.Tick(g.now)
	return g.take()
}

// confirm answers every node of an update action: confirmed.
func (g *rig) confirm(ids ...uint32) []Action {
	for _, id := range ids {
		g.r.Outcome(g.now, Outcome{Node: id, MD5: newMD5, State: OutcomeConfirmed})
	}
	return g.take()
}

func (g *rig) state(id uint32) NodeState { return g.r.s.Nodes[id].State }

func nodesOf(acts []Action, kind ActionKind) []uint32 {
	var out []uint32
	for _, a := range acts {
		if a.Kind == kind {
			out = append(out, a.Nodes...)
		}
	}
	return out
}

func TestValidateNamesTheField(t *testing.T) {
	cases := []struct {
		mutate func(*Spec)
		want   string
	}{
		{func(s *Spec) { s.ID = "" }, `id ""`},
		{func(s *Spec) { s.Image.MD5 = "xyz" }, "image.md5"},
		{func(s *Spec) { s.Image.Role = "" }, "needs a role"},
		{func(s *Spec) { s.Plan.Waves = []Wave{{Count: 1, Percent: 5}} }, "plan.waves[0]: give a count or a percent"},
		{func(s *Spec) { s.Plan.Waves = []Wave{{Percent: 50}, {Percent: 20}} }, "plan.waves[1]: percent 20 is below"},
		{func(s *Spec) { s.Plan.Waves = []Wave{{Percent: 120}} }, "plan.waves[0]"},
		{func(s *Spec) { s.Plan.Exponential = &Exponential{Start: 1, Factor: 1} }, "plan.exponential"},
		{func(s *Spec) { s.Plan.Soak = -time.Second }, "plan.soak"},
		{func(s *Spec) { s.Plan.Policy = "explode" }, `policy "explode" is not one of stop, rollback`},
		{func(s *Spec) { s.Plan.Window = &Window{From: "25:00", To: "03:00"} }, "plan.window"},
		{func(s *Spec) { s.Plan.Window = &Window{From: "02:00", To: "02:00"} }, "would be empty"},
		{func(s *Spec) { s.Plan.Failure.Percent = 101 }, "plan.failure"},
		{func(s *Spec) { s.Overlap = "merge" }, `overlap "merge"`},
		{func(s *Spec) { s.Plan.Gates.MemoryDrop = 1 }, "memory_drop"},
	}
	for _, c := range cases {
		s := spec(Plan{})
		c.mutate(&s)
		err := s.Validate()
		if !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an ErrSpec naming %q, got %v", c.want, err)
		}
	}
	s := spec(Plan{})
	if err := s.Validate(); err != nil || s.Plan.Policy != PolicyStop || s.Overlap != OverlapWait || s.Plan.MaxPerSubtree != 2 {
		t.Fatalf("defaults: %v %+v", err, s)
	}
}

func TestWaveSizes(t *testing.T) {
	cases := []struct {
		plan Plan
		n    int
		want []int
	}{
		{Plan{Waves: []Wave{{Count: 5}, {Percent: 25}, {Percent: 100}}}, 200, []int{5, 45, 150}},
		{Plan{Waves: []Wave{{Percent: 5}, {Count: 10}}}, 100, []int{5, 10, 85}},
		{Plan{Waves: []Wave{{Count: 5}, {Percent: 25}}}, 3, []int{3}},
		{Plan{Exponential: &Exponential{Start: 2, Factor: 2}}, 20, []int{2, 4, 8, 6}},
		{Plan{}, 7, []int{7}},
		{Plan{}, 0, nil},
	}
	for _, c := range cases {
		if got := c.plan.sizes(c.n); !slices.Equal(got, c.want) {
			t.Errorf("%+v over %d: %v, want %v", c.plan, c.n, got, c.want)
		}
	}
}
