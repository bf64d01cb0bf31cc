package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/scenario"
)

// meshUnderTest is one mesh of the two-gateway test: its gateway, its
// simulated devices and its id.
type meshUnderTest struct {
	id   string
	cfg  Config
	g    *Gateway
	sm   *scenario.Live
	done chan error
}

// TestTwoMeshesOneBroker runs two gateways, each on its own simulated
// mesh, into one Mosquitto broker. The two meshes have the same node ids
// (gateway 1, devices 1001...), the worst case for collisions. Each
// mesh's nodes appear under its own topics and Home Assistant ids, a
// campaign sent to one mesh's control topic runs only there, one sent on
// the shared control topic to both runs on both, the two /metrics
// scrapes merged have no series twice, and one gateway's last will is
// its own.
func TestTwoMeshesOneBroker(t *testing.T) {
	broker := startMosquitto(t)
	// North reaches the broker through a proxy that can cut it off, for
	// its last will.
	northLink := startProxy(t, broker.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const devices = 4
	var meshes []*meshUnderTest
	for i, id := range []string{"north", "south"} {
		cfg := testConfig(t)
		cfg.Mesh.ID = id
		cfg.MQTT.URL = broker.URL()
		if id == "north" {
			cfg.MQTT.URL = northLink.URL()
		}
		cfg.MQTT.HomeAssistant.Enabled = true
		m := &meshUnderTest{id: id, cfg: cfg}
		m.g, m.sm, m.done = startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: devices, Seed: uint64(11 + i), Speed: 25, Model: "esp32"}, nil)
		meshes = append(meshes, m)
	}
	for _, m := range meshes {
		waitReady(t, ctx, m.g, m.done)
	}
	rec, c := observe(t, ctx, broker.URL(), "observer")

	// Each mesh's nodes, all online, under its own topics.
	for _, m := range meshes {
		root := "mf/" + m.id
		rec.waitFor(t, ctx, root+"/bridge/state", func(p []byte) bool { return string(p) == "online" })
		var nodes mqttbridge.NodesPayload
		json.Unmarshal(rec.waitFor(t, ctx, root+"/status/nodes", func(p []byte) bool {
			var n mqttbridge.NodesPayload
			json.Unmarshal(p, &n)
			online := 0
			for _, e := range n.Nodes {
				if e.Status == "online" {
					online++
				}
			}
			return n.NodeCount == devices+1 && online == devices+1
		}), &nodes)
		if nodes.MeshID != m.id {
			t.Errorf("%s/status/nodes says mesh_id %q", root, nodes.MeshID)
		}
		for i := range devices {
			rec.waitFor(t, ctx, fmt.Sprintf("%s/status/node/%d", root, 1001+i), nil)
			rec.waitFor(t, ctx, fmt.Sprintf("homeassistant/sensor/meshfleet_%s_%d_health/config", m.id, 1001+i), nil)
		}
	}
	// Nothing of either mesh went anywhere else, and no two Home
	// Assistant entities share an id.
	uniqueIDs := map[string]string{}
	for _, msg := range rec.snapshot() {
		switch {
		case strings.HasPrefix(msg.Topic, "mf/north/"), strings.HasPrefix(msg.Topic, "mf/south/"):
		case strings.HasPrefix(msg.Topic, "homeassistant/"):
			var cfg struct {
				UniqueID string `json:"unique_id"`
				State    string `json:"state_topic"`
			}
			if len(msg.Payload) == 0 {
				continue
			}
			if err := json.Unmarshal(msg.Payload, &cfg); err != nil || cfg.UniqueID == "" {
				t.Fatalf("%s: %s", msg.Topic, msg.Payload)
			}
			if prev, dup := uniqueIDs[cfg.UniqueID]; dup && prev != msg.Topic {
				t.Fatalf("unique_id %s on %s and %s", cfg.UniqueID, prev, msg.Topic)
			}
			uniqueIDs[cfg.UniqueID] = msg.Topic
			mesh := strings.Split(strings.TrimPrefix(cfg.UniqueID, "meshfleet_"), "_")[0]
			if !strings.HasPrefix(cfg.State, "mf/"+mesh+"/") {
				t.Fatalf("entity %s reads %s, outside its mesh", cfg.UniqueID, cfg.State)
			}
		default:
			t.Fatalf("a message outside the meshes' topics: %s %s", msg.Topic, msg.Payload)
		}
	}

	// The same two images in both gateways' stores.
	imgA, imgB := compress.FirmwareLike(16<<10, 21), compress.FirmwareLike(16<<10, 22)
	for _, m := range meshes {
		for i, img := range [][]byte{imgA, imgB} {
			if _, _, err := m.g.AddImage(ctx, fleet.ImageUpload{Role: "sensor", Hardware: "ESP32", Version: fmt.Sprintf("3.0.%d", i)}, bytes.NewReader(img)); err != nil {
				t.Fatal(err)
			}
		}
	}
	md5of := func(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }
	request := func(topic, responses string, req map[string]any, answers int) []mqttbridge.ControlResponse {
		t.Helper()
		mark := rec.mark()
		data, _ := json.Marshal(req)
		if err := c.Publish(ctx, topic, data, false); err != nil {
			t.Fatal(err)
		}
		var got []mqttbridge.ControlResponse
		for len(got) < answers {
			_, at := rec.waitSince(t, ctx, mark, responses, func(p []byte) bool {
				var r mqttbridge.ControlResponse
				json.Unmarshal(p, &r)
				if r.CorrelationID != req["correlation_id"] {
					return false
				}
				got = append(got, r)
				return true
			})
			mark = at + 1
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Mesh < got[j].Mesh })
		return got
	}
	completed := func(m *meshUnderTest, campaign string) {
		t.Helper()
		for {
			var camp fleet.Campaign
			getJSON(t, "http://"+m.g.HTTPAddr+"/api/v1/ota/"+campaign, &camp)
			if camp.Completed == devices {
				return
			}
			if camp.Failed > 0 {
				t.Fatalf("mesh %s: campaign failed on some nodes: %+v", m.id, camp)
			}
			select {
			case <-rec.ch:
			case <-ctx.Done():
				t.Fatalf("mesh %s: campaign did not complete: %+v", m.id, camp)
			}
		}
	}
	running := func(m *meshUnderTest, want string) int {
		n := 0
		for id, st := range m.sm.Stores {
			if id == m.cfg.Node.ID {
				continue
			}
			if md5hex, _ := st.Active(); md5hex == want {
				n++
			}
		}
		return n
	}

	// A campaign to one mesh, on its own control topic, runs only there.
	north, south := meshes[0], meshes[1]
	r := request("mf/north/ota/control", "mf/north/ota/control/response",
		map[string]any{"correlation_id": "one", "action": "start", "image": md5of(imgA), "mode": "broadcast"}, 1)
	if !r[0].OK || r[0].Mesh != "north" {
		t.Fatalf("start on north: %+v", r[0])
	}
	completed(north, r[0].Data.(map[string]any)["id"].(string))
	if n := running(north, md5of(imgA)); n != devices {
		t.Fatalf("%d of north's %d devices run image A", n, devices)
	}
	var southCampaigns []fleet.Campaign
	getJSON(t, "http://"+south.g.HTTPAddr+"/api/v1/ota", &southCampaigns)
	if len(southCampaigns) != 0 || running(south, md5of(imgA)) != 0 {
		t.Fatalf("a campaign for north ran on south: %+v", southCampaigns)
	}

	// On the shared topic a request runs only on the meshes it names. Each
	// gateway takes the shared topic's requests in the order sent, so once
	// both answered a later request, north would have answered this one.
	mark := rec.mark()
	if r := request("mf/all/ota/control", "mf/all/ota/control/response",
		map[string]any{"correlation_id": "south only", "action": "list", "meshes": []string{"south"}}, 1); !r[0].OK || r[0].Mesh != "south" {
		t.Fatalf("shared list for south: %+v", r)
	}
	request("mf/all/ota/control", "mf/all/ota/control/response", map[string]any{"correlation_id": "everyone", "action": "list", "meshes": []string{"*"}}, 2)
	for _, msg := range rec.snapshot()[mark:] {
		if msg.Topic == "mf/all/ota/control/response" && strings.Contains(string(msg.Payload), `"mesh":"north"`) && strings.Contains(string(msg.Payload), `"south only"`) {
			t.Fatalf("north answered a request for south: %s", msg.Payload)
		}
	}

	// One request on the shared control topic for both meshes: each
	// gateway answers for its own mesh, and the image reaches both.
	rs := request("mf/all/ota/control", "mf/all/ota/control/response",
		map[string]any{"correlation_id": "both", "action": "start", "image": md5of(imgB), "mode": "broadcast", "meshes": []string{"north", "south"}}, 2)
	for i, m := range meshes {
		if !rs[i].OK || rs[i].Mesh != m.id {
			t.Fatalf("shared start, answer %d: %+v", i, rs[i])
		}
		completed(m, rs[i].Data.(map[string]any)["id"].(string))
		if n := running(m, md5of(imgB)); n != devices {
			t.Fatalf("%d of %s's %d devices run image B", n, m.id, devices)
		}
	}

	// One Prometheus scraping both gateways: every series names its mesh,
	// none is there twice, and each mesh's node 1001 is there.
	series := map[string]string{}
	for _, m := range meshes {
		resp, err := http.Get("http://" + m.g.HTTPAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for name, mf := range families {
			for _, metric := range mf.GetMetric() {
				labels := model.LabelSet{model.MetricNameLabel: model.LabelValue(name)}
				for _, l := range metric.GetLabel() {
					labels[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
				}
				if string(labels["mesh"]) != m.id {
					t.Fatalf("%s from mesh %s has mesh=%q", labels, m.id, labels["mesh"])
				}
				key := labels.String()
				if other, dup := series[key]; dup {
					t.Fatalf("series %s from both %s and %s", key, other, m.id)
				}
				series[key] = m.id
			}
		}
		up := model.LabelSet{model.MetricNameLabel: "meshfleet_node_up", "mesh": model.LabelValue(m.id), "node_id": "1001"}
		if _, ok := series[up.String()]; !ok {
			t.Fatalf("no meshfleet_node_up of node 1001 in mesh %s", m.id)
		}
	}

	// North's connection breaks without a goodbye: the broker publishes
	// its last will, on its own topic only, and it comes back.
	mark = rec.mark()
	if northLink.sever() == 0 {
		t.Fatal("north had no connection through the proxy")
	}
	_, at := rec.waitSince(t, ctx, mark, "mf/north/bridge/state", func(p []byte) bool { return string(p) == "offline" })
	rec.waitSince(t, ctx, at+1, "mf/north/bridge/state", func(p []byte) bool { return string(p) == "online" })
	for _, msg := range rec.snapshot()[mark:] {
		if msg.Topic == "mf/south/bridge/state" && string(msg.Payload) != "online" {
			t.Fatalf("north's will reached south: %s %s", msg.Topic, msg.Payload)
		}
	}

	cancel()
	for _, m := range meshes {
		if err := <-m.done; err != nil {
			t.Fatalf("Run %s: %v", m.id, err)
		}
	}
}

// snapshot is every message recorded so far.
func (r *recorder) snapshot() []mqttbridge.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]mqttbridge.Message(nil), r.msgs...)
}
