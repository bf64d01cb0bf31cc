package gateway

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/rollout"
)

// The gateway keeps a bounded number of rollouts: the oldest that are
// over make room for a new one; active ones never do.
func TestMakeRolloutRoomForgetsOldestFinished(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	topo := rollout.Topology{Root: 1, Parent: map[uint32]uint32{}}
	m := rollout.NewManager()
	for i, id := range []string{"a", "b", "c"} {
		node := uint32(10 + i)
		topo.Parent[node] = 1
		nodes := []rollout.NodeInfo{{ID: node, Role: "sensor", Hardware: "ESP32", MD5: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Online: true}}
		spec := rollout.Spec{ID: id, Image: rollout.Image{MD5: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Role: "sensor", Hardware: "ESP32"}, Targets: rollout.Targets{Nodes: []uint32{node}}}
		if _, err := m.Start(now, spec, nodes, topo); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "c"} {
		if err := m.Abort(now, id, "", false); err != nil {
			t.Fatal(err)
		}
	}
	if !makeRolloutRoom(m, 2) {
		t.Fatal("no room made")
	}
	if _, ok := m.Get("a"); ok {
		t.Fatal("the oldest finished rollout was kept")
	}
	if _, ok := m.Get("c"); !ok {
		t.Fatal("a finished rollout was dropped though there was room")
	}
	if makeRolloutRoom(m, 0) {
		t.Fatal("room made by dropping the active rollout b")
	}
	if _, ok := m.Get("b"); !ok {
		t.Fatal("the active rollout was dropped")
	}
}
