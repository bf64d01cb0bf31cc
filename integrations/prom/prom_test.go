package prom

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

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
# HELP meshfleet_node_packet_loss_ratio Packet loss as last reported, 0..1.
# TYPE meshfleet_node_packet_loss_ratio gauge
meshfleet_node_packet_loss_ratio{node_id="1"} 0
meshfleet_node_packet_loss_ratio{node_id="3907768579"} 0.05
# HELP meshfleet_mesh_nodes_online Nodes currently online.
# TYPE meshfleet_mesh_nodes_online gauge
meshfleet_mesh_nodes_online 1
# HELP meshfleet_alert_active Active alerts (value 1), by node and type; the severity is in meshfleet_alert_severity.
# TYPE meshfleet_alert_active gauge
meshfleet_alert_active{alert_type="node_offline",node_id="3907768579"} 1
# HELP meshfleet_ota_node_chunks_done Chunks a node holds in a running or paused campaign.
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
	problems, err := testutil.GatherAndLint(NewRegistry(m, "north"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, Namespace) {
			t.Errorf("lint %s: %s", p.Metric, p.Text)
		}
	}
}

// Message counts reported by nodes are counters (they only grow until the
// node restarts), so they carry _total and rate() works across resets.
func TestExporterMessageCountsAreCounters(t *testing.T) {
	m := &fleettest.Memory{NodeList: []fleet.Node{{ID: 7, Status: "online", MessagesRx: 10, MessagesTx: 20, Dropped: 3}}}
	exp := `
# HELP meshfleet_node_messages_received_total Messages received, as the node counts them (resets when the node restarts).
# TYPE meshfleet_node_messages_received_total counter
meshfleet_node_messages_received_total{node_id="7"} 10
# HELP meshfleet_node_messages_sent_total Messages sent, as the node counts them (resets when the node restarts).
# TYPE meshfleet_node_messages_sent_total counter
meshfleet_node_messages_sent_total{node_id="7"} 20
# HELP meshfleet_node_messages_dropped_total Messages dropped, as the node counts them (resets when the node restarts).
# TYPE meshfleet_node_messages_dropped_total counter
meshfleet_node_messages_dropped_total{node_id="7"} 3
`
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(exp),
		"meshfleet_node_messages_received_total", "meshfleet_node_messages_sent_total", "meshfleet_node_messages_dropped_total"); err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{"meshfleet_node_messages_received", "meshfleet_node_messages_sent", "meshfleet_node_messages_dropped"} {
		if n := testutil.CollectAndCount(NewExporter(m), old); n != 0 {
			t.Errorf("%s still exported as %d gauge series", old, n)
		}
	}
}

func campaignWith(id, state string, nodes int, nodeState string) *fleet.Campaign {
	c := &fleet.Campaign{ID: id, State: state, Nodes: map[string]fleet.Progress{}, Total: nodes}
	for i := range nodes {
		c.Nodes[strconv.Itoa(1000+i)] = fleet.Progress{NodeID: uint32(1000 + i), State: nodeState, Chunks: 10, Total: 10}
	}
	return c
}

// Three finished campaigns on 30 nodes leave no per-node OTA series; only
// the running campaign's nodes are exported.
func TestExporterDropsFinishedCampaignSeries(t *testing.T) {
	m := &fleettest.Memory{Camps: map[string]*fleet.Campaign{
		"a": campaignWith("a", "completed", 30, "confirmed"),
		"b": campaignWith("b", "aborted", 30, "downloading"),
		"c": campaignWith("c", "failed", 30, "failed"),
		"d": campaignWith("d", "running", 2, "downloading"),
	}}
	for name, want := range map[string]int{
		"meshfleet_ota_node_chunks_done": 2,
		"meshfleet_ota_node_chunks":      2,
		"meshfleet_ota_node_state":       2 * len(fleet.ProgressStates),
	} {
		if n := testutil.CollectAndCount(NewExporter(m), name); n != want {
			t.Errorf("%s: %d series, want %d (the running campaign's nodes only)", name, n, want)
		}
	}
	// Finished campaigns are counted by their final state.
	exp := `
# HELP meshfleet_ota_campaigns OTA campaigns the gateway knows, by state.
# TYPE meshfleet_ota_campaigns gauge
meshfleet_ota_campaigns{state="aborted"} 1
meshfleet_ota_campaigns{state="completed"} 1
meshfleet_ota_campaigns{state="failed"} 1
meshfleet_ota_campaigns{state="paused"} 0
meshfleet_ota_campaigns{state="running"} 1
meshfleet_ota_campaigns{state="superseded"} 0
`
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(exp), "meshfleet_ota_campaigns"); err != nil {
		t.Fatal(err)
	}
}

// A state change keeps every series' identity: states are a set of 0/1
// series, never a label on a value series.
func TestExporterStateChangeKeepsSeries(t *testing.T) {
	m := &fleettest.Memory{Camps: map[string]*fleet.Campaign{"d": campaignWith("d", "running", 1, "downloading")}}
	before := `
# HELP meshfleet_ota_node_state OTA state of a node in a running or paused campaign: 1 for its current state, 0 for the others.
# TYPE meshfleet_ota_node_state gauge
meshfleet_ota_node_state{campaign="d",node_id="1000",state="confirmed"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="downloading"} 1
meshfleet_ota_node_state{campaign="d",node_id="1000",state="failed"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="idle"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="installed"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="lost"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="refused"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="rolled_back"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="switching"} 0
meshfleet_ota_node_state{campaign="d",node_id="1000",state="verifying"} 0
# HELP meshfleet_ota_campaign_state State of a running or paused campaign: 1 for its current state, 0 for the others.
# TYPE meshfleet_ota_campaign_state gauge
meshfleet_ota_campaign_state{campaign="d",state="paused"} 0
meshfleet_ota_campaign_state{campaign="d",state="running"} 1
# HELP meshfleet_ota_campaign_nodes_completed Nodes that completed a running or paused campaign.
# TYPE meshfleet_ota_campaign_nodes_completed gauge
meshfleet_ota_campaign_nodes_completed{campaign="d"} 0
`
	names := []string{"meshfleet_ota_node_state", "meshfleet_ota_campaign_state", "meshfleet_ota_campaign_nodes_completed"}
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(before), names...); err != nil {
		t.Fatal(err)
	}
	c := m.Camps["d"]
	c.State = "paused"
	c.Nodes["1000"] = fleet.Progress{NodeID: 1000, State: "verifying"}
	after := strings.NewReplacer(
		`state="downloading"} 1`, `state="downloading"} 0`, `state="verifying"} 0`, `state="verifying"} 1`,
		`state="paused"} 0`, `state="paused"} 1`, `state="running"} 1`, `state="running"} 0`).Replace(before)
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(after), names...); err != nil {
		t.Fatal(err)
	}
}

// Every state a node or a campaign can be in has its series: a node that
// refused the image, a campaign cut short by a newer one.
func TestExporterCoversEveryState(t *testing.T) {
	m := &fleettest.Memory{Camps: map[string]*fleet.Campaign{
		"r": campaignWith("r", "running", 1, "refused"),
		"s": campaignWith("s", "superseded", 1, "downloading"),
	}}
	exp := `
# HELP meshfleet_ota_node_state OTA state of a node in a running or paused campaign: 1 for its current state, 0 for the others.
# TYPE meshfleet_ota_node_state gauge
meshfleet_ota_node_state{campaign="r",node_id="1000",state="confirmed"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="downloading"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="failed"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="idle"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="installed"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="lost"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="refused"} 1
meshfleet_ota_node_state{campaign="r",node_id="1000",state="rolled_back"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="switching"} 0
meshfleet_ota_node_state{campaign="r",node_id="1000",state="verifying"} 0
# HELP meshfleet_ota_campaigns OTA campaigns the gateway knows, by state.
# TYPE meshfleet_ota_campaigns gauge
meshfleet_ota_campaigns{state="aborted"} 0
meshfleet_ota_campaigns{state="completed"} 0
meshfleet_ota_campaigns{state="failed"} 0
meshfleet_ota_campaigns{state="paused"} 0
meshfleet_ota_campaigns{state="running"} 1
meshfleet_ota_campaigns{state="superseded"} 1
`
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(exp), "meshfleet_ota_node_state", "meshfleet_ota_campaigns"); err != nil {
		t.Fatal(err)
	}
}

// Values a node never reported (or that the gateway cannot know) are no
// series: a 0 or a sentinel would read as a real measurement.
func TestExporterOmitsUnknownValues(t *testing.T) {
	two := 2
	m := &fleettest.Memory{NodeList: []fleet.Node{
		{ID: 1, Status: "online", FreeMemory: 50000, RSSI: -60, LatencyMS: 3, Hops: &two},
		{ID: 2, Status: "offline"},
	}}
	for name, want := range map[string]int{
		"meshfleet_node_free_memory_bytes": 1,
		"meshfleet_node_rssi_dbm":          1,
		"meshfleet_node_latency_seconds":   1,
		"meshfleet_node_hops":              1,
		"meshfleet_node_up":                2,
	} {
		if n := testutil.CollectAndCount(NewExporter(m), name); n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
}

// A scrape the service fails, or does not answer within the exporter's
// bound, has meshfleet_fleet_up 0 and none of the fleet's series: no node
// count of 0, no empty OTA state. The Go and process series are still
// served.
func TestExporterServiceDown(t *testing.T) {
	m := &fleettest.Memory{
		NodeList:  []fleet.Node{{ID: 1, Status: "online"}},
		Sum:       fleet.Summary{NodeCount: 1, OnlineCount: 1, HealthScore: 90},
		AlertList: []fleet.Alert{{NodeID: 1, Type: "weak_wifi", Severity: "warning"}},
		Camps:     map[string]*fleet.Campaign{"d": campaignWith("d", "running", 1, "downloading")},
	}
	up := func(v int) string {
		return fmt.Sprintf(`
# HELP meshfleet_fleet_up 1 if the gateway answered this scrape; 0 if it failed or did not answer in time, and the node, mesh, alert and OTA series are left out.
# TYPE meshfleet_fleet_up gauge
meshfleet_fleet_up %d
`, v)
	}
	e := NewExporter(m)
	if err := testutil.CollectAndCompare(e, strings.NewReader(up(1)), "meshfleet_fleet_up"); err != nil {
		t.Fatal(err)
	}
	fails := fleettest.Fail(fmt.Errorf("gateway is not running: %w", fleet.ErrUnavailable))
	for _, f := range []struct {
		name  string
		fault func(context.Context, string) error
	}{
		{"fails", fails},
		{"hangs", fleettest.Hang},
	} {
		m.SetFault(f.fault)
		e.timeout = 20 * time.Millisecond
		if err := testutil.CollectAndCompare(e, strings.NewReader(up(0)), "meshfleet_fleet_up"); err != nil {
			t.Fatalf("service %s: %v", f.name, err)
		}
		if n := testutil.CollectAndCount(e); n != 1 {
			t.Errorf("service %s: %d series, want only meshfleet_fleet_up", f.name, n)
		}
	}
	m.SetFault(fails)
	mfs, err := NewRegistry(m, "north").Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goSeries bool
	for _, mf := range mfs {
		goSeries = goSeries || strings.HasPrefix(mf.GetName(), "go_")
	}
	if !goSeries {
		t.Error("the Go runtime series are gone too")
	}
}

// An alert that escalates keeps its series: the severity is a set of 0/1
// series beside it, never a label of the alert's own series.
func TestExporterAlertEscalationKeepsSeries(t *testing.T) {
	m := &fleettest.Memory{AlertList: []fleet.Alert{{NodeID: 7, Type: "low_memory", Severity: "warning"}}}
	before := `
# HELP meshfleet_alert_active Active alerts (value 1), by node and type; the severity is in meshfleet_alert_severity.
# TYPE meshfleet_alert_active gauge
meshfleet_alert_active{alert_type="low_memory",node_id="7"} 1
# HELP meshfleet_alert_severity Severity of an active alert: 1 for its current severity, 0 for the others.
# TYPE meshfleet_alert_severity gauge
meshfleet_alert_severity{alert_type="low_memory",node_id="7",severity="critical"} 0
meshfleet_alert_severity{alert_type="low_memory",node_id="7",severity="info"} 0
meshfleet_alert_severity{alert_type="low_memory",node_id="7",severity="warning"} 1
`
	names := []string{"meshfleet_alert_active", "meshfleet_alert_severity"}
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(before), names...); err != nil {
		t.Fatal(err)
	}
	m.AlertList[0].Severity = "critical"
	after := strings.NewReplacer(`severity="critical"} 0`, `severity="critical"} 1`, `severity="warning"} 1`, `severity="warning"} 0`).Replace(before)
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(after), names...); err != nil {
		t.Fatal(err)
	}
}

// firmware_info exists only for nodes whose version or md5 is known: a
// series with every label empty says nothing.
func TestExporterFirmwareInfoOnlyWhenKnown(t *testing.T) {
	m := &fleettest.Memory{NodeList: []fleet.Node{
		{ID: 1, Status: "online", Firmware: "meshfleet v1.2.0", Role: "gw", Hardware: "linux"},
		{ID: 2, Status: "online", FirmwareMD5: "0123456789abcdef0123456789abcdef"},
		{ID: 3, Status: "offline"},
		{ID: 4, Status: "online", Role: "sensor", Hardware: "ESP32"},
	}}
	exp := `
# HELP meshfleet_node_firmware_info Firmware of the node (value 1), for nodes whose version or md5 is known.
# TYPE meshfleet_node_firmware_info gauge
meshfleet_node_firmware_info{hardware="linux",md5="",node_id="1",role="gw",version="meshfleet v1.2.0"} 1
meshfleet_node_firmware_info{hardware="",md5="0123456789abcdef0123456789abcdef",node_id="2",role="",version=""} 1
`
	if err := testutil.CollectAndCompare(NewExporter(m), strings.NewReader(exp), "meshfleet_node_firmware_info"); err != nil {
		t.Fatal(err)
	}
}

// Two gateways, one per mesh, scraped into one Prometheus: every series
// of each carries its mesh, so the merged scrape has no two series alike,
// even when the meshes' node ids coincide and for the Go and process
// series.
func TestRegistriesOfTwoMeshesMergeWithoutDuplicates(t *testing.T) {
	nodes := []fleet.Node{{ID: 1, Status: "online", Gateway: true}, {ID: 1001, Status: "online"}}
	seen := map[string]string{}
	for _, mesh := range []string{"north", "south"} {
		mfs, err := NewRegistry(&fleettest.Memory{NodeList: nodes}, mesh).Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var labels []string
				got := ""
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
					if l.GetName() == MeshLabel {
						got = l.GetValue()
					}
				}
				if got != mesh {
					t.Fatalf("%s%v: mesh label %q, want %q", mf.GetName(), labels, got, mesh)
				}
				key := mf.GetName() + fmt.Sprint(labels)
				if other, dup := seen[key]; dup {
					t.Fatalf("series %s from mesh %s and %s", key, other, mesh)
				}
				seen[key] = mesh
			}
		}
	}
	if len(seen) < 40 {
		t.Fatalf("only %d series in both scrapes", len(seen))
	}
}
