package rollout_test

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/rollout"
)

// A caller's loop: feed inputs, carry out Ready's actions, publish its
// events, Advance. Here three leaves under the root, a canary of one, no
// soak, and every update confirmed at once.
func Example() {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	topo := rollout.Topology{Root: 1, Parent: map[uint32]uint32{10: 1, 11: 1, 12: 1}}
	var nodes []rollout.NodeInfo
	for _, id := range []uint32{10, 11, 12} {
		nodes = append(nodes, rollout.NodeInfo{ID: id, Role: "sensor", Hardware: "ESP32", Version: "1.0", MD5: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Online: true})
	}
	spec := rollout.Spec{
		ID:    "sensor-2.0",
		Image: rollout.Image{MD5: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", Version: "2.0", Role: "sensor", Hardware: "ESP32"},
		Plan:  rollout.Plan{Waves: []rollout.Wave{{Count: 1}, {Percent: 100}}, Gates: rollout.Gates{BaselineSamples: -1}},
	}
	r, err := rollout.New(now, spec, nodes, topo)
	if err != nil {
		fmt.Println(err)
		return
	}
	for {
		rd := r.Ready()
		r.Advance()
		if len(rd.Actions) == 0 {
			break
		}
		for _, a := range rd.Actions {
			fmt.Println(a.Kind, a.Nodes)
			for _, id := range a.Nodes { // the OTA system would do this
				r.Outcome(now, rollout.Outcome{Node: id, MD5: a.Image.MD5, State: rollout.OutcomeConfirmed})
			}
		}
	}
	s, why := r.State()
	fmt.Println(s, why)
	// Output:
	// update [10]
	// update [11 12]
	// completed 3 passed, 0 updated, 0 failed, 0 rolled back, 0 skipped
}
