package gateway

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/status"
)

// Unknown values never reach the node documents as sentinels: a free
// memory the 32-bit field cannot say (the saturated 4 GiB - 1) or never
// reported, the last_seen of a node not heard from, the hops of a node
// outside the layout. Role and hardware come through.
func TestNodeDocumentsOmitUnknownValues(t *testing.T) {
	heard := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	s := snapshot{self: 1, states: []status.NodeState{
		{ID: 1, Online: true, Hops: 0, LastSeen: heard, Metrics: status.Metrics{FreeMemory: math.MaxUint32, Role: "gateway", Hardware: "linux"}},
		{ID: 2, Hops: -1},
		{ID: 3, Online: true, Hops: 1, LastSeen: heard, Metrics: status.Metrics{FreeMemory: 41000, RSSI: -60, LatencyUs: 1500, Role: "sensor", Hardware: "ESP32"}},
	}}
	nodes := s.nodes()
	docs := map[uint32]string{}
	for _, n := range nodes {
		b, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		docs[n.ID] = string(b)
	}
	for id, absent := range map[uint32][]string{
		1: {`"free_memory_bytes"`, `4294967295`},
		2: {`"last_seen"`, `"hops"`, `"free_memory_bytes"`, `"rssi_dbm"`, `"latency_ms"`, `0001-01-01`},
	} {
		for _, key := range absent {
			if strings.Contains(docs[id], key) {
				t.Errorf("node %d: %s in %s", id, key, docs[id])
			}
		}
	}
	for id, present := range map[uint32][]string{
		1: {`"hops":0`, `"role":"gateway"`, `"hardware":"linux"`, `"last_seen":"2026-12-07T01:00:00Z"`},
		3: {`"hops":1`, `"free_memory_bytes":41000`, `"rssi_dbm":-60`, `"latency_ms":1.5`, `"role":"sensor"`, `"hardware":"ESP32"`},
	} {
		for _, key := range present {
			if !strings.Contains(docs[id], key) {
				t.Errorf("node %d: no %s in %s", id, key, docs[id])
			}
		}
	}
}

// The summary counts what the node list lists, also when the model knows
// a node outside the current layout.
func TestSummaryCountsTheNodeList(t *testing.T) {
	ctx, g := startReadyGateway(t, 3)
	if err := g.do(ctx, func(now time.Time, _ *mesh.Node, c *status.Collector, _ *ota.Distributor) {
		c.Model().Observe(now, 424242, status.SourceQuery, func(m *status.Metrics) { m.Uptime = 5 })
	}); err != nil {
		t.Fatal(err)
	}
	s, err := g.snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodes, sum := s.nodes(), s.summary(g.started)
	online := 0
	for _, n := range nodes {
		if n.Status == "online" {
			online++
		}
	}
	if sum.NodeCount != len(nodes) || sum.OnlineCount != online {
		t.Fatalf("summary says %d nodes, %d online; the node list has %d, %d online", sum.NodeCount, sum.OnlineCount, len(nodes), online)
	}
}
