package mqttbridge

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/fleet/fleettest"
	"github.com/meshfleet/meshfleet/protocol"
)

// observer records every message on the broker and lets a test wait for
// the first one matching a predicate.
type observer struct {
	mu   sync.Mutex
	msgs []Message
	seen chan struct{}
}

func observe(t *testing.T, ctx context.Context, url string) (*observer, *Client) {
	t.Helper()
	o := &observer{seen: make(chan struct{}, 1)}
	c, err := Dial(ctx, ClientConfig{URL: url, ClientID: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	c.Subscribe(ctx, "#", func(m Message) {
		o.mu.Lock()
		o.msgs = append(o.msgs, m)
		o.mu.Unlock()
		select {
		case o.seen <- struct{}{}:
		default:
		}
	})
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	return o, c
}

func (o *observer) wait(t *testing.T, ctx context.Context, topic string, pred func([]byte) bool) []byte {
	t.Helper()
	for {
		o.mu.Lock()
		for _, m := range o.msgs {
			if m.Topic == topic && (pred == nil || pred(m.Payload)) {
				o.mu.Unlock()
				return m.Payload
			}
		}
		o.mu.Unlock()
		select {
		case <-o.seen:
		case <-ctx.Done():
			t.Fatalf("no message on %s", topic)
		}
	}
}

// nth waits for the n-th message on topic and returns it.
func (o *observer) nth(t *testing.T, ctx context.Context, topic string, n int) []byte {
	t.Helper()
	for {
		o.mu.Lock()
		seen := 0
		for _, m := range o.msgs {
			if m.Topic == topic {
				if seen++; seen == n {
					o.mu.Unlock()
					return m.Payload
				}
			}
		}
		o.mu.Unlock()
		select {
		case <-o.seen:
		case <-ctx.Done():
			t.Fatalf("no message %d on %s", n, topic)
		}
	}
}

type rig struct {
	svc    *fleettest.Memory
	obs    *observer
	pub    *Client
	bridge *Bridge
}

func newRig(t *testing.T, ctx context.Context, url string, mutate func(*BridgeConfig)) *rig {
	t.Helper()
	svc := &fleettest.Memory{
		NodeList: []fleet.Node{
			{ID: 1, Status: "online", Gateway: true, LastSeen: time.Unix(1700000000, 0)},
			{ID: 3907768579, Status: "online", Hops: hops(1), Firmware: "1.2.3", RSSI: -61, LastSeen: time.Unix(1700000000, 0),
				Role: "sensor", Hardware: "ESP32", FreeMemory: 41000},
			{ID: 17, Status: "offline", Hops: hops(2)},
		},
		Tree: protocol.NodeTree{NodeID: 1, Root: true, Subs: []protocol.NodeTree{{NodeID: 3907768579, Subs: []protocol.NodeTree{{NodeID: 17}}}}},
		Sum:  fleet.Summary{NodeCount: 3, OnlineCount: 2, HealthScore: 66, ActiveAlerts: 2, MaxHops: 2},
		AlertList: []fleet.Alert{
			{ID: "17/node_offline", NodeID: 17, Type: "node_offline", Severity: "warning", State: "raised"},
			{ID: "3907768579/weak_wifi", NodeID: 3907768579, Type: "weak_wifi", Severity: "warning", State: "raised"},
		},
	}
	obs, pub := observe(t, ctx, url)
	bc, err := Dial(ctx, ClientConfig{URL: url, ClientID: "bridge", WillTopic: WillTopic("mf"), WillPayload: WillPayload()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close(context.Background()) })
	if err := bc.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := BridgeConfig{Prefix: "mf", PublishInterval: time.Hour, Nodes: true, Topology: true, Metrics: true, Alerts: true,
		Messages: true, DeviceID: "1", Version: "test", MaxUploadSize: 1 << 16, Now: func() time.Time { return time.Unix(1700000100, 0) }}
	if mutate != nil {
		mutate(&cfg)
	}
	b := NewBridge(svc, bc, cfg)
	go b.Run(ctx)
	awaitSubscribed(t, ctx, b)
	return &rig{svc: svc, obs: obs, pub: pub, bridge: b}
}

// startRig starts an embedded broker and a rig on it, both stopped at the
// end of the test, and a context bounding the test to 20 s.
func startRig(t *testing.T, mutate func(*BridgeConfig)) (context.Context, *rig) {
	t.Helper()
	br, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	r := newRig(t, ctx, br.URL(), mutate)
	// Cleanups run last first: the context ends, then the broker, then
	// the rig's clients.
	t.Cleanup(func() { br.Close() })
	t.Cleanup(cancel)
	return ctx, r
}

// awaitSubscribed waits until b takes requests, so that a test's first
// request is not published before anyone listens.
func awaitSubscribed(t *testing.T, ctx context.Context, b *Bridge) {
	t.Helper()
	select {
	case <-b.Subscribed():
	case <-ctx.Done():
		t.Fatal("bridge did not subscribe")
	}
}

func TestStatusTopics(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.HomeAssistant = true })

	var nodes NodesPayload
	json.Unmarshal(r.obs.wait(t, ctx, "mf/status/nodes", nil), &nodes)
	if nodes.NodeCount != 3 || len(nodes.Nodes) != 3 || nodes.Nodes[1].ID != 3907768579 || nodes.Nodes[2].Status != "offline" ||
		nodes.SchemaVersion != 1 || nodes.DeviceID != "1" || nodes.Timestamp != "2023-11-14T22:15:00Z" {
		t.Fatalf("nodes payload: %+v", nodes)
	}
	var topo TopologyPayload
	json.Unmarshal(r.obs.wait(t, ctx, "mf/status/topology", nil), &topo)
	if string(topo.Tree) != `{"nodeId":1,"root":true,"subs":[{"nodeId":3907768579,"subs":[{"nodeId":17}]}]}` ||
		topo.TotalConnections != 2 || topo.Connections[1].From != "17" || topo.Connections[1].To != "3907768579" || topo.RootNode != "1" {
		t.Fatalf("topology payload: %+v", topo)
	}
	var alerts AlertsPayload
	json.Unmarshal(r.obs.wait(t, ctx, "mf/status/alerts", nil), &alerts)
	if alerts.AlertCount != 2 || len(alerts.Alerts) != 2 {
		t.Fatalf("alerts payload: %+v", alerts)
	}
	var metrics MetricsPayload
	json.Unmarshal(r.obs.wait(t, ctx, "mf/status/metrics", nil), &metrics)
	if metrics.Metrics.MeshNodes != 3 || metrics.Metrics.OnlineNodes != 2 || metrics.Metrics.HealthScore != 66 {
		t.Fatalf("metrics payload: %+v", metrics)
	}
	node := r.obs.wait(t, ctx, "mf/status/node/3907768579", nil)
	var nm map[string]any
	if err := json.Unmarshal(node, &nm); err != nil || nm["device_id"] != "3907768579" || nm["firmware_version"] != "1.2.3" || nm["rssi_dbm"] != float64(-61) {
		t.Fatalf("per-node payload %s", node)
	}
	disc := r.obs.wait(t, ctx, "homeassistant/sensor/meshfleet_3907768579_rssi_dbm/config", nil)
	if !strings.Contains(string(disc), `"state_topic":"mf/status/node/3907768579"`) || !strings.Contains(string(disc), `"via_device":"meshfleet_1"`) {
		t.Fatalf("discovery: %s", disc)
	}
	if got := r.obs.wait(t, ctx, "mf/bridge/state", nil); string(got) != "online" {
		t.Fatalf("availability %q", got)
	}
	// Alerts are republished when they change, not only every interval.
	all, _ := r.svc.Alerts(ctx, false)
	kept := all[:1]
	r.svc.SetAlerts(kept)
	r.svc.Publish(fleet.Event{Alert: &kept[0]})
	r.obs.wait(t, ctx, "mf/status/alerts", func(p []byte) bool { return strings.Contains(string(p), `"alert_count":1`) })
}

func request(t *testing.T, ctx context.Context, r *rig, req string) ControlResponse {
	t.Helper()
	var cr ControlRequest
	json.Unmarshal([]byte(req), &cr)
	if err := r.pub.Publish(ctx, "mf/ota/control", []byte(req), false); err != nil {
		t.Fatal(err)
	}
	var resp ControlResponse
	r.obs.wait(t, ctx, "mf/ota/control/response", func(p []byte) bool {
		var x ControlResponse
		json.Unmarshal(p, &x)
		if x.CorrelationID == cr.CorrelationID && cr.CorrelationID != "" {
			resp = x
			return true
		}
		return false
	})
	return resp
}

func TestOTAControlAndUpload(t *testing.T) {
	ctx, r := startRig(t, nil)
	r.obs.wait(t, ctx, "mf/status/nodes", nil) // the bridge is up and subscribed once it published

	img := []byte(strings.Repeat("firmware bytes ", 300))
	sum := md5.Sum(img)
	begin := request(t, ctx, r, `{"correlation_id":"b1","action":"upload_begin","role":"sensor","hardware":"ESP32","version":"2.0","size":`+
		itoa(len(img))+`,"chunk_size":1000,"md5":"`+hex.EncodeToString(sum[:])+`"}`)
	if !begin.OK {
		t.Fatalf("begin: %+v", begin)
	}
	uid := begin.Data.(map[string]any)["upload_id"].(string)
	// Chunks out of order, one with a bad checksum first.
	for _, i := range []int{4, 0, 3, 1, 2} {
		chunk := img[i*1000 : min((i+1)*1000, len(img))]
		crc := crc32.ChecksumIEEE(chunk)
		if i == 3 {
			bad := request(t, ctx, r, `{"correlation_id":"bad3","action":"upload_chunk","upload_id":"`+uid+`","index":3,"data":"`+
				base64.StdEncoding.EncodeToString(chunk)+`","crc32":`+itoa(int(crc^1))+`}`)
			if bad.OK || !strings.Contains(bad.Error, "crc32 mismatch") {
				t.Fatalf("bad crc accepted: %+v", bad)
			}
		}
		resp := request(t, ctx, r, `{"correlation_id":"c`+itoa(i)+`","action":"upload_chunk","upload_id":"`+uid+`","index":`+itoa(i)+
			`,"data":"`+base64.StdEncoding.EncodeToString(chunk)+`","crc32":`+itoa(int(crc))+`}`)
		if !resp.OK {
			t.Fatalf("chunk %d: %+v", i, resp)
		}
	}
	end := request(t, ctx, r, `{"correlation_id":"e1","action":"upload_end","upload_id":"`+uid+`"}`)
	if !end.OK {
		t.Fatalf("end: %+v", end)
	}
	imgs, _ := r.svc.Images(ctx)
	if len(imgs) != 1 || imgs[0].MD5 != hex.EncodeToString(sum[:]) || string(r.svc.Data[imgs[0].ID]) != string(img) {
		t.Fatalf("store: %+v", imgs)
	}
	start := request(t, ctx, r, `{"correlation_id":"s1","action":"start","image":"`+imgs[0].ID+`","mode":"broadcast"}`)
	if !start.OK {
		t.Fatalf("start: %+v", start)
	}
	cid := start.Data.(map[string]any)["id"].(string)
	if p := request(t, ctx, r, `{"correlation_id":"p1","action":"pause","campaign":"`+cid+`"}`); !p.OK || p.Data.(map[string]any)["state"] != "paused" {
		t.Fatalf("pause: %+v", p)
	}
	if p := request(t, ctx, r, `{"correlation_id":"p2","action":"pause","campaign":"`+cid+`"}`); p.OK || !strings.Contains(p.Error, "paused") {
		t.Fatalf("pause twice: %+v", p)
	}
	if l := request(t, ctx, r, `{"correlation_id":"l1","action":"list"}`); !l.OK {
		t.Fatalf("list: %+v", l)
	}
	// Bad requests get error responses, and the bridge keeps working.
	for _, bad := range []struct{ req, want string }{
		{`{"correlation_id":"x1","action":"explode"}`, "unknown action"},
		{`{"correlation_id":"x2","action":"start"}`, "needs \"image\""},
		{`{"correlation_id":"x3","action":"start","image":"nope"}`, "not found"},
		{`{"correlation_id":"x4","action":"pause"}`, "needs \"campaign\""},
		{`{"correlation_id":"x5","action":"upload_chunk","upload_id":"u99","index":0,"data":"AA=="}`, "no upload"},
		{`{"correlation_id":"x6","action":"upload_begin","role":"r","hardware":"h","version":"1","size":99999999,"chunk_size":10,"md5":"00000000000000000000000000000000"}`, "max_upload_size"},
		{`{"correlation_id":"x7","action":"start","image":1}`, "not a valid control document"},
		{`{"correlation_id":"x8","action":"list","bogus":true}`, "unknown field"},
	} {
		resp := request(t, ctx, r, bad.req)
		if resp.OK || !strings.Contains(resp.Error, bad.want) {
			t.Errorf("%s: %+v, want error containing %q", bad.req, resp, bad.want)
		}
	}
	// Not even JSON: answered without a correlation id.
	r.pub.Publish(ctx, "mf/ota/control", []byte("garbage"), false)
	r.obs.wait(t, ctx, "mf/ota/control/response", func(p []byte) bool { return strings.Contains(string(p), `"action":"unknown"`) })
}

func TestUploadMD5Mismatch(t *testing.T) {
	u := newUploads(t.TempDir(), 1<<10, 0, 0, nil)
	now := time.Unix(0, 0)
	st, err := u.begin(ControlRequest{Role: "r", Hardware: "h", Version: "1", Size: 4, ChunkSize: 4, MD5: strings.Repeat("0", 32)}, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.chunk(ControlRequest{UploadID: st.UploadID, Index: 0, Data: base64.StdEncoding.EncodeToString([]byte("abcd"))}, "", now); err != nil {
		t.Fatal(err)
	}
	up, err := u.finish(st.UploadID, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.image(); err == nil || !strings.Contains(err.Error(), "md5 of the assembled image") {
		t.Fatalf("mismatch not detected: %v", err)
	}
	u.release(st.UploadID)
	if _, err := u.finish(st.UploadID, "", now); err == nil {
		t.Fatal("a failed upload must be discarded")
	}
}

func TestMeshMessages(t *testing.T) {
	ctx, r := startRig(t, nil)
	r.obs.wait(t, ctx, "mf/status/nodes", nil)
	r.svc.Publish(fleet.Event{Message: &fleet.Message{From: 3907768579, Payload: `{"temp":21}`}})
	if got := r.obs.wait(t, ctx, "mf/from/3907768579", nil); string(got) != `{"temp":21}` {
		t.Fatalf("from: %s", got)
	}
	r.pub.Publish(ctx, "mf/to/broadcast", []byte("all"), false)
	r.pub.Publish(ctx, "mf/to/17", []byte("one"), false)
	r.pub.Publish(ctx, "mf/to/notanode", []byte("x"), false)
	r.pub.Publish(ctx, "mf/to/end", []byte("x"), false)
	// Messages from one client are handled in order: once the last good one
	// is sent, the bad topics in between have been refused.
	r.pub.Publish(ctx, "mf/to/18", []byte("last"), false)
	sent, err := r.svc.WaitSent(ctx, 3)
	if err != nil || len(sent) != 3 || sent[0] != "broadcast all" || sent[1] != "single 17 one" || sent[2] != "single 18 last" {
		t.Fatalf("sent %q (%v)", sent, err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestResponseTopicOutsidePrefixRefused: an MQTT 5 response topic outside
// <prefix>/ota/control/response is never published to; the request is
// refused and answered on the default response topic instead.
func TestResponseTopicOutsidePrefixRefused(t *testing.T) {
	ctx, r := startRig(t, nil)
	r.obs.wait(t, ctx, "mf/status/nodes", nil)
	for i, topic := range []string{"mf/to/broadcast", "mf/status/nodes", "elsewhere", "mf/ota/control/responses"} {
		corr := "rt" + itoa(i)
		if _, err := r.pub.cm.Publish(ctx, &paho.Publish{Topic: "mf/ota/control", QoS: 1, Payload: []byte(`{"action":"list"}`),
			Properties: &paho.PublishProperties{ResponseTopic: topic, CorrelationData: []byte(corr)}}); err != nil {
			t.Fatal(err)
		}
		r.obs.wait(t, ctx, "mf/ota/control/response", func(p []byte) bool {
			return strings.Contains(string(p), `"ok":false`) && strings.Contains(string(p), "response topic")
		})
		r.obs.mu.Lock()
		for _, m := range r.obs.msgs {
			if m.Topic == topic && string(m.Correlation) == corr {
				t.Errorf("reply published to %s", topic)
			}
		}
		r.obs.mu.Unlock()
		r.obs.mu.Lock()
		r.obs.msgs = nil
		r.obs.mu.Unlock()
	}
	// A response topic below the reply prefix is used.
	if _, err := r.pub.cm.Publish(ctx, &paho.Publish{Topic: "mf/ota/control", QoS: 1, Payload: []byte(`{"action":"list"}`),
		Properties: &paho.PublishProperties{ResponseTopic: "mf/ota/control/response/me", CorrelationData: []byte("ok")}}); err != nil {
		t.Fatal(err)
	}
	r.obs.wait(t, ctx, "mf/ota/control/response/me", func(p []byte) bool { return strings.Contains(string(p), `"ok":true`) })
	if sent := r.svc.SentMessages(); len(sent) != 0 {
		t.Fatalf("sent into the mesh: %q", sent)
	}
}

// secureRig is a bridge on a broker with users, as the gateway runs it.
type secureRig struct {
	svc    *fleettest.Memory
	broker *Broker
	log    *syncBuffer
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newSecureRig(t *testing.T, ctx context.Context) *secureRig {
	t.Helper()
	b, gw := securedBroker(t, BrokerTLS{})
	svc := &fleettest.Memory{}
	logs := &syncBuffer{}
	bc, err := Dial(ctx, ClientConfig{URL: b.InternalURL(), Username: gw.Username, Password: gw.Password, ClientID: "bridge",
		WillTopic: WillTopic("mf"), WillPayload: WillPayload()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bc.Close(context.Background()) })
	if err := bc.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	br := NewBridge(svc, bc, BridgeConfig{Prefix: "mf", PublishInterval: time.Hour, Messages: true, DeviceID: "1", Version: "test",
		MaxUploadSize: 1 << 16, TrustSender: true, MayRead: b.MayRead, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	go br.Run(ctx)
	awaitSubscribed(t, ctx, br)
	return &secureRig{svc: svc, broker: b, log: logs}
}

// operator connects as user name (an operator) listening on its own reply topic.
func (s *secureRig) operator(t *testing.T, ctx context.Context, name, clientID string) *rawClient {
	t.Helper()
	c := mustDial(t, ctx, s.broker.Addr(), clientID, dialOpts{user: name, pass: name + "-pw"})
	if code := c.subscribe(t, ctx, "mf/ota/control/response/"+clientID); code >= 0x80 {
		t.Fatalf("subscribe: %#x", code)
	}
	return c
}

// ask sends a control request and waits for its reply on the client's reply topic.
func (c *rawClient) ask(t *testing.T, ctx context.Context, clientID, req string, props ...paho.UserProperty) ControlResponse {
	t.Helper()
	corr := []byte(time.Now().String())
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "mf/ota/control", QoS: 1, Payload: []byte(req),
		Properties: &paho.PublishProperties{ResponseTopic: "mf/ota/control/response/" + clientID, CorrelationData: corr, User: props}}); err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	for {
		p := c.next(t, ctx)
		if p.Properties == nil || string(p.Properties.CorrelationData) != string(corr) {
			continue
		}
		var resp ControlResponse
		if err := json.Unmarshal(p.Payload, &resp); err != nil {
			t.Fatal(err)
		}
		return resp
	}
}

func TestUploadOwnedByItsClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newSecureRig(t, ctx)
	alice := s.operator(t, ctx, "alice", "alice-tool")
	bob := s.operator(t, ctx, "bob", "bob-tool")

	img := []byte("0123456789")
	sum := md5.Sum(img)
	begin := alice.ask(t, ctx, "alice-tool", `{"action":"upload_begin","role":"sensor","hardware":"ESP32","version":"2.0","size":10,"chunk_size":5,"md5":"`+hex.EncodeToString(sum[:])+`"}`)
	if !begin.OK {
		t.Fatalf("begin: %+v", begin)
	}
	uid := begin.Data.(map[string]any)["upload_id"].(string)
	if _, err := hex.DecodeString(uid); err != nil || len(uid) != 32 {
		t.Fatalf("upload id %q is not 128 random bits in hex", uid)
	}
	chunk := func(i int) string {
		return `{"action":"upload_chunk","upload_id":"` + uid + `","index":` + itoa(i) + `,"data":"` + base64.StdEncoding.EncodeToString(img[i*5:i*5+5]) + `"}`
	}
	// Bob knows the id (e.g. from a shared reply topic) but cannot touch
	// the upload, even claiming to be alice.
	forged := paho.UserProperty{Key: PropUser, Value: "alice"}
	for _, req := range []string{chunk(0), `{"action":"upload_end","upload_id":"` + uid + `"}`, `{"action":"upload_abort","upload_id":"` + uid + `"}`} {
		if resp := bob.ask(t, ctx, "bob-tool", req, forged); resp.OK || !strings.Contains(resp.Error, "another client") {
			t.Errorf("bob: %s: %+v", req, resp)
		}
	}
	// Alice, from another connection of hers, finishes it.
	alice2 := s.operator(t, ctx, "alice", "alice-other")
	for i := range 2 {
		if resp := alice2.ask(t, ctx, "alice-other", chunk(i)); !resp.OK {
			t.Fatalf("alice chunk %d: %+v", i, resp)
		}
	}
	if end := alice.ask(t, ctx, "alice-tool", `{"action":"upload_end","upload_id":"`+uid+`"}`); !end.OK {
		t.Fatalf("end: %+v", end)
	}
	imgs, _ := s.svc.Images(ctx)
	if len(imgs) != 1 {
		t.Fatalf("images %+v", imgs)
	}
	// Each state change is one audit line: who, how, what, on what, result.
	logs := s.log.String()
	for _, want := range []string{
		`msg=audit via=mqtt who=alice client=alice-tool action=upload.begin target="upload ` + uid + ` of sensor/ESP32/2.0" result=ok`,
		`msg=audit via=mqtt who=bob client=bob-tool action=upload.abort target="upload ` + uid + `" result="upload_abort: upload \"` + uid + `\" was begun by another client"`,
		`msg=audit via=mqtt who=alice client=alice-tool action=upload.end target="upload ` + uid + ` as image ` + imgs[0].ID + `" result=ok`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no audit line %s in\n%s", want, logs)
		}
	}
}

// TestResponseTopicMustBeReadableByRequester: with the embedded broker a
// reply goes only to a topic the requesting user may read.
func TestResponseTopicMustBeReadableByRequester(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newSecureRig(t, ctx)
	root := mustDial(t, ctx, s.broker.Addr(), "root", dialOpts{user: "root", pass: "root-pw"})
	root.subscribe(t, ctx, "mf/ota/control/response/#")
	scribe := mustDial(t, ctx, s.broker.Addr(), "scribe", dialOpts{user: "scribe", pass: "scribe-pw"})
	if _, err := scribe.Publish(ctx, &paho.Publish{Topic: "mf/ota/control", QoS: 1, Payload: []byte(`{"action":"list"}`),
		Properties: &paho.PublishProperties{ResponseTopic: "mf/ota/control/response/scribe", CorrelationData: []byte("c")}}); err != nil {
		t.Fatal(err)
	}
	p := root.next(t, ctx)
	if p.Topic != "mf/ota/control/response" || !strings.Contains(string(p.Payload), "may not read") {
		t.Fatalf("reply on %s: %s", p.Topic, p.Payload)
	}
}

func TestUploadIdleEvictedAndCappedPerClient(t *testing.T) {
	u := newUploads(t.TempDir(), 1<<20, 2, time.Minute, nil)
	t0 := time.Unix(0, 0)
	req := ControlRequest{Role: "r", Hardware: "h", Version: "1", Size: 4, ChunkSize: 4, MD5: strings.Repeat("0", 32)}
	var ids []string
	for i, owner := range []string{"a", "a", "a", "b", "c"} {
		st, err := u.begin(req, owner, t0)
		if i == 2 {
			if err == nil || !strings.Contains(err.Error(), "already have 2") {
				t.Fatalf("third upload of one client: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("begin for %s: %v", owner, err)
		}
		ids = append(ids, st.UploadID)
	}
	if ids[0] == ids[1] {
		t.Fatal("two uploads got the same id")
	}
	if _, err := u.begin(req, "d", t0); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("fifth upload: %v", err)
	}
	// One upload stays busy; the idle ones go after a minute without a chunk.
	t1 := t0.Add(50 * time.Second)
	if _, err := u.chunk(ControlRequest{UploadID: ids[2], Index: 0, Data: base64.StdEncoding.EncodeToString([]byte("abcd"))}, "b", t1); err != nil {
		t.Fatal(err)
	}
	t2 := t0.Add(61 * time.Second)
	if _, err := u.begin(req, "d", t2); err != nil {
		t.Fatalf("slots still held by idle uploads: %v", err)
	}
	if _, err := u.chunk(ControlRequest{UploadID: ids[0], Index: 0, Data: "AAAAAA=="}, "a", t2); err == nil || !strings.Contains(err.Error(), "no upload") {
		t.Fatalf("chunk to an evicted upload: %v", err)
	}
	if _, err := u.chunk(ControlRequest{UploadID: ids[2], Index: 0, Data: base64.StdEncoding.EncodeToString([]byte("abcd"))}, "b", t2); err != nil {
		t.Fatalf("busy upload evicted: %v", err)
	}
}

// A message the mesh refuses (too large, over the airtime budget) is
// answered with an error when the request has an MQTT 5 response topic,
// else logged, at most once per refusalLogGap.
func TestRefusedMeshMessages(t *testing.T) {
	br, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var logs syncBuffer
	r := newRig(t, ctx, br.URL(), func(c *BridgeConfig) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	r.svc.Update(func(m *fleettest.Memory) {
		m.SendCheck = func(msg string) error {
			if strings.HasPrefix(msg, "big") {
				return fmt.Errorf("message is 2097152 bytes as a mesh package, more than send.max_size (8192): %w", fleet.ErrTooLarge)
			}
			return nil
		}
	})
	r.obs.wait(t, ctx, "mf/status/nodes", nil)
	for range 50 {
		r.pub.Publish(ctx, "mf/to/broadcast", []byte("big"), false)
	}
	reply := &paho.Publish{Topic: "mf/to/17", Payload: []byte("big one"), QoS: 1,
		Properties: &paho.PublishProperties{ResponseTopic: "mf/ota/control/response/c1", CorrelationData: []byte("c1")}}
	if err := r.pub.publish(ctx, reply); err != nil {
		t.Fatal(err)
	}
	// A response topic elsewhere (here inside to/, where the answer would go
	// into the mesh) is not answered.
	loop := &paho.Publish{Topic: "mf/to/17", Payload: []byte("big loop"), QoS: 1,
		Properties: &paho.PublishProperties{ResponseTopic: "mf/to/broadcast"}}
	if err := r.pub.publish(ctx, loop); err != nil {
		t.Fatal(err)
	}
	r.pub.Publish(ctx, "mf/to/broadcast", []byte("last"), false)
	if sent, err := r.svc.WaitSent(ctx, 1); err != nil || len(sent) != 1 || sent[0] != "broadcast last" {
		t.Fatalf("sent %q (%v)", sent, err)
	}
	var resp SendResponse
	if err := json.Unmarshal(r.obs.wait(t, ctx, "mf/ota/control/response/c1", nil), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.OK || resp.Topic != "mf/to/17" || !strings.Contains(resp.Error, "send.max_size") {
		t.Fatalf("error reply %+v", resp)
	}
	if n := strings.Count(logs.String(), "mqtt message into the mesh refused"); n != 1 {
		t.Fatalf("%d log lines for 51 refusals within the same time, want 1:\n%s", n, logs.String())
	}
}

func hops(n int) *int { return &n }

// The node documents on status/nodes and status/node/<id> are the REST
// documents (fleet.Node, as GET /api/v1/nodes encodes them), and the
// counts on status/nodes and status/metrics come from the same list.
func TestNodeDocumentsAreTheRESTDocuments(t *testing.T) {
	ctx, r := startRig(t, func(c *BridgeConfig) { c.PerNode = true })
	r.svc.Update(func(m *fleettest.Memory) { m.Sum.NodeCount, m.Sum.OnlineCount = 10, 6 }) // another count the service may hold
	nodes, err := r.svc.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(nodes)
	if err != nil {
		t.Fatal(err)
	}
	var payload struct {
		Nodes     json.RawMessage `json:"nodes"`
		NodeCount int             `json:"node_count"`
	}
	if err := json.Unmarshal(r.obs.wait(t, ctx, "mf/status/nodes", nil), &payload); err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, payload.Nodes, want) {
		t.Fatalf("status/nodes documents\n%s\nREST documents\n%s", payload.Nodes, want)
	}
	// Published again after the service's summary changed: still the
	// counts of the node list.
	r.bridge.PublishAll(ctx)
	var metrics MetricsPayload
	json.Unmarshal(r.obs.nth(t, ctx, "mf/status/metrics", 2), &metrics)
	if payload.NodeCount != 3 || metrics.Metrics.MeshNodes != 3 || metrics.Metrics.OnlineNodes != 2 {
		t.Fatalf("counts: status/nodes %d, status/metrics %d nodes %d online; want 3, 3, 2", payload.NodeCount, metrics.Metrics.MeshNodes, metrics.Metrics.OnlineNodes)
	}
	for _, n := range nodes {
		doc, _ := json.Marshal(n)
		var fields map[string]any
		json.Unmarshal(doc, &fields)
		var got map[string]any
		json.Unmarshal(r.obs.wait(t, ctx, "mf/status/node/"+itoa(int(n.ID)), nil), &got)
		for k, v := range fields {
			if k == "firmware_version" {
				continue // the envelope's key, with the node's value
			}
			if fmt.Sprint(got[k]) != fmt.Sprint(v) {
				t.Errorf("status/node/%d: %s = %v, REST has %v", n.ID, k, got[k], v)
			}
		}
		if got["firmware_version"] != n.Firmware {
			t.Errorf("status/node/%d: firmware_version %v, want %q", n.ID, got["firmware_version"], n.Firmware)
		}
	}
	// Unknown values are left out, not sent as sentinels.
	if strings.Contains(string(payload.Nodes), `"last_seen":"0001`) || strings.Count(string(payload.Nodes), `"free_memory_bytes"`) != 1 {
		t.Errorf("unknown values in %s", payload.Nodes)
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// retained subscribes a new client to topics and returns the retained
// payload of each.
func retained(t *testing.T, ctx context.Context, url string, topics []string) map[string]string {
	t.Helper()
	got := make(chan Message, 64)
	c, err := Dial(ctx, ClientConfig{URL: url, ClientID: "late-" + strconv.Itoa(len(topics))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	for _, topic := range topics {
		if err := c.Subscribe(ctx, topic, func(m Message) { got <- m }); err != nil {
			t.Fatal(err)
		}
	}
	out := map[string]string{}
	for len(out) < len(topics) {
		select {
		case m := <-got:
			out[m.Topic] = string(m.Payload)
		case <-ctx.Done():
			t.Fatalf("retained messages: got %d of %d topics: %v", len(out), len(topics), out)
		}
	}
	return out
}

// A service that fails, or does not answer before the cycle's ctx ends,
// makes the bridge skip publishing (logging it once per refusalLogGap),
// so the retained status stays the last good one instead of becoming
// empty documents; control requests get the error.
func TestFailingServiceKeepsRetainedStatus(t *testing.T) {
	br, err := StartBroker("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var logs syncBuffer
	r := newRig(t, ctx, br.URL(), func(c *BridgeConfig) {
		c.PerNode = true
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	topics := []string{"mf/status/nodes", "mf/status/topology", "mf/status/metrics", "mf/status/alerts",
		"mf/status/node/1", "mf/status/node/3907768579", "mf/status/node/17", "mf/ota/announce"}
	for _, topic := range topics {
		r.obs.wait(t, ctx, topic, nil)
	}
	good := retained(t, ctx, br.URL(), topics)
	if !strings.Contains(good["mf/status/nodes"], `"node_count":3`) {
		t.Fatalf("status/nodes before the failure: %s", good["mf/status/nodes"])
	}

	faults := []struct {
		name  string
		fault func(context.Context, string) error
		wait  time.Duration // bound of the cycle's ctx
	}{
		{"fails", fleettest.Fail(fmt.Errorf("gateway is not running: %w", fleet.ErrUnavailable)), time.Minute},
		{"hangs", fleettest.Hang, 50 * time.Millisecond},
	}
	for _, f := range faults {
		r.svc.SetFault(f.fault)
		cycle, stop := context.WithTimeout(ctx, f.wait)
		r.bridge.PublishAll(cycle)
		stop()
		if got := retained(t, ctx, br.URL(), topics); fmt.Sprint(got) != fmt.Sprint(good) {
			t.Fatalf("service %s: retained state changed\nbefore %v\nafter  %v", f.name, good, got)
		}
	}
	// A request waits as long as the service does (the gateway bounds
	// that), then answers with its error.
	r.svc.SetFault(faults[0].fault)
	resp := request(t, ctx, r, `{"correlation_id":"list-1","action":"list"}`)
	if resp.OK || !strings.Contains(resp.Error, "gateway node loop busy or stopped") {
		t.Fatalf("list answered %+v, want the service's error", resp)
	}
	if n := strings.Count(logs.String(), "mqtt status not published"); n != 1 {
		t.Fatalf("%d log lines for 2 skipped cycles within the same time, want 1:\n%s", n, logs.String())
	}

	// Answering again, the service's state is published on the next cycle.
	r.svc.SetFault(nil)
	r.svc.Update(func(m *fleettest.Memory) { m.Sum.HealthScore = 50 })
	r.bridge.PublishAll(ctx)
	r.obs.wait(t, ctx, "mf/status/metrics", func(p []byte) bool { return strings.Contains(string(p), `"health_score":50`) })
}

// A connection that comes up before Run has subscribed publishes nothing:
// clients take a published status as the sign that requests are heard.
func TestOnConnectBeforeSubscribePublishesNothing(t *testing.T) {
	svc := &fleettest.Memory{NodeList: []fleet.Node{{ID: 1, Status: "online"}}}
	var calls atomic.Int32
	svc.SetFault(func(ctx context.Context, method string) error {
		calls.Add(1)
		return nil
	})
	b := NewBridge(svc, nil, BridgeConfig{Prefix: "mf", Nodes: true})
	b.OnConnect(context.Background())
	if n := calls.Load(); n != 0 {
		t.Fatalf("OnConnect before Run subscribed asked the service %d times, want nothing published", n)
	}
}
