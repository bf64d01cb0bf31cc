package rollout

import (
	"slices"
	"testing"
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
