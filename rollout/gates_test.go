package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// soakRig is a rollout of 10 nodes whose canary of 3 confirmed and soaks,
// with baselines of 100 000 B free and 60 drops/min.
func soakRig(t *testing.T, plan Plan) (*rig, []uint32) {
	t.Helper()
	plan.Waves = []Wave{{Count: 3}, {Percent: 100}}
	if plan.Soak == 0 {
		plan.Soak = 2 * time.Minute
	}
	g := newRig(t, spec(plan), flat(10))
	canary := nodesOf(g.acts, ActionUpdate)
	for id := uint32(1); id <= 10; id++ {
		for i := range 3 {
			g.r.Observe(g.now.Add(time.Duration(i)*10*time.Second), Sample{Node: id, Online: true, Uptime: time.Hour, FreeMemory: 100_000, Dropped: uint64(i * 10)})
		}
	}
	// The canary's readings came before it started.
	for _, id := range canary {
		g.r.s.Nodes[id].Base = baseline{Samples: 3, Free: 100_000, DropRate: 60}
	}
	g.confirm(canary...)
	return g, canary
}

func TestBaselineFollowsReadingsBeforeTheUpdate(t *testing.T) {
	g := newRig(t, spec(Plan{Waves: []Wave{{Count: 1}, {Percent: 100}}}), flat(2))
	id := uint32(2) // node 1 is the canary
	for i, free := range []uint32{100_000, 110_000, 90_000} {
		g.r.Observe(t0.Add(time.Duration(i)*time.Minute), Sample{Node: id, Online: true, FreeMemory: free, Dropped: uint64(i * 30)})
	}
	b := g.r.s.Nodes[id].Base
	if b.Samples != 3 || b.Free != 100_000 || b.DropRate != 30 {
		t.Fatalf("baseline %+v: want 3 samples, a mean of 100000 B, 30 drops/min", b)
	}
}

func TestGatesFailAgainstTheNodesOwnBaseline(t *testing.T) {
	cases := []struct {
		name    string
		samples []Sample // of the first canary node, 10 s apart
		want    string
	}{
		{"memory leak", []Sample{{Online: true, Uptime: time.Minute, FreeMemory: 99_000}, {Online: true, Uptime: 2 * time.Minute, FreeMemory: 80_000}}, "free memory 80000 B is below its baseline"},
		{"reboot loop", []Sample{{Online: true, Uptime: 50 * time.Second}, {Online: true, Uptime: 5 * time.Second}, {Online: true, Uptime: 20 * time.Second}, {Online: true, Uptime: 3 * time.Second}}, "reboot loop: 2 reboots"},
		{"drops", []Sample{{Online: true, Uptime: time.Minute, Dropped: 0}, {Online: true, Uptime: 2 * time.Minute, Dropped: 100}}, "drops 600.0 messages/min"},
		{"critical alert", []Sample{{Online: true, Uptime: time.Minute, CriticalAlerts: 1}}, "new critical alert"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, canary := soakRig(t, Plan{Failure: Thresholds{Count: 2}})
			for _, s := range c.samples {
				s.Node = canary[0]
				g.r.Observe(g.now, s)
				g.now = g.now.Add(10 * time.Second)
			}
			n := g.r.s.Nodes[canary[0]]
			if n.State != NodeFailed || !strings.Contains(n.Reason, c.want) {
				t.Fatalf("node %s (%s), want failed naming %q", n.State, n.Reason, c.want)
			}
			if s, _ := g.r.State(); s != StateRunning {
				t.Fatalf("one failure of a threshold of 2 stopped the rollout: %s", s)
			}
		})
	}
	// Within limits: a ripple of memory and one reboot pass.
	g, canary := soakRig(t, Plan{})
	for i, free := range []uint32{95_000, 102_000, 90_000} {
		g.r.Observe(g.now, Sample{Node: canary[0], Online: true, Uptime: time.Duration(10*i+5) * time.Second, FreeMemory: free})
		g.now = g.now.Add(10 * time.Second)
	}
	g.r.Observe(g.now, Sample{Node: canary[0], Online: true, Uptime: time.Second, FreeMemory: 99_000})
	g.after(2 * time.Minute)
	if s := g.state(canary[0]); s != NodePassed {
		t.Fatalf("a node within its limits: %s (%s)", s, g.r.s.Nodes[canary[0]].Reason)
	}
}

func TestOfflineDuringTheSoakFailsAfterTheGrace(t *testing.T) {
	g, canary := soakRig(t, Plan{Failure: Thresholds{Count: 5}})
	g.r.Left(g.now, canary[0])
	g.after(20 * time.Second)
	if s := g.state(canary[0]); s != NodeSoaking {
		t.Fatalf("failed within the grace: %s", s)
	}
	g.r.Left(g.now, canary[1])
	g.after(5 * time.Second)
	g.r.Observe(g.now, Sample{Node: canary[1], Online: true, Uptime: 5 * time.Second})
	g.after(5 * time.Second)
	if n := g.r.s.Nodes[canary[0]]; n.State != NodeFailed || !strings.Contains(n.Reason, "offline for 30s") {
		t.Fatalf("offline past the grace: %s (%s)", n.State, n.Reason)
	}
	g.after(2 * time.Minute)
	if s := g.state(canary[1]); s != NodePassed {
		t.Fatalf("a node back within the grace: %s", s)
	}
}

// A failure at the threshold stops the rollout; under the rollback policy
// every updated node gets its previous image again and nothing else starts.
func TestThresholdStopsAndRollsBack(t *testing.T) {
	g, canary := soakRig(t, Plan{Policy: PolicyRollback})
	g.r.Observe(g.now, Sample{Node: canary[0], Online: true, Uptime: time.Minute, FreeMemory: 10_000})
	acts := g.take()
	if s, _ := g.r.State(); s != StateStopping {
		t.Fatalf("state %s, want stopping", s)
	}
	back := nodesOf(acts, ActionRollback)
	slices.Sort(back)
	if !slices.Equal(back, canary) {
		t.Fatalf("rolled back %v, want the canary %v", back, canary)
	}
	for _, a := range acts {
		if a.Kind == ActionRollback && (a.Image.MD5 != oldMD5 || !a.Forced) {
			t.Fatalf("rollback action %+v: want the previous image, forced", a)
		}
	}
	for _, id := range canary {
		g.r.Outcome(g.now, Outcome{Node: id, MD5: oldMD5, State: OutcomeConfirmed})
	}
	g.take()
	s, why := g.r.State()
	if s != StateFailed || !strings.Contains(why, "1 of 3 updated nodes failed in wave 0") {
		t.Fatalf("state %s (%s)", s, why)
	}
	if g.r.Count(NodeRolledBack) != 3 || len(nodesOf(g.acts, ActionUpdate)) != 3 {
		t.Fatalf("rolled back %d, updates %v", g.r.Count(NodeRolledBack), nodesOf(g.acts, ActionUpdate))
	}
	if g.r.Count(NodeCancelled) != 7 {
		t.Fatalf("the other waves: %d cancelled", g.r.Count(NodeCancelled))
	}
}

func TestPercentThresholdAndABRollback(t *testing.T) {
	g := newRig(t, spec(Plan{Waves: []Wave{{Count: 4}}, Failure: Thresholds{Percent: 50}}), flat(6))
	canary := nodesOf(g.acts, ActionUpdate)
	g.r.Outcome(g.now, Outcome{Node: canary[0], MD5: newMD5, State: OutcomeRolledBack, Error: "self test failed"})
	if s, _ := g.r.State(); s != StateRunning {
		t.Fatalf("1 of 4 failed stopped a 50%% threshold: %s", s)
	}
	g.r.Outcome(g.now, Outcome{Node: canary[1], MD5: newMD5, State: OutcomeRefused, Error: "signature"})
	acts := g.take()
	if s, why := g.r.State(); s != StateFailed || !strings.Contains(why, "2 of 4") {
		t.Fatalf("state %s (%s)", s, why)
	}
	if got := nodesOf(acts, ActionCancel); !slices.Equal(got, canary[2:]) {
		t.Fatalf("cancelled %v, want the rest of the canary %v", got, canary[2:])
	}
}

// A node whose update was cancelled may still confirm (its transfer was
// through): under the rollback policy it is rolled back too.
func TestLateConfirmAfterAStopIsRolledBack(t *testing.T) {
	g := newRig(t, spec(Plan{Waves: []Wave{{Count: 2}}, Policy: PolicyRollback}), flat(4))
	canary := nodesOf(g.acts, ActionUpdate)
	g.r.Outcome(g.now, Outcome{Node: canary[0], MD5: newMD5, State: OutcomeFailed, Error: "gave up"})
	if s, _ := g.r.State(); s != StateFailed {
		t.Fatalf("state %s", s)
	}
	// Final: no more transitions, even for a late confirm.
	g.confirm(canary[1])
	if s := g.state(canary[1]); s != NodeCancelled {
		t.Fatalf("a final rollout changed: %s", s)
	}
	// While it is still rolling back, a late confirm is rolled back.
	g2, c2 := soakRig(t, Plan{Policy: PolicyRollback, Waves: nil})
	_ = c2
	g2.r.Observe(g2.now, Sample{Node: c2[0], Online: true, Uptime: time.Minute, CriticalAlerts: 3})
	g2.take()
	if s, _ := g2.r.State(); s != StateStopping {
		t.Fatalf("state %s", s)
	}
}

// A node starts once its baseline has the readings it needs, or after the
// wait without one.
func TestUpdatesWaitForABaseline(t *testing.T) {
	g := newRig(t, spec(Plan{Gates: Gates{BaselineSamples: 2, BaselineWait: time.Minute}}), flat(2))
	if len(g.acts) != 0 {
		t.Fatalf("started without a baseline: %v", g.acts)
	}
	for i := range 2 {
		g.r.Observe(t0.Add(time.Duration(i)*10*time.Second), Sample{Node: 1, Online: true, Uptime: time.Hour, FreeMemory: 100_000})
	}
	if got := nodesOf(g.take(), ActionUpdate); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("with two readings: started %v, want [1]", got)
	}
	if d := g.r.NextDeadline(); !d.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next deadline %v, want the baseline wait's end", d)
	}
	if got := nodesOf(g.after(time.Minute), ActionUpdate); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("after the wait: started %v, want [2]", got)
	}
}

// A lost outcome: the node's telemetry shows the new image confirmed.
func TestTelemetryStandsForALostOutcome(t *testing.T) {
	g := newRig(t, spec(Plan{Soak: time.Minute}), flat(1))
	g.r.Observe(g.now, Sample{Node: 1, Online: true, Uptime: 5 * time.Second, MD5: oldMD5})
	if s := g.state(1); s != NodeUpdating {
		t.Fatalf("the old image confirmed the update: %s", s)
	}
	g.r.Observe(g.now, Sample{Node: 1, Online: true, Uptime: 5 * time.Second, MD5: strings.ToUpper(newMD5)})
	if s := g.state(1); s != NodeSoaking {
		t.Fatalf("telemetry with the new image: %s", s)
	}
}
