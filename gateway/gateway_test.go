package gateway

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/scenario"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Node.ID = 1
	cfg.Node.Listen = "127.0.0.1:0"
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	cfg.MQTT.Prefix = "mf"
	cfg.MQTT.PublishInterval = Duration(200 * time.Millisecond)
	cfg.MQTT.Topics.PerNode = true
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Firmware.Dir = filepath.Join(dir, "firmware")
	cfg.StateDir = filepath.Join(dir, "state")
	return cfg
}

// recorder keeps every MQTT message and wakes waiters.
type recorder struct {
	mu   sync.Mutex
	msgs []mqttbridge.Message
	ch   chan struct{}
}

func (r *recorder) add(m mqttbridge.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// waitFor returns the newest message on topic that satisfies pred.
func (r *recorder) waitFor(t *testing.T, ctx context.Context, topic string, pred func([]byte) bool) []byte {
	t.Helper()
	for {
		r.mu.Lock()
		for i := len(r.msgs) - 1; i >= 0; i-- {
			if m := r.msgs[i]; m.Topic == topic && (pred == nil || pred(m.Payload)) {
				r.mu.Unlock()
				return m.Payload
			}
		}
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-ctx.Done():
			t.Fatalf("no message on %s matching the condition", topic)
		}
	}
}

// mark is the position of the next message to arrive, for waitSince.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// waitSince returns the first message at or after position from on topic
// that satisfies pred, and its position.
func (r *recorder) waitSince(t *testing.T, ctx context.Context, from int, topic string, pred func([]byte) bool) ([]byte, int) {
	t.Helper()
	for {
		r.mu.Lock()
		for i := from; i < len(r.msgs); i++ {
			if m := r.msgs[i]; m.Topic == topic && (pred == nil || pred(m.Payload)) {
				r.mu.Unlock()
				return m.Payload, i
			}
		}
		from = max(from, len(r.msgs))
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-ctx.Done():
			t.Fatalf("no message on %s matching the condition", topic)
		}
	}
}

func startSimGateway(t *testing.T, ctx context.Context, cfg Config, nodes int) (*Gateway, *scenario.Live, chan error) {
	t.Helper()
	return startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: nodes, Seed: 7, Speed: 25, Model: "esp32"}, nil)
}

// startSimGatewayWith runs a gateway (logging to log, nil: nowhere) on the
// simulated mesh sc until ctx ends; done receives Run's result.
func startSimGatewayWith(t *testing.T, ctx context.Context, cfg Config, sc scenario.LiveConfig, log *slog.Logger) (*Gateway, *scenario.Live, chan error) {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := g.NewSimMesh(sc)
	if err != nil {
		t.Fatal(err)
	}
	// The simulated mesh stops after the gateway, as a real mesh outlives it:
	// the gateway saves its state from the running node on the way out.
	simCtx, simStop := context.WithCancel(context.Background())
	go sm.Realtime.Run(simCtx)
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, sm.Driver)
		simStop()
	}()
	return g, sm, done
}

// stopOnCleanup ends a gateway started on ctx (cancel) when the test ends,
// waiting a bounded time for its run loop (done) to save its state.
func stopOnCleanup(t *testing.T, cancel context.CancelFunc, done <-chan error) {
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestGatewayEndToEnd runs the gateway on a simulated mesh with the
// embedded broker: status topics, an OTA uploaded and started over MQTT,
// progress on ota/status, REST and /metrics agreeing with MQTT.
func TestGatewayEndToEnd(t *testing.T) {
	runEndToEnd(t, func(*testing.T, *Config) {})
}

// waitReady waits until g serves, failing if Run returns first.
// startReadyGateway runs a gateway without MQTT on a simulated mesh of
// nodes devices until it is ready. The gateway is stopped at the end of
// the test, before t.TempDir is removed (it saves its state on the way
// out); ctx ends with it.
func startReadyGateway(t *testing.T, nodes int) (context.Context, *Gateway) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	g, _, done := startSimGateway(t, ctx, cfg, nodes)
	t.Cleanup(func() {
		cancel()
		select { // done is empty if waitReady already took Run's result
		case <-done:
		case <-time.After(30 * time.Second): // a bounded wait on the real run loop
		}
	})
	waitReady(t, ctx, g, done)
	return ctx, g
}

func waitReady(t *testing.T, ctx context.Context, g *Gateway, done chan error) {
	t.Helper()
	select {
	case <-g.Ready():
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("gateway did not start")
	}
}

// brokerURL is where clients reach the gateway's broker: the external one
// it is configured with, else its embedded one.
func brokerURL(g *Gateway) string {
	if g.cfg.MQTT.URL != "" {
		return g.cfg.MQTT.URL
	}
	return "mqtt://" + g.MQTTAddr
}

// observe subscribes a recorder to everything on url. The client lives
// until the test ends, whatever happens to ctx (which bounds the wait for
// the first connection), so it can watch the gateway stop.
func observe(t *testing.T, ctx context.Context, url, clientID string) (*recorder, *mqttbridge.Client) {
	t.Helper()
	rec := &recorder{ch: make(chan struct{}, 1)}
	life, end := context.WithCancel(context.Background())
	c, err := mqttbridge.Dial(life, mqttbridge.ClientConfig{URL: url, ClientID: clientID})
	if err != nil {
		end()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()); end() })
	c.Subscribe(life, "#", rec.add)
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	return rec, c
}

// runEndToEnd is the end-to-end scenario with the broker that useBroker
// configures (nothing: the embedded one).
func runEndToEnd(t *testing.T, useBroker func(*testing.T, *Config)) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := testConfig(t)
	useBroker(t, &cfg)
	const devices = 8
	g, sm, done := startSimGateway(t, ctx, cfg, devices)
	waitReady(t, ctx, g, done)
	rec, c := observe(t, ctx, brokerURL(g), "test")

	// Every device becomes visible and online.
	var nodes mqttbridge.NodesPayload
	json.Unmarshal(rec.waitFor(t, ctx, "mf/status/nodes", func(p []byte) bool {
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
	topo := rec.waitFor(t, ctx, "mf/status/topology", func(p []byte) bool {
		var tp mqttbridge.TopologyPayload
		json.Unmarshal(p, &tp)
		return tp.TotalConnections == devices
	})
	if !strings.Contains(string(topo), `"tree":{"nodeId":1,"root":true,"subs":[`) {
		t.Fatalf("topology is not the real tree: %s", topo)
	}
	rec.waitFor(t, ctx, fmt.Sprintf("mf/status/node/%d", 1000+1), nil)
	// The envelope names the gateway's firmware as its node document does.
	if want := fleet.MeshfleetFirmware(Version); nodes.FirmwareVersion != want {
		t.Errorf("status/nodes envelope firmware_version %q, want %q as in the gateway's node document", nodes.FirmwareVersion, want)
	}

	// REST returns the same nodes as MQTT.
	var rnodes []fleet.Node
	getJSON(t, "http://"+g.HTTPAddr+"/api/v1/nodes", &rnodes)
	if len(rnodes) != len(nodes.Nodes) {
		t.Fatalf("REST has %d nodes, MQTT %d", len(rnodes), len(nodes.Nodes))
	}
	for i, n := range rnodes {
		if n.ID != nodes.Nodes[i].ID {
			t.Fatalf("REST node %d is %d, MQTT says %d", i, n.ID, nodes.Nodes[i].ID)
		}
	}

	// /metrics scrapes cleanly and has a series per node.
	resp, err := http.Get("http://" + g.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, n := range rnodes {
		if !strings.Contains(string(body), fmt.Sprintf(`meshfleet_node_up{node_id="%d"} 1`, n.ID)) {
			t.Fatalf("/metrics lacks node %d:\n%s", n.ID, body)
		}
	}

	// Upload an image over MQTT in chunks.
	img := compress.FirmwareLike(24<<10, 3)
	sum := md5.Sum(img)
	request := func(req map[string]any) mqttbridge.ControlResponse {
		t.Helper()
		data, _ := json.Marshal(req)
		if err := c.Publish(ctx, "mf/ota/control", data, false); err != nil {
			t.Fatal(err)
		}
		var resp mqttbridge.ControlResponse
		rec.waitFor(t, ctx, "mf/ota/control/response", func(p []byte) bool {
			var r mqttbridge.ControlResponse
			json.Unmarshal(p, &r)
			if r.CorrelationID == req["correlation_id"] {
				resp = r
				return true
			}
			return false
		})
		return resp
	}
	begin := request(map[string]any{"correlation_id": "b", "action": "upload_begin", "role": "sensor", "hardware": "ESP32",
		"version": "2.0.0", "size": len(img), "chunk_size": 4096, "md5": hex.EncodeToString(sum[:])})
	if !begin.OK {
		t.Fatalf("upload_begin: %+v", begin)
	}
	uid := begin.Data.(map[string]any)["upload_id"].(string)
	for i := 0; i*4096 < len(img); i++ {
		chunk := img[i*4096 : min(len(img), (i+1)*4096)]
		if r := request(map[string]any{"correlation_id": fmt.Sprint("c", i), "action": "upload_chunk", "upload_id": uid, "index": i,
			"data": base64.StdEncoding.EncodeToString(chunk)}); !r.OK {
			t.Fatalf("chunk %d: %+v", i, r)
		}
	}
	end := request(map[string]any{"correlation_id": "e", "action": "upload_end", "upload_id": uid})
	if !end.OK {
		t.Fatalf("upload_end: %+v", end)
	}
	imgID := end.Data.(map[string]any)["id"].(string)
	stored, err := g.store.ReadAll(imgID)
	if err != nil || string(stored) != string(img) {
		t.Fatalf("image not stored intact: %v", err)
	}

	// Start a compressed broadcast OTA over MQTT; it completes on every device.
	start := request(map[string]any{"correlation_id": "s", "action": "start", "image": imgID, "mode": "broadcast", "compress": "deflate"})
	if !start.OK {
		t.Fatalf("start: %+v", start)
	}
	cid := start.Data.(map[string]any)["id"].(string)
	rec.waitFor(t, ctx, "mf/ota/status", func(p []byte) bool { return strings.Contains(string(p), `"state":"downloading"`) })
	for {
		var camp fleet.Campaign
		getJSON(t, "http://"+g.HTTPAddr+"/api/v1/ota/"+cid, &camp)
		if camp.Completed == devices {
			break
		}
		if camp.Failed > 0 {
			t.Fatalf("campaign failed on some nodes: %+v", camp)
		}
		select {
		case <-rec.ch:
		case <-ctx.Done():
			t.Fatalf("campaign did not complete: %+v", camp)
		}
	}
	rec.waitFor(t, ctx, "mf/ota/status", func(p []byte) bool { return strings.Contains(string(p), `"state":"confirmed"`) })
	for id, st := range sm.Stores {
		if md5hex, _ := st.Active(); md5hex != hex.EncodeToString(sum[:]) {
			t.Fatalf("device %d runs %s, want the new image", id, md5hex)
		}
	}
	// The devices report the version the image was uploaded as, and their
	// role and hardware, on REST and MQTT alike.
	updated := func(ns []fleet.Node) bool {
		n := 0
		for _, d := range ns {
			if !d.Gateway && d.Firmware == "2.0.0" && d.FirmwareMD5 == hex.EncodeToString(sum[:]) && d.Role == "sensor" && d.Hardware == "ESP32" {
				n++
			}
		}
		return n == devices
	}
	for {
		getJSON(t, "http://"+g.HTTPAddr+"/api/v1/nodes", &rnodes)
		if updated(rnodes) {
			break
		}
		select {
		case <-rec.ch:
		case <-ctx.Done():
			t.Fatalf("devices do not report 2.0.0 with role and hardware: %+v", rnodes)
		}
	}
	rec.waitFor(t, ctx, "mf/status/nodes", func(p []byte) bool {
		var n mqttbridge.NodesPayload
		json.Unmarshal(p, &n)
		return updated(n.Nodes)
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The campaign history survives a restart of the gateway.
	g2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g2.history[cid]; !ok {
		t.Fatalf("campaign %s not persisted", cid)
	}
}
