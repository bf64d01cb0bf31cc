package gateway

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
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

// A node whose status does not name its image yet (it just booted a new
// one and has not answered the collector's firmware query) runs what its
// last campaign says it confirmed or installed; a node whose last
// campaign did not get there stays unknown, and the status's word wins.
func TestRolloutNodesTakeTheImageTheirLastCampaignInstalled(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	progress := func(id uint32, state string, at time.Duration) fleet.Progress {
		return fleet.Progress{NodeID: id, State: state, Updated: t0.Add(at)}
	}
	campaigns := []fleet.Campaign{
		{ID: "to-v1", Image: fleet.Image{MD5: "AAAA", Version: "1.0.0"}, Nodes: map[string]fleet.Progress{
			"1": progress(1, "confirmed", 0), "2": progress(2, "confirmed", 0), "3": progress(3, "confirmed", 0), "4": progress(4, "confirmed", 0),
		}},
		{ID: "to-v2", Image: fleet.Image{MD5: "bbbb", Version: "2.0.0"}, Nodes: map[string]fleet.Progress{
			"1": progress(1, "confirmed", time.Minute), "2": progress(2, "lost", time.Minute),
			"3": progress(3, "confirmed", time.Minute), "5": progress(5, "installed", time.Minute),
		}},
	}
	nodes := []rollout.NodeInfo{{ID: 1}, {ID: 2}, {ID: 3, MD5: "cccc", Version: "3.0.0"}, {ID: 4}, {ID: 5}, {ID: 6}}
	got := withInstalledImages(nodes, campaigns)
	want := map[uint32][2]string{
		1: {"bbbb", "2.0.0"}, // confirmed v2 last
		2: {"", ""},          // lost in v2: it may run either
		3: {"cccc", "3.0.0"}, // its status names its image
		4: {"aaaa", "1.0.0"},
		5: {"bbbb", "2.0.0"}, // a stock node, installed
		6: {"", ""},          // never in a campaign
	}
	for _, n := range got {
		if w := want[n.ID]; n.MD5 != w[0] || n.Version != w[1] {
			t.Errorf("node %d: %q %q, want %q %q", n.ID, n.MD5, n.Version, w[0], w[1])
		}
	}
}
