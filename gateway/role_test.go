package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
)

// A campaign's role follows the rule of the firmware store: REST refuses
// a role that `meshfleet firmware add` would refuse.
func TestCampaignRoleFollowsTheImageRule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	g, _, done := startSimGateway(t, runCtx, testConfig(t), 2)
	defer func() {
		stop()
		<-done // the gateway saves its state before the test's directory goes
	}()
	waitReady(t, ctx, g, done)
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(4<<10, 5))
	data, _ := json.Marshal(fleet.CampaignRequest{Image: img.ID, Role: "my_sensor"})
	code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota", "application/json", data)
	if code != http.StatusBadRequest || !strings.Contains(body, `role \"my_sensor\" contains \"_\"`) {
		t.Fatalf("campaign for role my_sensor: %d %s, want 400 naming the role", code, body)
	}
}
