package prom

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

func TestExporterPerNodeSeries(t *testing.T) {
	m := &fleettest.Memory{
		NodeList: []fleet.Node{
			{ID: 1, Status: "online", UptimeS: 100, FreeMemory: 50000, RSSI: -60, LatencyMS: 12, Firmware: "1.0", FirmwareMD5: "aa", Role: "gw", Hardware: "linux"},
			{ID: 3907768579, Status: "offline", LossPct: 5},
		},
		Sum:       fleet.Summary{NodeCount: 2, OnlineCount: 1, HealthScore: 70, ActiveAlerts: 1},
		AlertList: []fleet.Alert{{NodeID: 3907768579, Type: "node_offline", Severity: "warning"}},
		Camps: map[string]*fleet.Campaign{"c1": {ID: "c1", State: "running", Completed: 1,
			Nodes: map[string]fleet.Progress{"1": {State: "downloading", Chunks: 5, Total: 10}}}},
	}
	exp := `
# HELP meshfleet_node_up 1 if the node reported within its offline timeout.
# TYPE meshfleet_node_up gauge
meshfleet_node_up{node_id="1"} 1
meshfleet_node_up{node_id="3907768579"} 0
# HELP meshfleet_node_latency_seconds Latency to the gateway (TIME_DELAY round trip estimate).
# TYPE meshfleet_node_latency_seconds gauge
meshfleet_node_latency_seconds{node_id="1"} 0.012
meshfleet_node_latency_seconds{node_id="3907768579"} 0
# HELP meshfleet_node_packet_loss_ratio Packet loss as last reported, 0..1.
# TYPE meshfleet_node_packet_loss_ratio gauge
meshfleet_node_packet_loss_ratio{node_id="1"} 0
meshfleet_node_packet_loss_ratio{node_id="3907768579"} 0.05
# HELP meshfleet_mesh_nodes_online Nodes currently online.
# TYPE meshfleet_mesh_nodes_online gauge
meshfleet_mesh_nodes_online 1
# HELP meshfleet_alert_active Active alerts (value 1), by node and type.
# TYPE meshfleet_alert_active gauge
meshfleet_alert_active{alert_type="node_offline",node_id="3907768579",severity="warning"} 1
# HELP meshfleet_ota_node_chunks_done Chunks a node holds in a campaign.
# TYPE meshfleet_ota_node_chunks_done gauge
meshfleet_ota_node_chunks_done{campaign="c1",node_id="1"} 5
`
	err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(exp),
		"meshfleet_node_up", "meshfleet_node_latency_seconds", "meshfleet_node_packet_loss_ratio",
		"meshfleet_mesh_nodes_online", "meshfleet_alert_active", "meshfleet_ota_node_chunks_done")
	if err != nil {
		t.Fatal(err)
	}
	// The whole registry lints clean (names, help, types).
	problems, err := testutil.GatherAndLint(NewRegistry(m))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, Namespace) {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
}
