package scenario_test

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

// A distributor on the root and ten of our receivers below it, in a tree
// at most three hops deep, ready for a campaign.
func ExampleBuild() {
	dist := ota.NewDistributor(ota.DistributorConfig{Compress: ota.Compress})
	fleet, err := scenario.Build(scenario.Spec{
		Devices: 10, Seed: 1, Model: sim.ESP32(),
		Layout:  scenario.Layout{Topology: sim.TopologyTree, MaxDepth: 3},
		Root:    scenario.Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{dist} }},
		FirstID: 100,
		OTA:     scenario.OTA{Receiver: scenario.OurReceiver, Role: "sensor", Hardware: "ESP32"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := fleet.Converge(time.Minute); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(fleet.Devices), "devices:", fleet.DeviceIDs()[0], "to", fleet.DeviceIDs()[9])
	fmt.Println("root knows", len(fleet.Root.NodeList(false)), "nodes")
	// Output:
	// 10 devices: 100 to 109
	// root knows 10 nodes
}
