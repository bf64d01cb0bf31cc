package gateway

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
)

// A listed node that dies for good does not keep its campaign running:
// after ota.lost_after of silence (virtual time) it is lost, with the
// reason, and REST shows the campaign failed with it counted.
func TestCampaignWithADeadNodeEndsWithItLost(t *testing.T) {
	const devices = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	cfg.OTA.LostAfter = Duration(time.Minute)
	g, sm, done := startSimGateway(t, ctx, cfg, devices)
	stopOnCleanup(t, cancel, done)
	waitReady(t, ctx, g, done)
	waitDevicesOnline(t, ctx, g, devices)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(8<<10, 41))
	dead := lastDevice(cfg, devices)
	crashDevice(t, ctx, sm, dead)
	var nodes []uint32
	for i := range devices {
		nodes = append(nodes, cfg.Node.ID+1000+uint32(i))
	}
	c := startREST(t, g, fleet.CampaignRequest{Image: img.ID, Mode: "broadcast", Nodes: nodes})

	events := g.Subscribe(ctx)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for c.State == "running" {
		select {
		case <-events:
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("campaign still %s: %+v", c.State, c.Nodes)
		}
		got, err := g.Campaign(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		c = got
	}
	p := c.Nodes[strconv.FormatUint(uint64(dead), 10)]
	if p.State != "lost" || !strings.Contains(p.Error, "not in the mesh") {
		t.Fatalf("dead node %d: %+v, want lost, not in the mesh", dead, p)
	}
	if c.State != "failed" || !strings.Contains(c.Reason, "1 of 3 nodes lost") || c.Completed != 2 || c.Failed != 1 {
		t.Fatalf("campaign %s (%q), %d completed, %d failed: want failed, 1 of 3 nodes lost, 2 and 1", c.State, c.Reason, c.Completed, c.Failed)
	}
}
