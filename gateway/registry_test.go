package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/scenario"
)

// nodeREST is node id's document over REST.
func nodeREST(t *testing.T, g *Gateway, id uint32) fleet.Node {
	t.Helper()
	var n fleet.Node
	getJSON(t, fmt.Sprintf("http://%s/api/v1/nodes/%d", g.HTTPAddr, id), &n)
	return n
}

// nodesWhere matches a status/nodes document whose node id satisfies pred.
func nodesWhere(id uint32, pred func(fleet.Node) bool) func([]byte) bool {
	return func(p []byte) bool {
		var np mqttbridge.NodesPayload
		if json.Unmarshal(p, &np) != nil {
			return false
		}
		for _, n := range np.Nodes {
			if n.ID == id {
				return pred(n)
			}
		}
		return false
	}
}

// The registry on a simulated mesh: a name, tags and notes set over REST
// show in the node documents of REST and MQTT, bad ones are refused with
// the bound they break, the firmware history has what the node runs; a
// node online is forgotten only when forced, a dead one at once; the
// registry survives a restart, and a forgotten node that comes back is a
// new entry.
func TestRegistryOnASimulatedMesh(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	const devices = 3
	sc := scenario.LiveConfig{Nodes: devices, Seed: 5, Speed: 25, Model: "esp32", Epoch: time.Now().UTC().Truncate(time.Second)}
	runCtx, stop := context.WithCancel(ctx)
	g, sm, done := startSimGatewayWith(t, runCtx, cfg, sc, nil)
	waitReady(t, ctx, g, done)
	rec, mc := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", allOnline(devices+1))
	first, victim := cfg.Node.ID+1000, lastDevice(cfg, devices)
	// ask sends a registry request over MQTT and returns its answer.
	ask := func(req string) mqttbridge.ControlResponse {
		t.Helper()
		from := rec.mark()
		if err := mc.Publish(ctx, "mf/registry/control", []byte(req), false); err != nil {
			t.Fatal(err)
		}
		var resp mqttbridge.ControlResponse
		json.Unmarshal(func() []byte {
			p, _ := rec.waitSince(t, ctx, from, "mf/registry/control/response", nil)
			return p
		}(), &resp)
		return resp
	}
	base := "http://" + g.HTTPAddr + "/api/v1/nodes/"

	code, body := call(t, "PATCH", base+fmt.Sprint(first), "application/json", []byte(`{"name":"Pump house","tags":["east","well"],"notes":"behind the barn"}`))
	var named fleet.Node
	if code != http.StatusOK || json.Unmarshal([]byte(body), &named) != nil || named.Name != "Pump house" || len(named.Tags) != 2 || named.FirstSeen.IsZero() || named.Status != "online" {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	for _, c := range []struct {
		id         uint32
		body, want string
		code       int
	}{
		{victim, `{"name":"pump HOUSE"}`, "names are unique", http.StatusConflict},
		{victim, `{"name":"` + strings.Repeat("n", 65) + `"}`, "name: 65 bytes, at most 64", http.StatusBadRequest},
		{victim, `{"tags":["has space"]}`, "only letters, digits", http.StatusBadRequest},
		{424242, `{"name":"ghost"}`, "never seen", http.StatusNotFound},
	} {
		if code, body := call(t, "PATCH", base+fmt.Sprint(c.id), "application/json", []byte(c.body)); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("PATCH %d %s: %d %s, want %d %q", c.id, c.body, code, body, c.code, c.want)
		}
	}
	rec.waitFor(t, ctx, "mf/status/nodes", nodesWhere(first, func(n fleet.Node) bool { return n.Name == "Pump house" && n.Notes == "behind the barn" }))
	rec.waitFor(t, ctx, fmt.Sprintf("mf/status/node/%d", first), func(p []byte) bool { return strings.Contains(string(p), `"name":"Pump house"`) })

	// The firmware history has what the node reported running: wait for
	// its report, which may come after the node is online.
	rec.waitFor(t, ctx, "mf/status/nodes", nodesWhere(first, func(n fleet.Node) bool { return n.Firmware == "1.0.0" }))
	var fw fleet.FirmwareHistory
	getJSON(t, base+fmt.Sprint(first)+"/firmware", &fw)
	if len(fw.Firmware) != 1 || fw.Firmware[0].Version != "1.0.0" || fw.Firmware[0].FirstSeen.IsZero() {
		t.Fatalf("firmware history %+v, want one record of 1.0.0", fw)
	}

	// Online: refused unless forced.
	if code, body := call(t, "DELETE", base+fmt.Sprint(first), "", nil); code != http.StatusConflict || !strings.Contains(body, "is online") {
		t.Fatalf("forget an online node: %d %s", code, body)
	}
	// Dead: forgotten.
	crashDevice(t, ctx, sm, victim)
	rec.waitFor(t, ctx, "mf/status/nodes", nodesWhere(victim, func(n fleet.Node) bool { return n.Status == "offline" }))
	if resp := ask(fmt.Sprintf(`{"action":"set","node_id":%d,"notes":"battery died"}`, victim)); !resp.OK {
		t.Fatalf("MQTT set: %+v", resp)
	}
	if n := nodeREST(t, g, victim); n.Notes != "battery died" || n.Status != "offline" {
		t.Fatalf("after the MQTT set: %+v", n)
	}
	if resp := ask(fmt.Sprintf(`{"action":"forget","node_id":%d}`, victim)); !resp.OK {
		t.Fatalf("MQTT forget of a dead node: %+v", resp)
	}
	if code, _ := call(t, "GET", base+fmt.Sprint(victim), "", nil); code != http.StatusNotFound {
		t.Fatalf("forgotten node still listed: %d", code)
	}
	sum, err := g.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.NodeCount != devices {
		t.Fatalf("node count %d after forgetting one of %d nodes", sum.NodeCount, devices+1)
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, registryFile)); err != nil {
		t.Fatalf("registry not saved: %v", err)
	}

	// Again on the same state_dir, with the victim back in the mesh.
	sc.Epoch = sum.Timestamp.Add(time.Minute)
	g2, _, done2 := startSimGatewayWith(t, ctx, cfg, sc, nil)
	waitReady(t, ctx, g2, done2)
	n := nodeREST(t, g2, first)
	if n.Name != "Pump house" || n.Notes != "behind the barn" || len(n.Tags) != 2 || !n.FirstSeen.Equal(named.FirstSeen) {
		t.Fatalf("after the restart: %+v, before %+v", n, named)
	}
	rec2, _ := observe(t, ctx, brokerURL(g2), "observer2")
	back := nodesWhere(victim, func(n fleet.Node) bool { return n.Status == "online" })
	rec2.waitFor(t, ctx, "mf/status/nodes", back)
	if v := nodeREST(t, g2, victim); !v.FirstSeen.After(sum.Timestamp) || v.Name != "" {
		t.Fatalf("forgotten node back: first seen %s, want after %s (a new entry)", v.FirstSeen, sum.Timestamp)
	}
	cancel()
	if err := <-done2; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A corrupt registry file stops the gateway with an error naming it.
func TestCorruptRegistryFileIsNamed(t *testing.T) {
	cfg := testConfig(t)
	os.MkdirAll(cfg.StateDir, 0o755)
	p := filepath.Join(cfg.StateDir, registryFile)
	os.WriteFile(p, []byte(`{"version":1,"nodes":[{"node_id":1,"tags":["a b"]}]}`), 0o644)
	_, err := New(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "only letters") {
		t.Fatalf("New: %v, want an error naming %s and the bad tag", err, p)
	}
}

// "Update all outdated nodes" on a simulated mesh: the campaign lists
// every node of the role not running the image, updates at most
// max_concurrent at a time (the rest queued), and completes; then no node
// is outdated. Tags and names select nodes from the registry; senseless
// combinations are refused with 400.
func TestOutdatedCampaignOnASimulatedMesh(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	const devices = 5
	g, sm, done := startSimGateway(t, ctx, cfg, devices)
	waitReady(t, ctx, g, done)
	rec, _ := observe(t, ctx, brokerURL(g), "observer")
	// Outdated nodes are those of the role: every device has said its own.
	rec.waitFor(t, ctx, "mf/status/nodes", func(p []byte) bool {
		var np mqttbridge.NodesPayload
		json.Unmarshal(p, &np)
		sensors := 0
		for _, n := range np.Nodes {
			if n.Status == "online" && n.Role == "sensor" && n.Hardware == "ESP32" {
				sensors++
			}
		}
		return sensors == devices
	})
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(16<<10, 51))
	first := cfg.Node.ID + 1000

	for _, c := range []struct{ body, want string }{
		{`{"image":"` + img.ID + `","outdated":true,"mode":"stock-turbo"}`, "stock-turbo"},
		{`{"image":"` + img.ID + `","max_concurrent":2}`, "max_concurrent needs nodes to queue"},
		{`{"image":"` + img.ID + `","outdated":true,"max_concurrent":-1}`, "max_concurrent -1"},
		{`{"image":"` + img.ID + `","tags":["nowhere"]}`, `tag \"nowhere\": no node has it`},
		{`{"image":"` + img.ID + `","names":["Nobody"]}`, `name \"Nobody\": no node has it`},
	} {
		if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota", "application/json", []byte(c.body)); code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("start %s: %d %s, want 400 %q", c.body, code, body, c.want)
		}
	}

	// A node that went away holds the one place of a queue for
	// ota's QueueStall (10 min): meanwhile the others wait, in order.
	// A leaf, so the others stay reachable; listed first, so it gets the
	// place (the queue runs in the order given).
	dead, others := leafDevice(t, ctx, g), []uint32{}
	for id := first; id < first+devices; id++ {
		if id != dead {
			others = append(others, id)
		}
	}
	crashDevice(t, ctx, sm, dead)
	rec.waitFor(t, ctx, "mf/status/nodes", nodesWhere(dead, func(n fleet.Node) bool { return n.Status == "offline" }))
	stuck := startREST(t, g, fleet.CampaignRequest{Image: img.ID, Mode: "broadcast", Outdated: true, MaxConcurrent: 1,
		Nodes: append([]uint32{dead}, others...)})
	if fmt.Sprint(stuck.Targets) != fmt.Sprint(append([]uint32{dead}, others...)) || stuck.Queued != 4 ||
		fmt.Sprint(stuck.Queue) != fmt.Sprint(others) || stuck.MaxConcurrent != 1 {
		t.Fatalf("campaign behind a dead node: targets %v, queue %v (%d), max_concurrent %d", stuck.Targets, stuck.Queue, stuck.Queued, stuck.MaxConcurrent)
	}
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota/"+stuck.ID+"/abort", "", nil); code != http.StatusOK {
		t.Fatalf("abort: %d %s", code, body)
	}
	// Forgotten, the dead node is outdated no more.
	if code, body := call(t, "DELETE", fmt.Sprintf("http://%s/api/v1/nodes/%d", g.HTTPAddr, dead), "", nil); code != http.StatusOK {
		t.Fatalf("forget: %d %s", code, body)
	}
	alive := devices - 1

	from := rec.mark()
	c := startREST(t, g, fleet.CampaignRequest{Image: img.ID, Mode: "broadcast", Outdated: true, MaxConcurrent: 2})
	if len(c.Targets) != alive || c.MaxConcurrent != 2 || c.Queued != len(c.Queue) || c.Queued > alive-2 {
		t.Fatalf("campaign at the start: targets %v, queue %v (%d), max_concurrent %d", c.Targets, c.Queue, c.Queued, c.MaxConcurrent)
	}
	rec.waitFor(t, ctx, "mf/ota/status", campaignIs(c.ID, "completed"))
	var end fleet.Campaign
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/ota/"+c.ID, &end)
	if end.Completed != alive || end.Queued != 0 || len(end.Queue) != 0 {
		t.Fatalf("campaign at the end: completed %d, queued %d", end.Completed, end.Queued)
	}
	// The progress ota/status published: never more than 2 nodes busy.
	busy, most := map[uint32]bool{}, 0
	rec.mu.Lock()
	for _, m := range rec.msgs[from:] {
		var p fleet.Progress
		if m.Topic != "mf/ota/status" || json.Unmarshal(m.Payload, &p) != nil || p.Campaign != c.ID || p.NodeID == 0 {
			continue
		}
		busy[p.NodeID] = p.State == "downloading" || p.State == "verifying" || p.State == "switching"
		n := 0
		for _, b := range busy {
			if b {
				n++
			}
		}
		most = max(most, n)
	}
	rec.mu.Unlock()
	if most > 2 {
		t.Fatalf("%d nodes were updated at once, max_concurrent 2", most)
	}

	// Once the nodes report the new image, none is outdated.
	rec.waitFor(t, ctx, "mf/status/nodes", func(p []byte) bool {
		var np mqttbridge.NodesPayload
		json.Unmarshal(p, &np)
		updated := 0
		for _, n := range np.Nodes {
			if n.FirmwareMD5 == img.MD5 {
				updated++
			}
		}
		return updated == alive
	})
	data, _ := json.Marshal(fleet.CampaignRequest{Image: img.ID, Outdated: true})
	if code, body := call(t, "POST", "http://"+g.HTTPAddr+"/api/v1/ota", "application/json", data); code != http.StatusConflict || !strings.Contains(body, "no outdated node") {
		t.Fatalf("outdated again: %d %s, want 409", code, body)
	}

	// Tags and names select from the registry.
	for id, patch := range map[uint32]string{others[0]: `{"tags":["east"]}`, others[1]: `{"tags":["east","well"]}`, others[2]: `{"name":"Gate"}`} {
		if code, body := call(t, "PATCH", fmt.Sprintf("http://%s/api/v1/nodes/%d", g.HTTPAddr, id), "application/json", []byte(patch)); code != http.StatusOK {
			t.Fatalf("PATCH %d: %d %s", id, code, body)
		}
	}
	img2 := uploadREST(t, g, "sensor", "ESP32", "2.1.0", compress.FirmwareLike(8<<10, 52))
	c2 := startREST(t, g, fleet.CampaignRequest{Image: img2.ID, Mode: "broadcast", Tags: []string{"east"}, Names: []string{"gate"}, MaxConcurrent: 1})
	if want := fmt.Sprint(others[:3]); fmt.Sprint(c2.Targets) != want || c2.Queued > 2 || c2.MaxConcurrent != 1 {
		t.Fatalf("campaign by tags and names: targets %v queued %d, want %s, one at a time", c2.Targets, c2.Queued, want)
	}
	rec.waitFor(t, ctx, "mf/ota/status", campaignIs(c2.ID, "completed"))
	cancel()
	<-done
}

// leafDevice is a device no other hangs off in g's layout.
func leafDevice(t *testing.T, ctx context.Context, g *Gateway) uint32 {
	t.Helper()
	tree, err := g.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var leaf uint32
	var walk func(n protocol.NodeTree)
	walk = func(n protocol.NodeTree) {
		if len(n.Subs) == 0 && n.NodeID != g.cfg.Node.ID {
			leaf = n.NodeID
		}
		for _, s := range n.Subs {
			walk(s)
		}
	}
	walk(tree)
	if leaf == 0 {
		t.Fatalf("no leaf in %+v", tree)
	}
	return leaf
}

// A queued campaign survives a restart of the gateway: its node list,
// queue and max_concurrent are kept, and it goes on to complete.
func TestQueuedCampaignSurvivesARestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	const devices = 3
	sc := scenario.LiveConfig{Nodes: devices, Seed: 9, Speed: 25, Model: "esp32", Epoch: time.Now().UTC().Truncate(time.Second)}
	runCtx, stop := context.WithCancel(ctx)
	g, sm, done := startSimGatewayWith(t, runCtx, cfg, sc, nil)
	waitReady(t, ctx, g, done)
	rec, _ := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", allOnline(devices+1))
	img := uploadREST(t, g, "sensor", "ESP32", "2.0.0", compress.FirmwareLike(16<<10, 91))
	// A dead node first holds the one place until the restart.
	dead := leafDevice(t, ctx, g)
	order := []uint32{dead}
	for id := cfg.Node.ID + 1000; id < cfg.Node.ID+1000+devices; id++ {
		if id != dead {
			order = append(order, id)
		}
	}
	crashDevice(t, ctx, sm, dead)
	c := startREST(t, g, fleet.CampaignRequest{Image: img.ID, Mode: "broadcast", Nodes: order, MaxConcurrent: 1})
	if c.Queued != devices-1 {
		t.Fatalf("queued %d, want %d behind the dead node", c.Queued, devices-1)
	}
	sum, err := g.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Again, with every node alive.
	sc.Epoch = sum.Timestamp.Add(time.Second)
	g2, _, done2 := startSimGatewayWith(t, ctx, cfg, sc, nil)
	waitReady(t, ctx, g2, done2)
	rec2, _ := observe(t, ctx, brokerURL(g2), "observer2")
	var again fleet.Campaign
	getJSON(t, "http://"+g2.HTTPAddr+"/api/v1/ota/"+c.ID, &again)
	if fmt.Sprint(again.Targets) != fmt.Sprint(order) || again.MaxConcurrent != 1 || again.State != "running" {
		t.Fatalf("after the restart: targets %v (want %v), max_concurrent %d, %s", again.Targets, order, again.MaxConcurrent, again.State)
	}
	rec2.waitFor(t, ctx, "mf/ota/status", campaignIs(c.ID, "completed"))
	getJSON(t, "http://"+g2.HTTPAddr+"/api/v1/ota/"+c.ID, &again)
	if again.Completed != devices || again.Queued != 0 {
		t.Fatalf("completed %d of %d, queued %d", again.Completed, devices, again.Queued)
	}
	cancel()
	if err := <-done2; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A registry change reaches MQTT at once, not at the next publish
// interval (an hour here): the renamed node's document, then the
// forgotten node's cleared one. Only the change's own cycle is waited
// for: the one at connection lists the node only if it joined before it,
// which a loaded machine may not see happen. A slow mesh has the devices
// join after that cycle every time.
func TestRegistryChangePublishedAtOnce(t *testing.T) {
	for _, speed := range []float64{25, 0.2} {
		t.Run(fmt.Sprintf("speed%g", speed), func(t *testing.T) { registryChangePublishedAtOnce(t, speed) })
	}
}

func registryChangePublishedAtOnce(t *testing.T, speed float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.PublishInterval = Duration(time.Hour)
	const devices = 2
	g, sm, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: devices, Seed: 7, Speed: speed, Model: "esp32"}, nil)
	defer func() { cancel(); <-done }()
	waitReady(t, ctx, g, done)
	waitDevicesOnline(t, ctx, g, devices)
	rec, _ := observe(t, ctx, brokerURL(g), "observer")
	id := lastDevice(cfg, devices)
	topic := fmt.Sprintf("mf/status/node/%d", id)
	if code, body := call(t, "PATCH", fmt.Sprintf("http://%s/api/v1/nodes/%d", g.HTTPAddr, id), "application/json", []byte(`{"name":"Pump house"}`)); code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	rec.waitFor(t, ctx, topic, func(p []byte) bool { return strings.Contains(string(p), `"name":"Pump house"`) })
	crashDevice(t, ctx, sm, id)
	if code, body := call(t, "DELETE", fmt.Sprintf("http://%s/api/v1/nodes/%d?force=1", g.HTTPAddr, id), "", nil); code != http.StatusNoContent && code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	rec.waitFor(t, ctx, topic, func(p []byte) bool { return len(p) == 0 })
}
