package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Root–1–{2–3, 4}: a node others reach the mesh through starts only once
// its descendants are through, and never while one of them updates.
func TestLeavesFirstNeverAParentWithItsChild(t *testing.T) {
	topo := tree(map[uint32]uint32{1: 0, 2: 1, 3: 2, 4: 1})
	g := newRig(t, spec(Plan{}), topo)
	if got := nodesOf(g.acts, ActionUpdate); !slices.Equal(got, []uint32{3, 4}) {
		t.Fatalf("first started %v, want the leaves [3 4]", got)
	}
	if got := nodesOf(g.confirm(3), ActionUpdate); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("after 3 confirmed: started %v, want its parent [2]", got)
	}
	if got := nodesOf(g.confirm(4), ActionUpdate); len(got) != 0 {
		t.Fatalf("relay 1 started %v while its child 2 updates", got)
	}
	if got := nodesOf(g.confirm(2), ActionUpdate); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("after its subtree: started %v, want [1]", got)
	}
	g.confirm(1)
	if s, why := g.r.State(); s != StateCompleted {
		t.Fatalf("state %s (%s), want completed", s, why)
	}
}

func TestConcurrentUpdatesPerSubtreeAreBounded(t *testing.T) {
	p := map[uint32]uint32{1: 0}
	for i := uint32(10); i < 16; i++ {
		p[i] = 1
	}
	g := newRig(t, spec(Plan{MaxPerSubtree: 2}), tree(p))
	if got := nodesOf(g.acts, ActionUpdate); !slices.Equal(got, []uint32{10, 11}) {
		t.Fatalf("started %v, want two of relay 1's six leaves", got)
	}
	if got := nodesOf(g.confirm(10), ActionUpdate); !slices.Equal(got, []uint32{12}) {
		t.Fatalf("after one confirmed: %v, want [12]", got)
	}
	g2 := newRig(t, spec(Plan{MaxConcurrent: 3, MaxPerSubtree: 10}), flat(8))
	if got := nodesOf(g2.acts, ActionUpdate); len(got) != 3 {
		t.Fatalf("max_concurrent 3: started %v", got)
	}
}

func TestRootOnlyWhenAskedAndLast(t *testing.T) {
	topo := flat(2)
	nodes := append(infos(topo), NodeInfo{ID: 1000, Role: "sensor", Hardware: "ESP32", MD5: oldMD5, Online: true})
	r, err := New(t0, spec(Plan{}), nodes, topo)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.s.Nodes[1000]; ok {
		t.Fatal("the root is a target without include_root")
	}
	r, _ = New(t0, spec(Plan{IncludeRoot: true}), nodes, topo)
	g := &rig{t: t, now: t0, r: r}
	if got := nodesOf(g.take(), ActionUpdate); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("started %v, want the devices before the root", got)
	}
	if got := nodesOf(g.confirm(1, 2), ActionUpdate); !slices.Equal(got, []uint32{1000}) {
		t.Fatalf("then %v, want the root", got)
	}
}

// The canary comes from the deepest leaves of every branch in turn, not
// from one relay's children.
func TestCanarySpreadsOverBranches(t *testing.T) {
	p := map[uint32]uint32{1: 0, 2: 0}
	for i := uint32(10); i < 14; i++ {
		p[i] = 1 // branch 1: four leaves
	}
	p[20], p[21] = 2, 20 // branch 2: a relay and its leaf
	g := newRig(t, spec(Plan{Waves: []Wave{{Count: 2}}}), tree(p))
	if got := nodesOf(g.acts, ActionUpdate); !slices.Equal(slices.Sorted(slices.Values(got)), []uint32{10, 21}) {
		t.Fatalf("canary %v, want one leaf of each branch [10 21]", got)
	}
}

// Rollbacks keep the mesh's order too: a relay and its child, both
// updated, roll back child first.
func TestRollbacksGoLeavesFirst(t *testing.T) {
	g := newRig(t, spec(Plan{Soak: time.Minute, Policy: PolicyRollback}), tree(map[uint32]uint32{1: 0, 2: 1}))
	g.confirm(2)
	g.after(time.Minute)
	g.confirm(1)
	if err := g.r.Abort(g.now, "bad batch", true); err != nil {
		t.Fatal(err)
	}
	if got := nodesOf(g.take(), ActionRollback); !slices.Equal(got, []uint32{2}) {
		t.Fatalf("rolled back %v first, want the leaf [2]", got)
	}
	g.r.Outcome(g.now, Outcome{Node: 2, MD5: oldMD5, State: OutcomeConfirmed})
	if got := nodesOf(g.take(), ActionRollback); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("then %v, want the relay [1]", got)
	}
	g.r.Outcome(g.now, Outcome{Node: 1, MD5: oldMD5, State: OutcomeConfirmed})
	g.take()
	if s, why := g.r.State(); s != StateAborted || why != "bad batch" || g.r.Count(NodeRolledBack) != 2 {
		t.Fatalf("state %s (%s), %d rolled back", s, why, g.r.Count(NodeRolledBack))
	}
}

// A soaking node cut off behind a relay that reboots for this rollout is
// not failed for it; its grace starts again when the relay is back.
func TestOfflineBehindAnUpdatingRelayIsNotTheNodesFault(t *testing.T) {
	g := newRig(t, spec(Plan{Soak: 5 * time.Minute, Failure: Thresholds{Count: 1}}), tree(map[uint32]uint32{1: 0, 2: 1, 3: 0}))
	g.confirm(2, 3) // relay 1 starts once its child 2 is through …
	if g.state(1) != NodeUpdating {
		t.Fatalf("relay 1: %s", g.state(1))
	}
	g.r.Left(g.now, 1) // … and reboots: 2 is cut off
	g.r.Left(g.now, 2)
	g.after(40 * time.Second)
	if s := g.state(2); s != NodeSoaking {
		t.Fatalf("a node cut off by its relay failed: %s (%s)", s, g.r.s.Nodes[2].Reason)
	}
	g.r.Joined(g.now, NodeInfo{ID: 1})
	g.confirm(1)
	g.after(31 * time.Second)
	if n := g.r.s.Nodes[2]; n.State != NodeFailed || !strings.Contains(n.Reason, "offline for 31s") {
		t.Fatalf("still away once its path is back: %s (%s)", n.State, n.Reason)
	}
}
