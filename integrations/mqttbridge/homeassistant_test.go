package mqttbridge

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

// A node document leaves out values the gateway does not know
// (free_memory_bytes, rssi_dbm, latency_ms, ...): every discovery template
// must render such a document without an error, and render "None", which
// Home Assistant takes as the state unknown for a numeric sensor.
func TestHomeAssistantTemplatesTolerateAbsentKeys(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.HomeAssistant = true })
	// Node 17 is known only from the layout: nothing measured.
	var doc map[string]any
	data, _ := json.Marshal(fleet.Node{ID: 17, Status: "offline"})
	json.Unmarshal(data, &doc)
	for _, s := range haSensors {
		payload := r.obs.wait(t, ctx, "homeassistant/sensor/meshfleet_17_"+s.key+"/config", nil)
		var cfg haSensor
		if err := json.Unmarshal(payload, &cfg); err != nil {
			t.Fatal(err)
		}
		want := "{{ value_json." + s.key + " }}"
		if _, present := doc[s.key]; !present {
			want = "{{ value_json." + s.key + " | default(None) }}"
		}
		if cfg.ValueTemplate != want {
			t.Errorf("%s: value_template %q, want %q for %s", s.key, cfg.ValueTemplate, want, data)
		}
	}
}

// Every node gets a Home Assistant update entity (installed and latest
// version, progress, an install command) and its own availability topic,
// which its sensors and update entity use besides the gateway's.
func TestHomeAssistantUpdateEntity(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.HomeAssistant = true })
	const node = "3907768579"
	r.svc.Update(func(m *fleettest.Memory) {
		m.ImageList = []fleet.Image{
			{ID: "old", Role: "sensor", Hardware: "ESP32", Version: "1.2.3", MD5: "aa"},
			{ID: "new", Role: "sensor", Hardware: "ESP32", Version: "1.10.0", MD5: "bb"},
			{ID: "other", Role: "relay", Hardware: "ESP32", Version: "9.0.0", MD5: "cc"},
		}
	})
	r.bridge.PublishAll(ctx)

	var cfg haUpdate
	json.Unmarshal(r.obs.wait(t, ctx, "homeassistant/update/meshfleet_"+node+"_firmware/config", nil), &cfg)
	if cfg.CommandTopic != "mf/ota/install/"+node || cfg.PayloadInstall != "install" || cfg.StateTopic != "mf/status/node/"+node+"/update" ||
		cfg.DeviceClass != "firmware" || cfg.AvailabilityMode != "all" || len(cfg.Availability) != 2 ||
		cfg.Availability[0].Topic != "mf/bridge/state" || cfg.Availability[1].Topic != "mf/status/node/"+node+"/availability" {
		t.Fatalf("update entity config: %+v", cfg)
	}
	var sensor haSensor
	json.Unmarshal(r.obs.wait(t, ctx, "homeassistant/sensor/meshfleet_17_health/config", nil), &sensor)
	if sensor.AvailabilityMode != "all" || len(sensor.Availability) != 2 || sensor.Availability[1].Topic != "mf/status/node/17/availability" {
		t.Fatalf("sensor availability: %+v", sensor)
	}
	if got := string(r.obs.wait(t, ctx, "mf/status/node/17/availability", nil)); got != "offline" {
		t.Errorf("node 17 availability %q, want offline", got)
	}
	if got := string(r.obs.wait(t, ctx, "mf/status/node/"+node+"/availability", nil)); got != "online" {
		t.Errorf("node %s availability %q, want online", node, got)
	}
	// Once the images are known: 1.10.0 is newer than 1.2.3.
	state := r.obs.wait(t, ctx, "mf/status/node/"+node+"/update", func(p []byte) bool { return strings.Contains(string(p), `"latest_version":"1.10.0"`) })
	if want := `{"installed_version":"1.2.3","latest_version":"1.10.0","title":"sensor firmware (ESP32)","in_progress":false,"update_percentage":null}`; string(state) != want {
		t.Errorf("update state\n got %s\nwant %s", state, want)
	}

	// Install: a campaign of the newest image for that node only.
	if err := r.pub.Publish(ctx, "mf/ota/install/"+node, []byte("install"), false); err != nil {
		t.Fatal(err)
	}
	var started struct{ Campaign fleet.Campaign }
	json.Unmarshal(r.obs.wait(t, ctx, "mf/ota/status", func(p []byte) bool { return strings.Contains(string(p), `"campaign"`) }), &started)
	if c := started.Campaign; c.Image.ID != "new" || len(c.Targets) != 1 || c.Targets[0] != 3907768579 {
		t.Fatalf("install started %+v, want image new for node %s only", c, node)
	}
	// Progress shows live, by whole percents.
	r.svc.Publish(fleet.Event{Progress: &fleet.Progress{NodeID: 3907768579, Campaign: started.Campaign.ID, State: "downloading", Chunks: 5, Total: 8}})
	state = r.obs.wait(t, ctx, "mf/status/node/"+node+"/update", func(p []byte) bool { return strings.Contains(string(p), `"in_progress":true`) })
	if !strings.Contains(string(state), `"update_percentage":62.5`) {
		t.Errorf("progress state %s, want 62.5%%", state)
	}
}

// The install command refuses what it cannot do, with a reason, and
// starts nothing.
func TestHomeAssistantInstallRefusals(t *testing.T) {
	svc := &fleettest.Memory{
		NodeList: []fleet.Node{
			{ID: 5, Status: "online", Role: "sensor", Hardware: "ESP32", Firmware: "2.0.0", FirmwareMD5: "bb"},
			{ID: 6, Status: "online"},
			{ID: 7, Status: "online", Role: "sensor", Hardware: "ESP32", Firmware: "3.0.0"},
		},
		ImageList: []fleet.Image{{ID: "new", Role: "sensor", Hardware: "ESP32", Version: "2.0.0", MD5: "bb"}},
	}
	b := NewBridge(svc, nil, BridgeConfig{Prefix: "mf", HomeAssistant: true})
	ctx := context.Background()
	for _, tc := range []struct{ target, payload, want string }{
		{"5", "remove", `payload "remove" is not "install"`},
		{"x", "install", `"x" is not a node id`},
		{"0", "install", `"0" is not a node id`},
		{"99", "install", "not found"},
		{"6", "install", "no stored image for it"},
		{"5", "install", "no stored image is newer"},
		{"7", "install", "no stored image is newer"}, // runs a newer version than stored: no downgrade
	} {
		_, err := b.install(ctx, tc.target, tc.payload)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("install %s %q: %v, want %q", tc.target, tc.payload, err, tc.want)
		}
	}
	if cs, _ := svc.Campaigns(ctx); len(cs) != 0 {
		t.Errorf("refused installs started %d campaigns", len(cs))
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1.10.0", "1.9.2", 1}, {"1.2.3", "1.2.3", 0}, {"v2", "1.9", 1}, {"1.2", "1.2.1", -1},
		{"1.2.0-rc1", "1.2.0-rc2", -1}, {"", "0.1", -1}, {"2.0.0", "10.0.0", -1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// A forgotten node leaves Home Assistant: its discovery configs,
// availability and update state are cleared (empty retained messages).
func TestForgottenNodeLeavesHomeAssistant(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.HomeAssistant = true })
	r.obs.wait(t, ctx, "homeassistant/update/meshfleet_17_firmware/config", nil)
	if err := r.svc.ForgetNode(ctx, 17, false); err != nil {
		t.Fatal(err)
	}
	r.bridge.PublishAll(ctx)
	empty := func(p []byte) bool { return len(p) == 0 }
	for _, topic := range []string{"mf/status/node/17", "mf/status/node/17/availability", "mf/status/node/17/update",
		"homeassistant/update/meshfleet_17_firmware/config", "homeassistant/sensor/meshfleet_17_health/config"} {
		r.obs.wait(t, ctx, topic, empty)
	}
}
