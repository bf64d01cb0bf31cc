package status

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// meshOf builds root — A — B with a collector on the root (with its own
// reporter) and reporters on A and B.
type testMesh struct {
	*fakeMesh
	col           *Collector
	local, ra, rb *Reporter
	root, a, b    *fakeHost
	memA          *memory
}

func newTestMesh(t *testing.T, ccfg CollectorConfig) *testMesh {
	m := newFakeMesh(t)
	tm := &testMesh{fakeMesh: m, memA: &memory{free: 30_000}}
	rcfg := func(mem *memory, fw string) ReporterConfig {
		return ReporterConfig{Interval: 30 * time.Second, Providers: Providers{
			Firmware:   func() (string, string) { return fw, "md5-" + fw },
			FreeMemory: mem.read,
		}}
	}
	tm.local = NewReporter(rcfg(&memory{free: 1 << 30}, "gw-1.0"), m.now)
	ccfg.Local = tm.local
	tm.col = NewCollector(ccfg, m.now)
	tm.ra = NewReporter(rcfg(tm.memA, "2.0.0"), m.now)
	tm.rb = NewReporter(rcfg(&memory{free: 40_000}, "2.0.0"), m.now)
	tm.root = m.add(rootID, true, tm.local, tm.col)
	tm.a = m.add(nodeA, false, tm.ra)
	tm.b = m.add(nodeB, false, tm.rb)
	m.link(rootID, nodeA)
	m.link(nodeA, nodeB)
	return tm
}

func TestCollectorBuildsModelFromTelemetry(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{})
	tm.run(epoch.Add(70 * time.Second))
	model := tm.col.Model()

	for _, c := range []struct {
		id   uint32
		r    *Reporter
		hops int
		mem  uint32
	}{{nodeA, tm.ra, 1, 30_000}, {nodeB, tm.rb, 2, 40_000}, {rootID, tm.local, 0, 1 << 30}} {
		st, ok := model.Node(c.id)
		if !ok || !st.Online || !st.InTopology || st.Hops != c.hops {
			t.Fatalf("node %d: %+v", c.id, st)
		}
		if st.Metrics.FreeMemory != c.mem || st.Metrics.Uptime == 0 {
			t.Errorf("node %d metrics %+v", c.id, st.Metrics)
		}
		// The firmware strings came from the report the collector asked
		// for when the hash in the frames was new to it.
		if c.id != rootID && (st.Metrics.FirmwareVersion != "2.0.0" || st.Metrics.FirmwareMD5 != "md5-2.0.0") {
			t.Errorf("node %d firmware %q %q", c.id, st.Metrics.FirmwareVersion, st.Metrics.FirmwareMD5)
		}
	}
	// Frames at 0, 30, 60 s; the model's latest uptime is the last frame's.
	if st, _ := model.Node(nodeA); st.Source != SourceTelemetry || st.Metrics.Uptime != 60 || st.LastSeen != epoch.Add(60*time.Second) {
		t.Errorf("node A source %s uptime %d last seen %v", st.Source, st.Metrics.Uptime, st.LastSeen.Sub(epoch))
	}
	// One firmware query: A and B run the same firmware, and A's answer
	// names it for both.
	qs := sentOfType[*StatusQuery](t, tm.root, TypeStatusQuery)
	if len(qs) != 1 || qs[0].Dest != nodeA || qs[0].ID != 0 {
		t.Errorf("firmware queries %+v, want one to A", qs)
	}
	if got := tm.col.Stats(); got.Frames != 6 || got.FramesRefused != 0 || got.Reports != 1 {
		t.Errorf("collector stats %+v", got)
	}
	links := model.links()
	want := []link{{rootID, nodeA, 1}, {nodeA, nodeB, 2}}
	if !slices.Equal(links, want) || model.MaxHops() != 2 {
		t.Errorf("links %v, want %v", links, want)
	}
	// A has 30 000 bytes free: memory component (30000−10240)/(32768−10240)
	// = 0.877, score 100·(0.3·0.877 + 0.25 + 0.25 + 0.2) = 96.3 → 96; the
	// others score 100, the mesh (100+96+100)/3 = 98.7 → 99.
	h := tm.col.Health()
	if h.NodeCount != 3 || h.Online != 3 || h.Reported != 3 || h.Score != 99 || h.Nodes[1].Score != 96 {
		t.Errorf("health %+v", h)
	}
	if hist := model.history(nodeA); len(hist) != 4 { // 3 frames + 1 report
		t.Errorf("history of A has %d samples", len(hist))
	}
}

func TestCollectorRecoversLostKeyframe(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{})
	dropped := 0
	tm.drop = func(from, to uint32, msg []byte) bool {
		p, err := Decode(msg)
		if err != nil || from != nodeA || dropped > 0 {
			return false
		}
		if tp, ok := p.(*TelemetryPackage); ok {
			h, _ := telemetry.ParseHeader(tp.Frame)
			if h.Keyframe {
				dropped++
				return true
			}
		}
		return false
	}
	tm.run(epoch.Add(36 * time.Second))
	st := tm.col.Stats()
	if dropped != 1 || st.FramesRefused != 1 || st.KeyframeRequests != 1 {
		t.Fatalf("dropped %d, stats %+v", dropped, st)
	}
	// The keyframe request made A send a keyframe at once (30 s).
	n, ok := tm.col.Model().Node(nodeA)
	if !ok || !n.Online || n.Metrics.Uptime != 30 || n.LastSeen != epoch.Add(30*time.Second) {
		t.Fatalf("node A after recovery %+v", n)
	}
	ctl := sentOfType[*TelemetryControl](t, tm.root, TypeTelemetryControl)
	if len(ctl) != 1 || ctl[0].Dest != nodeA || !ctl[0].Keyframe {
		t.Fatalf("controls %+v", ctl)
	}
}

func TestCollectorOfflineDetection(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{})
	tm.run(epoch.Add(40 * time.Second)) // A's frames at 0 s and 30 s
	silent := true
	tm.drop = func(from, to uint32, msg []byte) bool { return silent && from == nodeA }
	// A's next frame (60 s) is lost: offline at 60 + 3 s, no later.
	tm.run(epoch.Add(80 * time.Second))
	var offline *NodeOnline
	for _, ev := range eventsOf[NodeOnline](tm.root) {
		if ev.Node == nodeA && !ev.Online {
			offline = &ev
		}
	}
	if offline == nil {
		t.Fatal("node A never went offline")
	}
	expected := epoch.Add(60 * time.Second)
	if offline.At.Sub(expected) > 5*time.Second || offline.At.Before(expected) {
		t.Fatalf("offline at %v, the missed frame was due at %v", offline.At.Sub(epoch), expected.Sub(epoch))
	}
	if offline.At != epoch.Add(63*time.Second) || offline.Reason != "overdue" {
		t.Errorf("offline %+v", offline)
	}
	if st, _ := tm.col.Model().Node(nodeA); st.Online || st.OfflineSince != offline.At {
		t.Errorf("model %+v", st)
	}
	active := tm.col.Alerts().Active()
	if len(active) != 1 || active[0].Kind != alert.KindNodeOffline || active[0].Node != nodeA || active[0].Raised != offline.At {
		t.Fatalf("alerts %+v", active)
	}
	if h := tm.col.Health(); h.Online != 2 {
		t.Errorf("health %+v", h)
	}
	// B, behind A, keeps reporting through it.
	if st, _ := tm.col.Model().Node(nodeB); !st.Online {
		t.Error("node B offline")
	}
	silent = false
	tm.run(epoch.Add(100 * time.Second)) // A's frame at 90 s
	if st, _ := tm.col.Model().Node(nodeA); !st.Online {
		t.Fatal("node A did not come back")
	}
	if len(tm.col.Alerts().Active()) != 0 {
		t.Errorf("alerts after recovery %+v", tm.col.Alerts().Active())
	}
	if r := tm.col.Alerts().Recent(); len(r) != 1 || r[0].Cleared != epoch.Add(90*time.Second) {
		t.Errorf("cleared alerts %+v", r)
	}
}

func TestCollectorNodeLeavingLayoutGoesOffline(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{})
	tm.run(epoch.Add(40 * time.Second))
	tm.setUp(nodeB, false)
	tm.run(epoch.Add(41 * time.Second))
	st, _ := tm.col.Model().Node(nodeB)
	if st.Online || st.InTopology || st.OfflineSince != epoch.Add(40*time.Second) {
		t.Fatalf("node B %+v", st)
	}
}

func TestCollectorQueryRetriesAndReportsMissing(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{})
	stock := tm.add(3003, false) // a node without a reporter
	tm.link(nodeB, 3003)
	tm.run(epoch.Add(40 * time.Second))
	sentBefore := len(sentOfType[*StatusQuery](t, tm.root, TypeStatusQuery))

	start := tm.now
	id, err := tm.col.Query(tm.now, nil, QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tm.run(epoch.Add(80 * time.Second))
	dones := eventsOf[QueryDone](tm.root)
	if len(dones) != 1 || dones[0].ID != id {
		t.Fatalf("query results %+v", dones)
	}
	d := dones[0]
	if !slices.Equal(d.Answered, []uint32{rootID, nodeA, nodeB}) || !slices.Equal(d.Missing, []uint32{3003}) || len(d.Cached) != 0 {
		t.Fatalf("result %+v", d)
	}
	qs := sentOfType[*StatusQuery](t, tm.root, TypeStatusQuery)[sentBefore:]
	// One broadcast to all, then two retries to the silent node alone.
	if len(qs) != 3 || qs[0].Dest != 0 || len(qs[0].Targets) != 0 || qs[1].Dest != 3003 || qs[2].Dest != 3003 {
		t.Fatalf("queries sent %+v", qs)
	}
	// It ended after the first attempt (5 s + 2 s spread) and two more of 5 s.
	var doneAt time.Time
	for i, ev := range tm.root.events {
		if _, ok := ev.(QueryDone); ok {
			doneAt = tm.root.eventTimes[i]
		}
	}
	if want := start.Add(17 * time.Second); !doneAt.Equal(want) {
		t.Errorf("query done at %v, want %v", doneAt.Sub(epoch), want.Sub(epoch))
	}
	_ = stock

	// With a cache age, the nodes that stream are not asked again.
	id, err = tm.col.Query(tm.now, []uint32{nodeA, nodeB, 3003}, QueryOptions{MaxAge: time.Minute, Retries: -1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tm.run(tm.now.Add(5 * time.Second))
	dones = eventsOf[QueryDone](tm.root)
	d = dones[len(dones)-1]
	if d.ID != id || !slices.Equal(d.Cached, []uint32{nodeA, nodeB}) || !slices.Equal(d.Missing, []uint32{3003}) {
		t.Fatalf("cached query %+v", d)
	}
	if _, err := NewCollector(CollectorConfig{}, epoch).Query(epoch, nil, QueryOptions{}); err == nil {
		t.Error("query on a detached collector succeeded")
	}
}

func TestCollectorEnhancedFormQuery(t *testing.T) {
	tm := newTestMesh(t, CollectorConfig{})
	tm.run(epoch.Add(10 * time.Second))
	if _, err := tm.col.Query(tm.now, []uint32{nodeB}, QueryOptions{Form: FormEnhanced}); err != nil {
		t.Fatal(err)
	}
	tm.run(tm.now.Add(time.Second))
	dones := eventsOf[QueryDone](tm.root)
	if len(dones) != 1 || !slices.Equal(dones[0].Answered, []uint32{nodeB}) {
		t.Fatalf("%+v", dones)
	}
	st, _ := tm.col.Model().Node(nodeB)
	if st.Source != SourceEnhanced || st.Metrics.FreeMemory != 39*1024 || st.Metrics.FirmwareVersion != "2.0.0" {
		t.Fatalf("node B from its 604: %+v", st)
	}
}

// The example of docs/protocol.md §9.5, as an ESP node sends it, native and
// wrapped in a broadcast.
const example604 = `{"from":12345,"routing":2,"type":604,"status":7,"uptime":86400,"mem":128,"wifi":75,"fw":"1.2.3-alteriom","fwMD5":"abc123def456","nodes":15,"conns":4,"msgRx":1234,"msgTx":5678,"msgDrop":12,"latency":45,"loss":2,"throughput":1024,"alerts":3,"lastErr":"Connection timeout"}`

func TestCollectorReadsStockEnhancedStatus(t *testing.T) {
	want := Metrics{
		DeviceStatus: 7, Uptime: 86400, FreeMemory: 128 * 1024, WiFi: 75,
		FirmwareVersion: "1.2.3-alteriom", FirmwareMD5: "abc123def456",
		FirmwareHash: FirmwareHash("1.2.3-alteriom", "abc123def456"),
		Nodes:        15, Connections: 4, MessagesRx: 1234, MessagesTx: 5678, MessagesDropped: 12,
		LatencyUs: 45_000, LossPermille: 20, Throughput: 1024,
		Alerts: FlagLowMemory | FlagHighLatency, LastError: "Connection timeout",
	}
	wrapped := protocol.Broadcast{From: 12345, Msg: example604}
	for name, msg := range map[string]string{"native": example604, "wrapped": string(wrapped.AppendJSON(nil))} {
		m := newFakeMesh(t)
		col := NewCollector(CollectorConfig{}, m.now)
		root := m.add(rootID, true, col)
		m.add(12345, false)
		m.link(rootID, 12345)
		m.inject(rootID, msg)
		st, ok := col.Model().Node(12345)
		if !ok || st.Metrics != want || st.Source != SourceEnhanced || !st.Online {
			t.Errorf("%s: %+v\nwant %+v", name, st.Metrics, want)
		}
		// Its alert bits are alerts of the node.
		active := col.Alerts().Active()
		if len(active) != 2 || active[0].Kind != alert.KindLowMemory || active[1].Kind != alert.KindHighLatency {
			t.Errorf("%s: alerts %+v", name, active)
		}
		if ups := eventsOf[NodeUpdated](root); len(ups) != 1 || ups[0].Source != SourceEnhanced {
			t.Errorf("%s: events %+v", name, ups)
		}
	}
}

// conformanceVectors reads the packages of one class from the vectors
// made with the C++ library.
func conformanceVectors(t *testing.T, class string) (in []string, out []map[string]any) {
	t.Helper()
	f, err := os.Open("../testdata/conformance/packages.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v struct {
			Class string          `json:"class"`
			In    json.RawMessage `json:"in"`
			Out   map[string]any  `json:"out"`
		}
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if v.Class == class {
			in = append(in, string(v.In))
			out = append(out, v.Out)
		}
	}
	if len(in) == 0 {
		t.Fatalf("no %s vectors", class)
	}
	return in, out
}

func num(v any) uint32 { return uint32(v.(float64)) }

// TestCollectorStockVectors feeds every 202 and 604 the C++ library was
// given and checks the model holds what the C++ object held ("out").
func TestCollectorStockVectors(t *testing.T) {
	for _, class := range []string{"StatusPackage", "EnhancedStatusPackage"} {
		in, out := conformanceVectors(t, class)
		for i := range in {
			m := newFakeMesh(t)
			col := NewCollector(CollectorConfig{}, m.now)
			m.add(rootID, true, col)
			m.inject(rootID, in[i])
			o := out[i]
			from := num(o["from"])
			st, ok := col.Model().Node(from)
			if !ok {
				t.Fatalf("%s %d: node %d not in the model", class, i, from)
			}
			got := st.Metrics
			if got.DeviceStatus != uint8(num(o["status"])) || got.Uptime != num(o["uptime"]) ||
				got.FreeMemory != num(o["mem"])*1024 || got.WiFi != uint8(num(o["wifi"])) ||
				got.FirmwareVersion != o["fw"].(string) {
				t.Errorf("%s %d: %+v from %s", class, i, got, in[i])
			}
			if class == "EnhancedStatusPackage" {
				if got.FirmwareMD5 != o["fwMD5"].(string) || got.Nodes != uint16(num(o["nodes"])) ||
					got.Connections != uint8(num(o["conns"])) || got.MessagesRx != num(o["msgRx"]) ||
					got.MessagesTx != num(o["msgTx"]) || got.MessagesDropped != num(o["msgDrop"]) ||
					got.LatencyUs != num(o["latency"])*1000 || got.LossPermille != uint16(min(num(o["loss"])*10, 1000)) ||
					got.Throughput != num(o["throughput"]) || got.Alerts != AlertFlags(num(o["alerts"])) ||
					got.LastError != o["lastErr"].(string) {
					t.Errorf("%s %d: %+v from %s", class, i, got, in[i])
				}
			}
		}
	}
}

func TestCollectorStockMetricsAndHealthCheck(t *testing.T) {
	m := newFakeMesh(t)
	col := NewCollector(CollectorConfig{}, m.now)
	m.add(rootID, true, col)
	m.add(77, false)
	m.link(rootID, 77)
	mp := protocol.NewMetrics(77)
	mp.Heap, mp.RSSI, mp.AvgLat, mp.PktsDrop, mp.Interval = 50_000, -85, 120, 3, 60_000
	m.inject(rootID, string(mp.AppendJSON(nil)))
	hc := protocol.NewHealthCheck(77)
	hc.Uptime, hc.Loss, hc.Problems = 3600, 15, 0x0001|0x0008|0x0002
	wrapped := protocol.Broadcast{From: 77, Msg: string(hc.AppendJSON(nil))}
	m.inject(rootID, string(wrapped.AppendJSON(nil)))
	st, _ := col.Model().Node(77)
	g := st.Metrics
	if g.FreeMemory != 50_000 || g.RSSI != -85 || g.WiFi != 30 || g.LatencyUs != 120_000 || g.MessagesDropped != 3 ||
		g.ReportInterval != 60 || g.Uptime != 3600 || g.LossPermille != 150 || g.Alerts != FlagLowMemory|FlagPacketLoss {
		t.Fatalf("merged 204 + 605: %+v", g)
	}
	if st.Source != SourceHealth || !st.Online {
		t.Errorf("source %s online %v", st.Source, st.Online)
	}
	// 60 s interval, heard only through stock packages: offline after
	// 3 intervals + grace.
	if want := m.now.Add(3*60*time.Second + DefaultGrace); st.Deadline != want {
		t.Errorf("deadline %v, want %v", st.Deadline.Sub(epoch), want.Sub(epoch))
	}
	if col.Stats().StockPackages != 2 {
		t.Errorf("stats %+v", col.Stats())
	}
}

func TestCollectorIgnoresHostilePackages(t *testing.T) {
	m := newFakeMesh(t)
	col := NewCollector(CollectorConfig{}, m.now)
	m.add(rootID, true, col)
	for _, msg := range []string{
		`{"from":5,"dest":1000,"routing":1,"type":700,"frame":"not base64!"}`,
		`{"from":5,"dest":1000,"routing":1,"type":700,"frame":"AAAA"}`,
		`{"from":5,"dest":1000,"routing":1,"type":700,"frame":17}`,
		`{"from":5,"dest":1000,"routing":1,"type":702,"qid":1,"metrics":{"uptime":-1}}`,
		`{"from":0,"dest":1000,"routing":1,"type":702,"qid":1,"metrics":{}}`,
		`{"from":5,"routing":2,"type":604,"uptime":"x"}`,
	} {
		m.inject(rootID, msg)
	}
	if _, ok := col.Model().Node(5); !ok {
		// The 604 with a string uptime reads as 0, as the C++ does: the
		// node is known, and nothing else got in.
		t.Fatal("lenient 604 not taken")
	}
	st := col.Stats()
	if st.FramesBad != 1 || st.BadPackages != 4 || st.Frames != 0 || st.Reports != 0 {
		t.Fatalf("stats %+v", st)
	}
}
