package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// canary 2 → 50% → 100% with a soak: a wave starts when the one before
// kept its gates for the soak.
func TestWavesWaitForTheSoak(t *testing.T) {
	plan := Plan{Waves: []Wave{{Count: 2}, {Percent: 50}, {Percent: 100}}, Soak: 2 * time.Minute}
	g := newRig(t, spec(plan), flat(10))
	canary := nodesOf(g.acts, ActionUpdate)
	if len(canary) != 2 {
		t.Fatalf("canary %v", canary)
	}
	g.confirm(canary...)
	if got := g.after(time.Minute); len(got) != 0 {
		t.Fatalf("wave 1 started during the canary's soak: %v", got)
	}
	if d := g.r.NextDeadline(); !d.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("next deadline %v, want the soak's end", d)
	}
	wave1 := nodesOf(g.after(time.Minute), ActionUpdate)
	if len(wave1) != 3 || g.state(canary[0]) != NodePassed {
		t.Fatalf("after the soak: started %v, canary %s", wave1, g.state(canary[0]))
	}
	g.confirm(wave1...)
	wave2 := nodesOf(g.after(2*time.Minute), ActionUpdate)
	if len(wave2) != 5 {
		t.Fatalf("wave 2: %v", wave2)
	}
	g.confirm(wave2...)
	g.after(2 * time.Minute)
	if s, why := g.r.State(); s != StateCompleted || g.r.Count(NodePassed) != 10 {
		t.Fatalf("state %s (%s), %d passed", s, why, g.r.Count(NodePassed))
	}
	var passed []int
	for _, e := range g.events {
		if e.Kind == EventWavePassed {
			passed = append(passed, e.Wave)
		}
	}
	if !slices.Equal(passed, []int{0, 1, 2}) {
		t.Fatalf("wave_passed events %v", passed)
	}
}

func TestApprovalAndPauseBetweenWaves(t *testing.T) {
	plan := Plan{Waves: []Wave{{Count: 1}, {Count: 1}, {Count: 1}}, Approval: true}
	g := newRig(t, spec(plan), flat(3))
	g.confirm(nodesOf(g.acts, ActionUpdate)...)
	if s, _ := g.r.State(); s != StateAwaitingApproval {
		t.Fatalf("state %s", s)
	}
	if err := g.r.Resume(g.now); !errors.Is(err, ErrState) {
		t.Fatalf("resume while awaiting approval: %v", err)
	}
	if err := g.r.Approve(g.now); err != nil {
		t.Fatal(err)
	}
	if got := nodesOf(g.take(), ActionUpdate); len(got) != 1 {
		t.Fatalf("approved: started %v", got)
	}
	plan.Approval, plan.Pause = false, true
	g = newRig(t, spec(plan), flat(3))
	g.confirm(nodesOf(g.acts, ActionUpdate)...)
	if s, _ := g.r.State(); s != StatePaused {
		t.Fatalf("state %s", s)
	}
	if err := g.r.Approve(g.now); !errors.Is(err, ErrState) {
		t.Fatalf("approve a paused rollout: %v", err)
	}
	if err := g.r.Resume(g.now); err != nil {
		t.Fatal(err)
	}
	second := nodesOf(g.take(), ActionUpdate)
	if len(second) != 1 {
		t.Fatalf("resumed: started %v", second)
	}
	// A pause by the operator holds new starts; running ones finish.
	if err := g.r.Pause(g.now); err != nil {
		t.Fatal(err)
	}
	g.confirm(second...)
	if got := nodesOf(g.take(), ActionUpdate); len(got) != 0 {
		t.Fatalf("paused, yet started %v", got)
	}
	if g.state(second[0]) != NodePassed {
		t.Fatalf("a paused rollout still judges: %s", g.state(second[0]))
	}
}

func TestMaintenanceWindow(t *testing.T) {
	// 10:00 UTC Monday; the window is 22:00–04:00 at UTC+1, Mondays and
	// Tuesdays.
	w := &Window{From: "22:00", To: "04:00", UTCOffsetMinutes: 60, Days: []time.Weekday{time.Monday, time.Tuesday}}
	g := newRig(t, spec(Plan{Window: w}), flat(2))
	if len(g.acts) != 0 || g.events[len(g.events)-1].Kind != EventWindow {
		t.Fatalf("started outside the window: %v", g.acts)
	}
	opens := t0.Add(11 * time.Hour) // 21:00 UTC
	if d := g.r.NextDeadline(); !d.Equal(opens) {
		t.Fatalf("next deadline %v, want %v", d, opens)
	}
	if got := nodesOf(g.after(11*time.Hour), ActionUpdate); len(got) != 2 {
		t.Fatalf("window open: started %v", got)
	}
	for _, c := range []struct {
		at   time.Time
		open bool
	}{
		{time.Date(2026, 12, 8, 2, 30, 0, 0, time.UTC), true},   // Tue 03:30 local, Monday's window
		{time.Date(2026, 12, 9, 2, 30, 0, 0, time.UTC), true},   // Wed 03:30 local, Tuesday's window
		{time.Date(2026, 12, 10, 2, 30, 0, 0, time.UTC), false}, // Thu 03:30 local: Wednesday has none
		{time.Date(2026, 12, 9, 21, 30, 0, 0, time.UTC), false}, // Wed 22:30 local
	} {
		if open, _ := w.Open(c.at); open != c.open {
			t.Errorf("%v: open %v, want %v", c.at, open, c.open)
		}
	}
}

func TestDynamicJoinersSkipsAndDowngrades(t *testing.T) {
	topo := flat(6)
	nodes := infos(topo)
	nodes[0].MD5 = newMD5                 // node 1: up to date
	nodes[1].Version = "3.1"              // node 2: newer than 2.0
	nodes[2].Online = false               // node 3: away
	nodes[3].Role, nodes[3].MD5 = "x", "" // node 4: not a target
	plan := Plan{Waves: []Wave{{Count: 1}, {Count: 1}}, Soak: time.Minute}
	r, err := New(t0, spec(plan), nodes, topo)
	if err != nil {
		t.Fatal(err)
	}
	g := &rig{t: t, now: t0, r: r}
	g.take()
	if s := g.state(1); s != NodeSkipped || g.r.s.Nodes[1].Reason != "up to date" {
		t.Fatalf("node 1: %s %s", s, g.r.s.Nodes[1].Reason)
	}
	if n := g.r.s.Nodes[2]; n.State != NodeSkipped || !strings.Contains(n.Reason, "downgrade needs force") {
		t.Fatalf("node 2: %s %s", n.State, n.Reason)
	}
	if _, ok := g.r.s.Nodes[4]; ok {
		t.Fatal("node 4 is another role's")
	}
	forced := spec(plan)
	forced.Force = true
	if r2, _ := New(t0, forced, nodes, topo); r2.s.Nodes[2].State != NodePending && r2.s.Nodes[2].State != NodeUpdating {
		t.Fatalf("a forced rollout refused the downgrade: %s", r2.s.Nodes[2].State)
	}
	// A new node joins while the canary updates: it goes in wave 0.
	g.r.Joined(g.now, NodeInfo{ID: 50, Role: "sensor", Hardware: "ESP32", MD5: oldMD5})
	if n := g.r.s.Nodes[50]; n.Wave != 0 || n.State != NodeUpdating {
		t.Fatalf("joiner: wave %d %s", n.Wave, n.State)
	}
	g.take()
	g.confirm(nodesOf(g.acts, ActionUpdate)...)
	// During the soak, a joiner goes to the next wave.
	g.r.Joined(g.now, NodeInfo{ID: 51, Role: "sensor", Hardware: "ESP32", MD5: oldMD5})
	if n := g.r.s.Nodes[51]; n.Wave != 1 || n.State != NodePending {
		t.Fatalf("joiner in the soak: wave %d %s", n.Wave, n.State)
	}
	// Node 3 comes back after every wave: it is updated without an
	// operator; the rollout completes once it passed.
	for range 4 {
		g.confirm(nodesOf(g.after(time.Minute), ActionUpdate)...)
	}
	if s, _ := g.r.State(); s != StateRunning || g.r.Count(NodePending) != 1 {
		t.Fatalf("before node 3 is back: %s, %d pending", s, g.r.Count(NodePending))
	}
	g.r.Joined(g.now, NodeInfo{ID: 3, MD5: oldMD5, Version: "1.0"})
	if got := nodesOf(g.take(), ActionUpdate); !slices.Equal(got, []uint32{3}) {
		t.Fatalf("node 3 back: started %v", got)
	}
	g.confirm(3)
	g.after(time.Minute)
	if s, why := g.r.State(); s != StateCompleted {
		t.Fatalf("state %s (%s)", s, why)
	}
}

func TestLingerEndsAWaitForNodesThatNeverCome(t *testing.T) {
	topo := flat(2)
	nodes := infos(topo)
	nodes[1].Online = false
	r, _ := New(t0, spec(Plan{Linger: time.Hour}), nodes, topo)
	g := &rig{t: t, now: t0, r: r}
	g.confirm(nodesOf(g.take(), ActionUpdate)...)
	if s, _ := g.r.State(); s != StateRunning {
		t.Fatalf("state %s", s)
	}
	g.after(time.Hour)
	if s, why := g.r.State(); s != StateCompleted || !strings.Contains(why, "1 nodes never came back within 1h0m0s: [2]") {
		t.Fatalf("state %s (%s)", s, why)
	}
}

func TestUpdateTimeout(t *testing.T) {
	g := newRig(t, spec(Plan{UpdateTimeout: 10 * time.Minute, Failure: Thresholds{Count: 3}}), flat(1))
	g.after(10 * time.Minute)
	if n := g.r.s.Nodes[1]; n.State != NodeFailed || !strings.Contains(n.Reason, "no outcome within 10m0s") {
		t.Fatalf("%s %s", n.State, n.Reason)
	}
}
