package mqttbridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
)

// registryRequest publishes req on registry/control and waits for the
// answer with its correlation_id.
func registryRequest(t *testing.T, ctx context.Context, r *rig, req string) ControlResponse {
	t.Helper()
	var rr struct {
		CorrelationID string `json:"correlation_id"`
	}
	json.Unmarshal([]byte(req), &rr)
	if err := r.pub.Publish(ctx, "mf/registry/control", []byte(req), false); err != nil {
		t.Fatal(err)
	}
	var resp ControlResponse
	r.obs.wait(t, ctx, "mf/registry/control/response", func(p []byte) bool {
		var x ControlResponse
		json.Unmarshal(p, &x)
		if x.CorrelationID == rr.CorrelationID {
			resp = x
			return true
		}
		return false
	})
	return resp
}

func TestRegistryRequests(t *testing.T) {
	br, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	logs := &syncBuffer{}
	r := newRig(t, ctx, br.URL(), func(c *BridgeConfig) {
		c.PerNode = true
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	r.obs.wait(t, ctx, "mf/status/node/17", nil)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r.svc.Update(func(m *fleettest.Memory) {
		m.FirmwareLog = map[uint32][]fleet.FirmwareRecord{17: {{Version: "1.0", MD5: "aa", FirstSeen: t0, LastSeen: t0}}}
	})

	resp := registryRequest(t, ctx, r, `{"correlation_id":"s","action":"set","node_id":17,"name":"Shed","tags":["out"],"notes":"n"}`)
	data, _ := json.Marshal(resp.Data)
	var n fleet.Node
	if json.Unmarshal(data, &n); !resp.OK || resp.Action != "set" || n.ID != 17 || n.Name != "Shed" || len(n.Tags) != 1 || n.Notes != "n" {
		t.Fatalf("set: %+v", resp)
	}
	resp = registryRequest(t, ctx, r, `{"correlation_id":"f","action":"firmware","node_id":17}`)
	data, _ = json.Marshal(resp.Data)
	var fw fleet.FirmwareHistory
	if json.Unmarshal(data, &fw); !resp.OK || fw.NodeID != 17 || len(fw.Firmware) != 1 || fw.Firmware[0].Version != "1.0" || fw.Firmware[0].MD5 != "aa" {
		t.Fatalf("firmware: %+v", resp)
	}
	for _, c := range []struct{ req, want string }{
		{`{"correlation_id":"b1","action":"forget","node_id":3907768579}`, "online"},
		{`{"correlation_id":"b2","action":"set","node_id":17,"nmae":"x"}`, `unknown field "nmae"`},
		{`{"correlation_id":"b3","action":"set","name":"x"}`, `set needs "node_id"`},
		{`{"correlation_id":"b4","action":"rename","node_id":17}`, `unknown action "rename": one of set, forget, firmware`},
		{`{"correlation_id":"b5","node_id":17}`, `missing "action"`},
		{`{"correlation_id":"b6","action":"set","node_id":99,"name":"x"}`, "not found"},
	} {
		if resp := registryRequest(t, ctx, r, c.req); resp.OK || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s: %+v, want an error with %q", c.req, resp, c.want)
		}
	}

	// Forgotten, the node's retained document is cleared.
	if resp := registryRequest(t, ctx, r, `{"correlation_id":"g","action":"forget","node_id":17}`); !resp.OK {
		t.Fatalf("forget: %+v", resp)
	}
	r.obs.wait(t, ctx, "mf/status/node/17", func(p []byte) bool { return len(p) == 0 })
	if nodes, _ := r.svc.Nodes(ctx); len(nodes) != 2 {
		t.Fatalf("nodes after forgetting 17: %+v", nodes)
	}
	for _, want := range []string{
		`action=node.update target="node 17" result=ok`,
		`action=node.forget target="node 3907768579" result="node 3907768579 is online`,
		`action=node.forget target="node 17" result=ok`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no audit line with %s in\n%s", want, logs)
		}
	}
}

// A node forgotten elsewhere (REST) loses its retained document at the
// next publish.
func TestForgottenNodeRetainedDocumentCleared(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.PerNode = true })
	r.obs.wait(t, ctx, "mf/status/node/17", nil)
	if err := r.svc.ForgetNode(ctx, 17, false); err != nil {
		t.Fatal(err)
	}
	r.bridge.PublishAll(ctx)
	r.obs.wait(t, ctx, "mf/status/node/17", func(p []byte) bool { return len(p) == 0 })
}

func TestRegistryResponseTopicOutsideItsBaseRefused(t *testing.T) {
	ctx, r := startRig(t, nil)
	if _, err := r.pub.cm.Publish(ctx, &paho.Publish{Topic: "mf/registry/control", QoS: 1, Payload: []byte(`{"action":"forget","node_id":17}`),
		Properties: &paho.PublishProperties{ResponseTopic: "mf/to/broadcast"}}); err != nil {
		t.Fatal(err)
	}
	r.obs.wait(t, ctx, "mf/registry/control/response", func(p []byte) bool {
		return strings.Contains(string(p), `"ok":false`) && strings.Contains(string(p), "replies go only to mf/registry/control/response")
	})
	if nodes, _ := r.svc.Nodes(ctx); len(nodes) != 3 {
		t.Fatal("a refused request was run")
	}
}

// ota/control start takes the registry's targets and the queue.
func TestStartTakesRegistryTargets(t *testing.T) {
	ctx, r := startRig(t, nil)
	r.svc.Update(func(m *fleettest.Memory) { m.ImageList = []fleet.Image{{ID: "img1", MD5: "aa"}} })
	resp := request(t, ctx, r, `{"correlation_id":"s","action":"start","image":"img1","tags":["east"],"names":["Shed"],"outdated":true,"max_concurrent":2}`)
	if !resp.OK {
		t.Fatalf("start: %+v", resp)
	}
	r.svc.Update(func(m *fleettest.Memory) {
		q := m.Requests[0]
		if q.Tags[0] != "east" || q.Names[0] != "Shed" || !q.Outdated || q.MaxConcurrent != 2 {
			t.Errorf("request %+v", q)
		}
	})
}

// Registry requests follow the roles: an operator writes them, a viewer
// does not, and nobody but the gateway writes the answers.
func TestBrokerRegistryACL(t *testing.T) {
	b, _ := securedBroker(t, BrokerTLS{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := mustDial(t, ctx, b.Addr(), "alice", dialOpts{user: "alice", pass: "alice-pw"})
	vera := mustDial(t, ctx, b.Addr(), "vera", dialOpts{user: "vera", pass: "vera-pw"})
	if err := vera.publish(ctx, "mf/registry/control", "{}", false); err == nil {
		t.Error("viewer published a registry request")
	}
	if err := alice.publish(ctx, "mf/registry/control", "{}", false); err != nil {
		t.Errorf("operator registry request: %v", err)
	}
	for _, topic := range []string{"mf/registry/control/response", "mf/registry/control/response/alice"} {
		if err := alice.publish(ctx, topic, "spoof", false); err == nil {
			t.Errorf("operator published to the gateway's topic %s", topic)
		}
	}
}
