package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
)

// Home Assistant's install action on one node's update entity updates
// that node, and only it, on a simulated mesh; the entity shows the new
// version as installed afterwards.
func TestGatewayHomeAssistantInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.HomeAssistant.Enabled = true
	const devices = 4
	g, sm, done := startSimGateway(t, ctx, cfg, devices)
	waitReady(t, ctx, g, done)
	rec, c := observe(t, ctx, brokerURL(g), "test")

	const node = "1001"
	if got := string(rec.waitFor(t, ctx, "mf/status/node/"+node+"/availability", nil)); got != "online" {
		t.Fatalf("availability %q, want online", got)
	}
	img := compress.FirmwareLike(24<<10, 5)
	stored := uploadREST(t, g, "sensor", "ESP32", "3.1.0", img)
	state := rec.waitFor(t, ctx, "mf/status/node/"+node+"/update", func(p []byte) bool {
		return strings.Contains(string(p), `"latest_version":"3.1.0"`) && !strings.Contains(string(p), `"installed_version":"3.1.0"`)
	})
	t.Logf("before: %s", state)

	if err := c.Publish(ctx, "mf/ota/install/"+node, []byte("install"), false); err != nil {
		t.Fatal(err)
	}
	// A campaign of the newest image for that node only (the entity's
	// progress, a passing state, is checked by the bridge's own tests).
	rec.waitFor(t, ctx, "mf/ota/status", func(p []byte) bool {
		var ev struct{ Campaign fleet.Campaign }
		json.Unmarshal(p, &ev)
		c := ev.Campaign
		return c.Image.ID == stored.ID && len(c.Targets) == 1 && c.Targets[0] == 1001
	})
	rec.waitFor(t, ctx, "mf/status/node/"+node+"/update", func(p []byte) bool {
		var st struct {
			Installed  *string `json:"installed_version"`
			InProgress bool    `json:"in_progress"`
		}
		json.Unmarshal(p, &st)
		return st.Installed != nil && *st.Installed == "3.1.0" && !st.InProgress
	})
	for id, st := range sm.Stores {
		running, _ := st.Active()
		if updated := running == stored.MD5; updated != (id == 1001) {
			t.Errorf("device %d runs %s; only %s should run the new image %s", id, running, node, stored.MD5)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
