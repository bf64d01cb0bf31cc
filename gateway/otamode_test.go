package gateway

import (
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/ota"
)

// With ota.mode auto (the default), a campaign that names no mode runs
// stock-turbo when its targets are stock nodes (in the mesh, naming no
// role, never sending our status packages) and no meshfleet node of the
// role and hardware is there; broadcast otherwise, and always with a node list or
// a compression for Go receivers.
func TestAutoModeFollowsTheTargets(t *testing.T) {
	gw := fleet.Node{ID: 1, Status: "online", Gateway: true}
	stock := fleet.Node{ID: 7, Status: "online"}
	stockStatus := fleet.Node{ID: 11, Status: "online", Source: "status-604"}
	statusOnly := fleet.Node{ID: 12, Status: "online", Source: "telemetry"} // a meshfleet node without an OTA receiver
	ours := fleet.Node{ID: 8, Status: "online", Role: "sensor", Hardware: "ESP8266"}
	other := fleet.Node{ID: 9, Status: "online", Role: "light", Hardware: "ESP32"}
	gone := fleet.Node{ID: 10, Status: "offline"}
	for _, c := range []struct {
		name     string
		nodes    []fleet.Node
		listed   []uint32
		compress string
		want     ota.Mode
	}{
		{"stock nodes only", []fleet.Node{gw, stock}, nil, "", ota.ModeStockTurbo},
		{"a stock node that sends stock status", []fleet.Node{gw, stockStatus}, nil, "", ota.ModeStockTurbo},
		{"a meshfleet node without a role", []fleet.Node{gw, statusOnly}, nil, "", ota.ModeBroadcast},
		{"stock nodes and meshfleet nodes of another role", []fleet.Node{gw, stock, other}, nil, "", ota.ModeStockTurbo},
		{"meshfleet nodes of the role", []fleet.Node{gw, ours}, nil, "", ota.ModeBroadcast},
		{"both kinds", []fleet.Node{gw, stock, ours}, nil, "", ota.ModeBroadcast},
		{"nobody but offline nodes", []fleet.Node{gw, gone}, nil, "", ota.ModeBroadcast},
		{"a node list", []fleet.Node{gw, stock}, []uint32{7}, "", ota.ModeBroadcast},
		{"compression asked for", []fleet.Node{gw, stock}, nil, "deflate", ota.ModeBroadcast},
		{"no compression asked for", []fleet.Node{gw, stock}, nil, "none", ota.ModeStockTurbo},
	} {
		if got := autoMode(c.nodes, "sensor", "ESP8266", len(c.listed) > 0, c.compress); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// Registry targets and queues pick nodes as a node list does.
func TestSelectsNodes(t *testing.T) {
	for _, req := range []fleet.CampaignRequest{{Nodes: []uint32{7}}, {Tags: []string{"kitchen"}}, {Names: []string{"pump"}},
		{Outdated: true}, {MaxConcurrent: 2}} {
		if !selectsNodes(req) {
			t.Errorf("%+v selects no nodes, want it to (stock-turbo cannot serve it)", req)
		}
	}
	if selectsNodes(fleet.CampaignRequest{Image: "x", Role: "sensor"}) {
		t.Error("a role alone selects nodes")
	}
}

func TestAutoModeIsTheDefault(t *testing.T) {
	c := DefaultConfig()
	if c.OTA.Mode != "auto" {
		t.Fatalf("default ota.mode %q, want auto", c.OTA.Mode)
	}
	c.Node.ID = 1
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.OTA.Mode = "fastest"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "auto, stock, stock-turbo") {
		t.Fatalf("ota.mode fastest: %v; want the valid modes named", err)
	}
}
