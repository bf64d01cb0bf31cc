package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// meshPeer is a plain mesh node over real TCP, for the gateway to join.
type meshPeer struct {
	d    *tcp.Driver
	stop func()
}

func startPeer(t *testing.T, id uint32, listen string) *meshPeer {
	t.Helper()
	d, err := tcp.New(tcp.Config{Node: mesh.Config{ID: id}, Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { d.Run(ctx); close(ran) }()
	p := &meshPeer{d: d, stop: sync.OnceFunc(func() { cancel(); <-ran })}
	t.Cleanup(p.stop)
	return p
}

// topologyHas reports whether a status/topology payload has the link
// from → to.
func topologyHas(from, to uint32) func([]byte) bool {
	return func(p []byte) bool {
		var tp mqttbridge.TopologyPayload
		if json.Unmarshal(p, &tp) != nil {
			return false
		}
		for _, c := range tp.Connections {
			if c.From == fmt.Sprint(from) && c.To == fmt.Sprint(to) {
				return true
			}
		}
		return false
	}
}

func topologyEmpty(p []byte) bool {
	var tp mqttbridge.TopologyPayload
	return json.Unmarshal(p, &tp) == nil && tp.TotalConnections == 0 && tp.RootNode != ""
}

// TestGatewayMeshReconnectsOverTCP runs the gateway over real TCP, joined
// to a node it dials (node.connect). The node goes away: the gateway
// notices, keeps running and keeps dialling; a node comes back on the same
// address and the gateway joins it again.
func TestGatewayMeshReconnectsOverTCP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const peerID = 2
	peer := startPeer(t, peerID, "127.0.0.1:0")
	addr := peer.d.Addr().String()

	cfg := testConfig(t)
	cfg.Node.Listen = ""
	cfg.Node.Connect = []string{addr}
	g, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.tcpBackoff = tcp.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- g.RunTCP(ctx) }()
	waitReady(t, ctx, g, done)
	rec, _ := observe(t, ctx, brokerURL(g), "observer")

	// Joined: the peer hangs below the gateway, over MQTT and REST alike.
	rec.waitFor(t, ctx, "mf/status/topology", topologyHas(peerID, cfg.Node.ID))
	resp, err := http.Get("http://" + g.HTTPAddr + "/api/v1/topology")
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(tree), fmt.Sprintf(`"nodeId":%d`, peerID)) {
		t.Fatalf("REST topology lacks node %d: %s", peerID, tree)
	}

	// The peer goes away: the layout shrinks to the gateway alone.
	mark := rec.mark()
	peer.stop()
	rec.waitSince(t, ctx, mark, "mf/status/topology", topologyEmpty)
	stillRunning(t, done)

	// The gateway keeps dialling, backing off between failures. Bounded
	// poll: the attempts are paced by the driver's own timer.
	g.mu.Lock()
	drv := g.driver.(*tcp.Driver)
	g.mu.Unlock()
	for drv.Stats().DialFailures < 2 {
		select {
		case <-ctx.Done():
			t.Fatalf("gateway stopped dialling: %+v", drv.Stats())
		case <-time.After(5 * time.Millisecond):
		}
	}

	// A node is back on the same address: the gateway joins it again.
	mark = rec.mark()
	startPeer(t, peerID, addr)
	rec.waitSince(t, ctx, mark, "mf/status/topology", topologyHas(peerID, cfg.Node.ID))
	stillRunning(t, done)
	if s := drv.Stats(); s.Dialled < 2 {
		t.Fatalf("driver stats after reconnecting: %+v", s)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunTCP: %v", err)
	}
}

// logRecord is one captured log line: its message and attributes as text.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logCapture is a slog.Handler that keeps every record and wakes waiters.
type logCapture struct {
	mu   sync.Mutex
	recs []logRecord
	ch   chan struct{}
}

func newLogCapture() *logCapture { return &logCapture{ch: make(chan struct{}, 1)} }

func (c *logCapture) handler() slog.Handler { return capHandler{c: c} }

type capHandler struct {
	c     *logCapture
	attrs []slog.Attr
}

func (h capHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h capHandler) WithGroup(string) slog.Handler            { return h }
func (h capHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return capHandler{c: h.c, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}
func (h capHandler) Handle(_ context.Context, r slog.Record) error {
	lr := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		lr.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { lr.attrs[a.Key] = a.Value.String(); return true })
	h.c.mu.Lock()
	h.c.recs = append(h.c.recs, lr)
	h.c.mu.Unlock()
	select {
	case h.c.ch <- struct{}{}:
	default:
	}
	return nil
}

// wait returns the first record that satisfies pred.
func (c *logCapture) wait(t *testing.T, ctx context.Context, what string, pred func(logRecord) bool) logRecord {
	t.Helper()
	for {
		c.mu.Lock()
		for _, r := range c.recs {
			if pred(r) {
				c.mu.Unlock()
				return r
			}
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-ctx.Done():
			t.Fatalf("nothing logged: %s", what)
		}
	}
}

// controller sends requests on <prefix>/ota/control and waits for their
// responses.
type controller struct {
	t   *testing.T
	ctx context.Context
	rec *recorder
	c   *mqttbridge.Client
	n   int
}

// raw publishes payload and returns the first response after it that
// match accepts.
func (k *controller) raw(payload []byte, match func(mqttbridge.ControlResponse) bool) mqttbridge.ControlResponse {
	k.t.Helper()
	mark := k.rec.mark()
	if err := k.c.Publish(k.ctx, "mf/ota/control", payload, false); err != nil {
		k.t.Fatal(err)
	}
	var resp mqttbridge.ControlResponse
	k.rec.waitSince(k.t, k.ctx, mark, "mf/ota/control/response", func(p []byte) bool {
		var r mqttbridge.ControlResponse
		if json.Unmarshal(p, &r) != nil || !match(r) {
			return false
		}
		resp = r
		return true
	})
	return resp
}

// do sends req with a fresh correlation id and returns its response.
func (k *controller) do(req map[string]any) mqttbridge.ControlResponse {
	k.t.Helper()
	k.n++
	id := fmt.Sprint("r", k.n)
	req["correlation_id"] = id
	data, _ := json.Marshal(req)
	return k.raw(data, func(r mqttbridge.ControlResponse) bool { return r.CorrelationID == id })
}

// fail sends req and expects an error response mentioning want.
func (k *controller) fail(req map[string]any, want string) {
	k.t.Helper()
	r := k.do(req)
	if r.OK || !strings.Contains(r.Error, want) {
		k.t.Fatalf("%v: got %+v, want an error mentioning %q", req, r, want)
	}
}

func (k *controller) ok(req map[string]any) map[string]any {
	k.t.Helper()
	r := k.do(req)
	if !r.OK {
		k.t.Fatalf("%v: %+v", req, r)
	}
	data, _ := r.Data.(map[string]any)
	return data
}

// upload sends img in chunks; it returns the upload_end response.
func (k *controller) upload(img []byte, md5hex, version string) mqttbridge.ControlResponse {
	k.t.Helper()
	const cs = 4096
	begin := k.ok(map[string]any{"action": "upload_begin", "role": "sensor", "hardware": "ESP32", "version": version,
		"size": len(img), "chunk_size": cs, "md5": md5hex})
	uid := begin["upload_id"].(string)
	for i := 0; i*cs < len(img); i++ {
		k.ok(map[string]any{"action": "upload_chunk", "upload_id": uid, "index": i,
			"data": base64.StdEncoding.EncodeToString(img[i*cs : min(len(img), (i+1)*cs)])})
	}
	return k.do(map[string]any{"action": "upload_end", "upload_id": uid})
}

func md5Hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// call makes an HTTP request and returns the status code and body.
func call(t *testing.T, method, url, contentType string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// campaignIs matches the ota/status document of campaign id in state.
func campaignIs(id, state string) func([]byte) bool {
	return func(p []byte) bool {
		var m struct {
			Campaign *fleet.Campaign `json:"campaign"`
		}
		return json.Unmarshal(p, &m) == nil && m.Campaign != nil && m.Campaign.ID == id && m.Campaign.State == state
	}
}

func allOnline(n int) func([]byte) bool {
	return func(p []byte) bool {
		var np mqttbridge.NodesPayload
		json.Unmarshal(p, &np)
		online := 0
		for _, e := range np.Nodes {
			if e.Status == "online" {
				online++
			}
		}
		return np.NodeCount == n && online == n
	}
}

// TestGatewayBadInputs sends malformed and hostile requests over MQTT and
// REST to a running gateway: every one gets an error answer (or, for mesh
// messages, which have no answer topic, a logged warning), and the gateway
// keeps serving good requests.
func TestGatewayBadInputs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := testConfig(t)
	const maxUpload = 64 << 10
	cfg.Firmware.MaxUploadSize = maxUpload
	const devices = 3
	logs := newLogCapture()
	g, sm, done := startSimGatewayWith(t, ctx, cfg, scenario.LiveConfig{Nodes: devices, Seed: 11, Speed: 25, Model: "esp32"}, slog.New(logs.handler()))
	waitReady(t, ctx, g, done)
	rec, c := observe(t, ctx, brokerURL(g), "observer")
	rec.waitFor(t, ctx, "mf/status/nodes", allOnline(devices+1))
	k := &controller{t: t, ctx: ctx, rec: rec, c: c}
	api := "http://" + g.HTTPAddr + "/api/v1"

	// Documents that are not control requests.
	for _, p := range []string{`{"action": "start", `, `not json`, `[1,2,3]`, ``} {
		r := k.raw([]byte(p), func(r mqttbridge.ControlResponse) bool { return r.CorrelationID == "" })
		if r.OK || !strings.Contains(r.Error, "not a valid control document") {
			t.Fatalf("payload %q: %+v", p, r)
		}
	}
	k.fail(map[string]any{"action": "start", "nodes": "all"}, "not a valid control document")
	k.fail(map[string]any{"action": "list", "bogus": 1}, "unknown field")
	k.fail(map[string]any{"action": "explode"}, "unknown action")
	k.fail(map[string]any{}, `missing "action"`)

	// Campaigns on images that are not there, and on no image.
	k.fail(map[string]any{"action": "start", "image": "0123456789abcdef0123456789abcdef"}, "not found")
	k.fail(map[string]any{"action": "start"}, `needs "image"`)
	for _, a := range []string{"pause", "resume", "abort", "status"} {
		k.fail(map[string]any{"action": a, "campaign": "nope"}, "not found")
		k.fail(map[string]any{"action": a}, `needs "campaign"`)
	}

	// Uploads: too big, broken chunks, incomplete, wrong checksum.
	img := compress.FirmwareLike(12<<10, 5)
	k.fail(map[string]any{"action": "upload_begin", "role": "sensor", "hardware": "ESP32", "version": "9",
		"size": maxUpload + 1, "chunk_size": 4096, "md5": md5Hex(img)}, "max_upload_size")
	k.fail(map[string]any{"action": "upload_begin", "role": "sensor", "hardware": "ESP32", "version": "9",
		"size": len(img), "chunk_size": 4096, "md5": "xyz"}, "32 hex digits")
	begin := k.ok(map[string]any{"action": "upload_begin", "role": "sensor", "hardware": "ESP32", "version": "9",
		"size": len(img), "chunk_size": 4096, "md5": md5Hex(img)})
	uid := begin["upload_id"].(string)
	k.fail(map[string]any{"action": "upload_chunk", "upload_id": uid, "index": 0, "data": "!!!"}, "base64")
	k.fail(map[string]any{"action": "upload_chunk", "upload_id": uid, "index": 99, "data": ""}, "out of range")
	k.fail(map[string]any{"action": "upload_chunk", "upload_id": uid, "index": 0, "data": base64.StdEncoding.EncodeToString(img[:10])}, "want 4096")
	k.fail(map[string]any{"action": "upload_chunk", "upload_id": uid, "index": 0, "data": base64.StdEncoding.EncodeToString(img[:4096]), "crc32": 1}, "crc32 mismatch")
	k.fail(map[string]any{"action": "upload_chunk", "upload_id": "u999", "index": 0, "data": ""}, "no upload")
	k.fail(map[string]any{"action": "upload_end", "upload_id": uid}, "chunks missing")
	k.ok(map[string]any{"action": "upload_abort", "upload_id": uid})
	other := compress.FirmwareLike(len(img), 6)
	if r := k.upload(img, md5Hex(other), "9"); r.OK || !strings.Contains(r.Error, "md5") {
		t.Fatalf("upload with the wrong md5: %+v", r)
	}
	if imgs, _ := g.Images(ctx); len(imgs) != 0 {
		t.Fatalf("rejected uploads left images in the store: %+v", imgs)
	}

	// REST gets the same treatment.
	fw := api + "/firmware?role=sensor&hardware=ESP32&version=9"
	for _, c := range []struct {
		method, url, body string
		want              int
	}{
		{"POST", fw, strings.Repeat("x", maxUpload+1), http.StatusRequestEntityTooLarge},
		{"POST", fw + "&md5=" + md5Hex(other), string(img), http.StatusBadRequest},
		{"POST", api + "/firmware?role=sensor", string(img), http.StatusBadRequest},
		{"POST", fw, "", http.StatusBadRequest},
		{"POST", api + "/ota", `{"image":`, http.StatusBadRequest},
		{"POST", api + "/ota", `{"image":"nope"}`, http.StatusNotFound},
		{"POST", api + "/ota", `{"image":"x","warp":9}`, http.StatusBadRequest},
		{"POST", api + "/ota", `{"image":"x"}{"image":"y"}`, http.StatusBadRequest},
		{"GET", api + "/ota/nope", "", http.StatusNotFound},
		{"POST", api + "/ota/nope/pause", "", http.StatusNotFound},
		{"DELETE", api + "/ota/nope", "", http.StatusNotFound},
		{"GET", api + "/nodes/banana", "", http.StatusBadRequest},
		{"GET", api + "/nodes/0", "", http.StatusBadRequest},
		{"GET", api + "/nodes/4242", "", http.StatusNotFound},
		{"POST", api + "/messages", `{"to":"banana","msg":"x"}`, http.StatusBadRequest},
		{"POST", api + "/messages", `{"to":"4242","msg":"x"}`, http.StatusNotFound},
		{"POST", api + "/messages", `[]`, http.StatusBadRequest},
	} {
		contentType := "application/json"
		if strings.HasPrefix(c.url, api+"/firmware") {
			contentType = "application/octet-stream"
		}
		code, body := call(t, c.method, c.url, contentType, []byte(c.body))
		if code != c.want || !strings.Contains(body, `"error"`) {
			t.Fatalf("%s %s %.40q: %d %s, want %d with an error document", c.method, c.url, c.body, code, body, c.want)
		}
	}
	if imgs, _ := g.Images(ctx); len(imgs) != 0 {
		t.Fatalf("rejected REST uploads left images in the store: %+v", imgs)
	}

	// Messages into the mesh on topics that name no node: a warning each,
	// naming the topic.
	delivered := make(chan string, 16)
	if err := sm.Realtime.Do(ctx, func(n *sim.Network) {
		n.OnEvent(func(nd *sim.Node, _ time.Time, ev mesh.Event) {
			if m, ok := ev.(mesh.MessageReceived); ok && m.From == cfg.Node.ID {
				select {
				case delivered <- fmt.Sprintf("%d:%s", nd.ID(), m.Msg):
				default:
				}
			}
		})
	}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"mf/to/banana", "mf/to/0", "mf/to/4294967296", "mf/to/-1", "mf/to/4242"} {
		if err := c.Publish(ctx, topic, []byte("x"), false); err != nil {
			t.Fatal(err)
		}
		logs.wait(t, ctx, "a warning about "+topic, func(r logRecord) bool {
			return r.level == slog.LevelWarn && r.msg == "mqtt message into the mesh" && r.attrs["topic"] == topic
		})
	}
	// A good one still goes through.
	to := cfg.Node.ID + 1000
	if err := c.Publish(ctx, fmt.Sprintf("mf/to/%d", to), []byte("hello"), false); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-delivered:
		if want := fmt.Sprintf("%d:hello", to); got != want {
			t.Fatalf("delivered %q, want %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("message to a device was not delivered")
	}

	// A good upload and a campaign on one device, run to completion.
	end := k.upload(img, md5Hex(img), "9")
	if !end.OK {
		t.Fatalf("good upload: %+v", end)
	}
	imgID := end.Data.(map[string]any)["id"].(string)
	if stored, err := g.store.ReadAll(imgID); err != nil || !bytes.Equal(stored, img) {
		t.Fatalf("image not stored intact: %v", err)
	}
	k.fail(map[string]any{"action": "start", "image": imgID, "mode": "warp"}, "mode")
	k.fail(map[string]any{"action": "start", "image": imgID, "compress": "zip"}, "zip")
	start := k.ok(map[string]any{"action": "start", "image": imgID, "nodes": []uint32{to}, "mode": "broadcast"})
	cid := start["id"].(string)
	rec.waitFor(t, ctx, "mf/ota/status", campaignIs(cid, "completed"))

	// Controlling a finished campaign is refused, over MQTT and REST.
	k.fail(map[string]any{"action": "pause", "campaign": cid}, "completed")
	k.fail(map[string]any{"action": "resume", "campaign": cid}, "completed")
	k.fail(map[string]any{"action": "abort", "campaign": cid}, "completed")
	for _, a := range []string{"pause", "resume", "abort"} {
		if code, body := call(t, "POST", api+"/ota/"+cid+"/"+a, "", nil); code != http.StatusConflict {
			t.Fatalf("%s of a completed campaign: %d %s", a, code, body)
		}
	}
	if code, body := call(t, "POST", api+"/ota/"+cid+"/explode", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown campaign action: %d %s", code, body)
	}

	// Everything still works.
	list := k.ok(map[string]any{"action": "list"})
	if imgs := list["images"].([]any); len(imgs) != 1 {
		t.Fatalf("list: %+v", list)
	}
	var camp fleet.Campaign
	getJSON(t, api+"/ota/"+cid, &camp)
	if camp.State != "completed" || camp.Completed != 1 {
		t.Fatalf("campaign after the bad requests: %+v", camp)
	}
	var nodes []fleet.Node
	getJSON(t, api+"/nodes", &nodes)
	if len(nodes) != devices+1 {
		t.Fatalf("nodes after the bad requests: %d", len(nodes))
	}
	stillRunning(t, done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
