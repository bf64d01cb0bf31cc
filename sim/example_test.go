package sim_test

import (
	"fmt"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

func Example() {
	net := sim.New(sim.Config{Seed: 1, Model: sim.ESP8266()})
	nodes, err := net.AddMeshNodes(5, nil)
	if err != nil {
		panic(err)
	}
	if err := net.Build(sim.TopologyChain, nodes, 0); err != nil {
		panic(err)
	}
	received := 0
	net.OnEvent(func(n *sim.Node, at time.Time, ev mesh.Event) {
		if _, ok := ev.(mesh.MessageReceived); ok {
			received++
		}
	})
	fmt.Println("converged:", net.RunUntil(net.Converged, time.Minute))
	if err := nodes[0].SendBroadcast("hello", false); err != nil {
		panic(err)
	}
	net.RunFor(time.Second)
	fmt.Println("broadcast received by", received, "nodes")
	// Output:
	// converged: true
	// broadcast received by 4 nodes
}
