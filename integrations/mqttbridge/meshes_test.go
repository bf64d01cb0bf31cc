package mqttbridge

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// A gateway with a mesh id answers on the shared control topic only what
// names its mesh, refuses there what belongs to one gateway (uploads) and
// what names no mesh, and on its own topic refuses a request for other
// meshes; a broken document or a response topic elsewhere is answered on
// the shared reply topic, never published where the requester pointed.
func TestSharedControlTopic(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.Prefix, c.SharedPrefix, c.MeshID = "mf/north", "mf", "north" })
	// The observer sees the bridge's first status: it is subscribed.
	if nodes := r.obs.wait(t, ctx, "mf/north/status/nodes", nil); !strings.Contains(string(nodes), `"mesh_id":"north"`) {
		t.Fatalf("status/nodes: %s", nodes)
	}
	ask := func(topic, corr, req, responseTopic string) ControlResponse {
		t.Helper()
		p := &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(req)}
		if responseTopic != "" {
			p.Properties = &paho.PublishProperties{ResponseTopic: responseTopic}
		}
		if _, err := r.pub.cm.Publish(ctx, p); err != nil {
			t.Fatal(err)
		}
		reply := "mf/all/ota/control/response"
		if topic == "mf/north/ota/control" {
			reply = "mf/north/ota/control/response"
		}
		var resp ControlResponse
		r.obs.wait(t, ctx, reply, func(p []byte) bool {
			var x ControlResponse
			json.Unmarshal(p, &x)
			if x.CorrelationID == corr {
				resp = x
				return true
			}
			return false
		})
		return resp
	}
	for _, c := range []struct{ topic, corr, req, responseTopic, want string }{
		{"mf/all/ota/control", "none", `{"correlation_id":"none","action":"list"}`, "", `meshes is required on mf/all/ota/control`},
		{"mf/all/ota/control", "up", `{"correlation_id":"up","action":"upload_begin","meshes":["*"]}`, "", `upload_begin: uploads go to each mesh's own control topic (mf/north/ota/control)`},
		{"mf/all/ota/control", "bad", `{"correlation_id":"bad","action":"list","meshes":"north"}`, "", `request is not a valid control document`},
		{"mf/all/ota/control", "rt", `{"correlation_id":"rt","action":"list","meshes":["north"]}`, "mf/to/broadcast", `response topic "mf/to/broadcast" refused`},
		{"mf/north/ota/control", "other", `{"correlation_id":"other","action":"list","meshes":["south"]}`, "", `meshes ["south"] does not name this mesh (north); to address several meshes publish on mf/all/ota/control`},
	} {
		resp := ask(c.topic, c.corr, c.req, c.responseTopic)
		if resp.OK || resp.Mesh != "north" || !strings.Contains(resp.Error, c.want) {
			t.Errorf("%s %s: %+v, want an error from north with %q", c.topic, c.req, resp, c.want)
		}
	}
	// Named, alone or among others, or by "*": run.
	for i, meshes := range []string{`["north"]`, `["south","north"]`, `["*"]`} {
		corr := "ok" + itoa(i)
		if resp := ask("mf/all/ota/control", corr, `{"correlation_id":"`+corr+`","action":"list","meshes":`+meshes+`}`, ""); !resp.OK || resp.Mesh != "north" {
			t.Errorf("meshes %s: %+v", meshes, resp)
		}
	}
	r.obs.mu.Lock()
	defer r.obs.mu.Unlock()
	for _, m := range r.obs.msgs {
		if strings.HasPrefix(m.Topic, "mf/to/") {
			t.Errorf("published into the mesh: %s %s", m.Topic, m.Payload)
		}
	}
	if sent := r.svc.SentMessages(); len(sent) != 0 {
		t.Fatalf("sent into the mesh: %q", sent)
	}
}
