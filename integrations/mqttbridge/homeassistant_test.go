package mqttbridge

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// A node document leaves out values the gateway does not know
// (free_memory_bytes, rssi_dbm, latency_ms, ...): every discovery template
// must render such a document without an error, and render "None", which
// Home Assistant takes as the state unknown for a numeric sensor.
func TestHomeAssistantTemplatesTolerateAbsentKeys(t *testing.T) {
	br, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := newRig(t, ctx, br.URL(), func(c *BridgeConfig) { c.HomeAssistant = true })
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
