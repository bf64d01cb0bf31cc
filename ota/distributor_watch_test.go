package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// A stock receiver's reboot seen from a layout change ends a campaign
// whose listed nodes are then all through at once, not at the next tick
// (which may be the next announce, a minute later).
func TestStockRebootSeenFromLayoutEndsCampaignAtOnce(t *testing.T) {
	full := protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}}}
	h := &fakeHost{id: 1, tree: full}
	d := NewDistributor(DistributorConfig{Unpaced: true})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: make([]byte, 2000)}, Mode: ModeStock, Nodes: []uint32{2}})
	if err != nil {
		t.Fatal(err)
	}
	for part := range uint32(2) {
		q := &protocol.DataRequest{Announce: protocol.Announce{From: 2, Routing: protocol.RouteSingle, MD5: c.Image.MD5, Role: "sensor", Hardware: "ESP8266", NoPart: 2}, Dest: 1, PartNo: part}
		raw := protocol.Encode(q)
		hd, err := protocol.ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Millisecond)
		d.HandlePackage(now, 1, hd, raw)
	}
	now = now.Add(2 * time.Second)
	h.tree = full.Without(2)
	d.OnEvent(now, mesh.DroppedConnection{NodeID: 2})
	now = now.Add(100 * time.Millisecond)
	h.tree = full
	d.OnEvent(now, mesh.NewConnection{NodeID: 2})
	if p, _ := c.Node(2); p.State != StateInstalled {
		t.Fatalf("node 2: %s, want installed", p.State)
	}
	if c.State != CampaignCompleted {
		t.Fatalf("campaign %s once its only node installed, want completed at once", c.State)
	}
}
