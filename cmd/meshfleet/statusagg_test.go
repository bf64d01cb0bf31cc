package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/linuxnode"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// Over real TCP: gateway – relay (--status-aggregate) – leaf. The relay
// takes the leaf's frames in transit and sends them on in bundles with its
// own; the gateway's collector shows both nodes online with their
// firmware.
func TestNodeStatusAggregatesOverTCP(t *testing.T) {
	dev := func(version string, aggregate bool) linuxnode.Config {
		return linuxnode.Config{StatusInterval: time.Second, StatusMaxInterval: 5 * time.Second, StatusAggregate: aggregate, Version: version}
	}
	relay := startNode(t, nodeConfig{ID: 20, Listen: "127.0.0.1:0", MaxMessageSize: tcp.DefaultMaxMessageSize, Device: dev("relay-1", true)}, false)
	relay.cfg.Listen = relay.d.Addr().String()
	leaf := startNode(t, nodeConfig{ID: 21, Listen: "127.0.0.1:0", Connect: []string{relay.cfg.Listen},
		MaxMessageSize: tcp.DefaultMaxMessageSize, Device: dev("leaf-1", false)}, false)
	leaf.log.wait(t, "leaf connected to the relay", func(m map[string]any) bool {
		return m["event"] == "new_connection" && m["node"] == 20.0
	})
	g := startGateway(t, relay)

	var st status.AggregatorStats
	stats := func() status.AggregatorStats {
		if err := relay.d.Do(context.Background(), func(time.Time, *mesh.Node) { st = relay.dev.Aggregator().Stats() }); err != nil {
			t.Fatal(err)
		}
		return st
	}
	seen := func() map[uint32]string {
		nodes, err := g.Nodes(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := map[uint32]string{}
		for _, n := range nodes {
			out[n.ID] = n.Status + " " + n.Firmware
		}
		return out
	}
	eventually(t, "relay bundles the leaf's frames, gateway sees both", func() bool {
		s, nodes := stats(), seen()
		return s.Transit > 0 && s.BundlesOut > 0 && s.Dropped == 0 &&
			nodes[20] == "online relay-1" && nodes[21] == "online leaf-1"
	}, func() string { return fmt.Sprintf("relay %+v; gateway: %v", st, seen()) })
}
