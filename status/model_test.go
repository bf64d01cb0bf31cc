package status

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

func set(m Metrics) func(*Metrics) { return func(dst *Metrics) { *dst = m } }

func TestModelOfflineDeadlines(t *testing.T) {
	md := newModel(ModelConfig{})
	// A streaming node stating a 20 s interval: offline 20 s + 3 s grace
	// after its last frame.
	md.Observe(epoch, 1, SourceTelemetry, set(Metrics{Uptime: 10, ReportInterval: 20}))
	// A stock node (no interval): 3 × 30 s + 3 s.
	md.Observe(epoch, 2, SourceEnhanced, set(Metrics{Uptime: 10}))
	if d := md.nextDeadline(); !d.Equal(epoch.Add(23 * time.Second)) {
		t.Fatalf("next deadline %v", d.Sub(epoch))
	}
	if ts := md.tick(epoch.Add(23*time.Second - 1)); len(ts) != 0 {
		t.Fatalf("early transition %+v", ts)
	}
	ts := md.tick(epoch.Add(23 * time.Second))
	if len(ts) != 1 || ts[0].Node != 1 || ts[0].Online || ts[0].At != epoch.Add(23*time.Second) || ts[0].Reason != "overdue" {
		t.Fatalf("transitions %+v", ts)
	}
	if d := md.nextDeadline(); !d.Equal(epoch.Add(93 * time.Second)) {
		t.Fatalf("next deadline %v", d.Sub(epoch))
	}
	// Coming back is reported by Observe.
	if _, came := md.Observe(epoch.Add(40*time.Second), 1, SourceTelemetry, set(Metrics{Uptime: 50, ReportInterval: 20})); !came {
		t.Fatal("no online transition")
	}
	if _, came := md.Observe(epoch.Add(41*time.Second), 1, SourceTelemetry, set(Metrics{Uptime: 51, ReportInterval: 20})); came {
		t.Fatal("online twice")
	}
	if known, online := md.counts(); known != 2 || online != 2 {
		t.Fatalf("counts %d %d", known, online)
	}
	// A node heard only through a query reply counts as a reporting node.
	md.Observe(epoch.Add(41*time.Second), 3, SourceQuery, set(Metrics{ReportInterval: 10}))
	if st, _ := md.Node(3); st.Deadline != epoch.Add(41*time.Second+3*10*time.Second+DefaultGrace) {
		t.Fatalf("query node deadline %v", st.Deadline.Sub(epoch))
	}
}

func TestModelHistoryRing(t *testing.T) {
	md := newModel(ModelConfig{HistorySize: 5})
	for i := 0; i < 12; i++ {
		md.Observe(epoch.Add(time.Duration(i)*time.Second), 1, SourceTelemetry, func(m *Metrics) { m.Uptime = uint32(i) })
	}
	h := md.history(1)
	if len(h) != 5 {
		t.Fatalf("%d samples", len(h))
	}
	for i, s := range h {
		if s.Metrics.Uptime != uint32(7+i) || s.At != epoch.Add(time.Duration(7+i)*time.Second) {
			t.Fatalf("sample %d: %+v", i, s)
		}
	}
	if md.history(99) != nil {
		t.Fatal("history of an unknown node")
	}
}

func TestModelMergesPartialSources(t *testing.T) {
	md := newModel(ModelConfig{})
	md.Observe(epoch, 1, SourceEnhanced, func(m *Metrics) {
		m.FirmwareVersion, m.FirmwareMD5, m.FreeMemory, m.MessagesRx = "1.0", "aa", 30_000, 5
	})
	// A telemetry frame with the same firmware keeps the strings.
	v := telemetry.Values{Uptime: 60, FreeMemory: 29_000, FirmwareHash: FirmwareHash("1.0", "aa")}
	st, _ := md.Observe(epoch.Add(time.Second), 1, SourceTelemetry, func(m *Metrics) { m.applyValues(v) })
	if st.Metrics.FirmwareVersion != "1.0" || st.Metrics.FreeMemory != 29_000 || !md.knowsFirmware(1) {
		t.Fatalf("after frame %+v", st.Metrics)
	}
	// A new firmware hash clears them until the model learns it.
	v.FirmwareHash = FirmwareHash("1.1", "bb")
	st, _ = md.Observe(epoch.Add(2*time.Second), 1, SourceTelemetry, func(m *Metrics) { m.applyValues(v) })
	if st.Metrics.FirmwareVersion != "" || md.knowsFirmware(1) {
		t.Fatalf("after update %+v", st.Metrics)
	}
	// Another node reports 1.1 in full; node 1's next frame gets the names.
	md.Observe(epoch.Add(3*time.Second), 2, SourceQuery, set(Metrics{FirmwareVersion: "1.1", FirmwareMD5: "bb"}))
	st, _ = md.Observe(epoch.Add(4*time.Second), 1, SourceTelemetry, func(m *Metrics) { m.applyValues(v) })
	if st.Metrics.FirmwareVersion != "1.1" || st.Metrics.FirmwareMD5 != "bb" || !md.knowsFirmware(1) {
		t.Fatalf("after learning %+v", st.Metrics)
	}
	if st.LastFull != epoch || st.Source != SourceTelemetry {
		t.Fatalf("last full %v source %s", st.LastFull, st.Source)
	}
}

func TestModelCountsReboots(t *testing.T) {
	md := newModel(ModelConfig{})
	md.Observe(epoch, 1, SourceTelemetry, set(Metrics{Uptime: 1000}))
	md.Observe(epoch.Add(30*time.Second), 1, SourceTelemetry, set(Metrics{Uptime: 1031})) // jitter, no reboot
	md.Observe(epoch.Add(60*time.Second), 1, SourceTelemetry, set(Metrics{Uptime: 20}))
	st, _ := md.Node(1)
	if st.Reboots != 1 || st.LastReboot != epoch.Add(60*time.Second) {
		t.Fatalf("reboots %d at %v", st.Reboots, st.LastReboot)
	}
}

func TestModelTopology(t *testing.T) {
	md := newModel(ModelConfig{})
	md.Observe(epoch, 5, SourceTelemetry, set(Metrics{}))
	md.Observe(epoch, 9, SourceTelemetry, set(Metrics{}))
	tree := protocol.NodeTree{NodeID: 1, Root: true, Subs: []protocol.NodeTree{
		{NodeID: 2, Subs: []protocol.NodeTree{{NodeID: 5}, {NodeID: 6, Subs: []protocol.NodeTree{{NodeID: 7}}}}},
		{NodeID: 3},
	}}
	ts := md.setTopology(epoch, tree)
	if len(ts) != 1 || ts[0].Node != 9 || ts[0].Reason != "left mesh" {
		t.Fatalf("transitions %+v", ts)
	}
	wantLinks := []link{{1, 2, 1}, {2, 5, 2}, {2, 6, 2}, {6, 7, 3}, {1, 3, 1}}
	if got := md.links(); !slices.Equal(got, wantLinks) {
		t.Fatalf("links %v", got)
	}
	if md.MaxHops() != 3 {
		t.Fatalf("max hops %d", md.MaxHops())
	}
	var hops []int
	for _, n := range md.Nodes() {
		hops = append(hops, n.Hops)
	}
	// Nodes 1, 2, 3, 5, 6, 7, 9 by id.
	if !slices.Equal(hops, []int{0, 1, 1, 2, 2, 3, -1}) {
		t.Fatalf("hops %v", hops)
	}
	h := md.health(nil)
	if h.NodeCount != 6 || h.Known != 7 || h.Reported != 2 || h.Online != 1 || h.MaxHops != 3 {
		t.Fatalf("health %+v", h)
	}
	// The node that left comes back into the layout: it stays offline
	// until it reports.
	tree.Subs = append(tree.Subs, protocol.NodeTree{NodeID: 9})
	if ts := md.setTopology(epoch, tree); len(ts) != 0 {
		t.Fatalf("transitions %+v", ts)
	}
	if st, _ := md.Node(9); st.Online || !st.InTopology || st.Hops != 1 {
		t.Fatalf("node 9 %+v", st)
	}
	if top := md.Topology(); !top.Equal(tree) {
		t.Fatalf("topology %v", top)
	}
}

func TestHealthScore(t *testing.T) {
	c := HealthConfig{}
	cases := []struct {
		name   string
		s      NodeState
		alerts int
		want   int
	}{
		{"perfect", NodeState{Online: true, Metrics: Metrics{FreeMemory: 50_000, LatencyUs: 50_000, LossPermille: 5}}, 0, 100},
		{"unknowns count as fine", NodeState{Online: true}, 0, 100},
		{"offline", NodeState{Metrics: Metrics{FreeMemory: 50_000}}, 0, 0},
		// memory at the low mark: 0.3 lost.
		{"memory exhausted", NodeState{Online: true, Metrics: Metrics{FreeMemory: 10 * 1024}}, 0, 70},
		// latency halfway between 100 ms and 1 s: 0.25 · 0.5 lost.
		{"slow", NodeState{Online: true, Metrics: Metrics{LatencyUs: 550_000}}, 0, 88},
		// loss 105 ‰: halfway between 10 and 200.
		{"lossy", NodeState{Online: true, Metrics: Metrics{LossPermille: 105}}, 0, 88},
		// two alerts: 0.2 · 0.5 lost; five: all 0.2.
		{"two alerts", NodeState{Online: true}, 2, 90},
		{"five alerts", NodeState{Online: true}, 5, 80},
	}
	for _, tc := range cases {
		if got := c.score(&tc.s, tc.alerts); got.Score != tc.want {
			t.Errorf("%s: %+v, want %d", tc.name, got, tc.want)
		}
	}
	// Custom weights: only memory counts.
	c = HealthConfig{MemoryWeight: 1}
	s := NodeState{Online: true, Metrics: Metrics{FreeMemory: 10*1024 + (32*1024-10*1024)/4, LatencyUs: 5_000_000}}
	if got := c.score(&s, 3).Score; got != 25 {
		t.Errorf("memory-only score %d", got)
	}
	if r := ramp(5, 0, 10); math.Abs(r-0.5) > 1e-9 {
		t.Errorf("ramp %v", r)
	}
	if md := newModel(ModelConfig{}); md.health(nil).Score != 100 {
		t.Error("empty model scores below 100")
	}
}

func TestAlertFlagNames(t *testing.T) {
	if s := (FlagLowMemory | FlagWiFiWeak | FlagRebootLoop).String(); s != "LOW_MEMORY|WIFI_WEAK|REBOOT_LOOP" {
		t.Fatal(s)
	}
	if AlertFlags(0).String() != "none" || AlertFlags(0xff).Count() != 8 {
		t.Fatal("none / count")
	}
	want := []string{"LOW_MEMORY", "HIGH_LATENCY", "PACKET_LOSS", "CONNECTION_LOST", "OTA_FAILED", "SENSOR_ERROR", "WIFI_WEAK", "REBOOT_LOOP"}
	for i, w := range want {
		if got := AlertFlags(1 << i).String(); got != w {
			t.Errorf("bit %d: %s, want %s", i, got, w)
		}
	}
	if !(FlagOTAFailed | FlagSensorError).Has(FlagOTAFailed) || FlagOTAFailed.Has(FlagOTAFailed|FlagSensorError) {
		t.Fatal("Has")
	}
}

func TestThresholdFlags(t *testing.T) {
	var th Thresholds
	m := Metrics{FreeMemory: 9000, LatencyUs: 600_000, LossPermille: 120, RSSI: -85, OTAState: OTAFailed}
	want := FlagLowMemory | FlagHighLatency | FlagPacketLoss | FlagWiFiWeak | FlagOTAFailed
	if got := th.flags(&m); got != want {
		t.Fatalf("flags %v, want %v", got, want)
	}
	if got := th.flags(&Metrics{}); got != 0 {
		t.Fatalf("unknown values set %v", got)
	}
}

func TestPackagesRoundTrip(t *testing.T) {
	pkgs := []protocol.Package{
		&TelemetryPackage{From: 3907768579, Dest: 2428398258, Frame: []byte{1, 5, 0, 0, 1, 2, 3, 4, 5, 0xff}},
		&StatusQuery{From: 1, Dest: 2, ID: 9, Form: FormFull},
		&StatusQuery{From: 1, ID: 10, Targets: []uint32{2, 3}, Form: FormEnhanced, Spread: 1500 * time.Millisecond},
		&StatusReport{From: 2, Dest: 1, QueryID: 9, Metrics: Metrics{Uptime: 5, RSSI: -70, Alerts: FlagSensorError, FirmwareVersion: "a<b>&c", OTAState: OTAVerifying}},
		&TelemetryControl{From: 1, Dest: 2, Keyframe: true},
	}
	for _, p := range pkgs {
		raw := p.AppendJSON(nil)
		got, err := Decode(raw)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		a, _ := json.Marshal(p)
		b, _ := json.Marshal(got)
		if string(a) != string(b) {
			t.Errorf("round trip %s:\n got %s\nwant %s", raw, b, a)
		}
		h, err := protocol.ParseHeader(raw)
		if err != nil || h.Type != p.PackageType() || !IsStatusType(h.Type) {
			t.Errorf("%s: header %+v %v", raw, h, err)
		}
	}
	// Key order and routing as a C++ SinglePackage / BroadcastPackage.
	want := map[string]string{
		string(pkgs[0].AppendJSON(nil)): `{"from":3907768579,"dest":2428398258,"routing":1,"type":700,"frame":"AQUAAAECAwQF/w=="}`,
		string(pkgs[2].AppendJSON(nil)): `{"from":1,"routing":2,"type":701,"qid":10,"targets":[2,3],"form":"enhanced","spread":1500}`,
		string(pkgs[4].AppendJSON(nil)): `{"from":1,"dest":2,"routing":1,"type":703,"keyframe":true}`,
	}
	for got, w := range want {
		if got != w {
			t.Errorf("got  %s\nwant %s", got, w)
		}
	}
	if !strings.Contains(string(pkgs[1].AppendJSON(nil)), `"targets":[]`) {
		t.Error("empty target list not written as []")
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, bad := range []string{
		`{"from":1,"routing":2,"type":701,"qid":1,"form":"short"}`,
		`{"from":1,"routing":2,"type":701,"qid":-1}`,
		`{"from":1,"routing":2,"type":701,"qid":1,"spread":-5}`,
		`{"from":1,"routing":2,"type":701,"qid":1,"targets":"all"}`,
		`{"from":1,"dest":2,"routing":1,"type":700,"frame":"` + strings.Repeat("A", 200) + `"}`,
		`{"from":1,"dest":2,"routing":1,"type":700,"frame":"%%%%"}`,
		`{"from":1,"dest":2,"routing":1,"type":702,"qid":1,"metrics":{"alerts":256}}`,
		`{"from":1,"dest":2,"routing":1,"type":703,"keyframe":"yes"}`,
		`{"from":1,"dest":2,"routing":1,"type":700`,
		`[700]`,
	} {
		if _, err := Decode([]byte(bad)); !errors.Is(err, ErrBadPackage) {
			t.Errorf("Decode(%.60s): %v", bad, err)
		}
	}
	if _, err := Decode([]byte(`{"from":1,"routing":2,"type":604}`)); !errors.Is(err, ErrNotStatus) {
		t.Errorf("604: %v", err)
	}
	big := `{"from":1,"routing":2,"type":701,"qid":1,"targets":[` + strings.Repeat("1,", maxQueryTargets) + `1]}`
	if _, err := Decode([]byte(big)); !errors.Is(err, ErrBadPackage) {
		t.Errorf("oversized target list: %v", err)
	}
	for typ, want := range map[int]bool{202: true, 204: true, 604: true, 605: true, 700: true, 719: true, 720: false, 200: false, 603: false} {
		if IsStatusType(typ) != want {
			t.Errorf("IsStatusType(%d) = %v", typ, !want)
		}
	}
}

func TestTrafficAndLinkShare(t *testing.T) {
	var a, b Traffic
	a.add(TypeTelemetry, 99)
	a.add(TypeTelemetry, 99)
	b.add(TypeStatusReport, 499)
	b.add(TypeTelemetry, 49)
	sum := a.Add(b)
	if sum.Packages != 4 || sum.Bytes != 100+100+500+50 {
		t.Fatalf("sum %+v", sum)
	}
	want := []typeTraffic{{TypeTelemetry, 3, 250}, {TypeStatusReport, 1, 500}}
	if got := sum.perType(); !slices.Equal(got, want) {
		t.Fatalf("by type %v", got)
	}
	// 750 bytes over 10 s on a 6 kbit/s link: 6000 bits / 60000 bits.
	if got := LinkShare(sum.Bytes, 10*time.Second, 6000); math.Abs(got-0.1) > 1e-12 {
		t.Fatalf("share %v", got)
	}
	if LinkShare(1, 0, 1) != 0 || LinkShare(1, time.Second, 0) != 0 {
		t.Fatal("degenerate shares")
	}
}

func TestMemoryProviders(t *testing.T) {
	meminfo := "MemTotal:       16318508 kB\nMemFree:         1029620 kB\nMemAvailable:    9214804 kB\n"
	if got := memAvailable([]byte(meminfo)); got != math.MaxUint32 { // 8.8 GiB saturates
		t.Fatalf("MemAvailable %d", got)
	}
	if got := memAvailable([]byte("MemAvailable:    1024 kB\n")); got != 1024*1024 {
		t.Fatalf("MemAvailable %d", got)
	}
	if memAvailable([]byte("MemFree: 5 kB\n")) != 0 || memAvailable([]byte("MemAvailable: x kB\n")) != 0 {
		t.Fatal("unreadable meminfo gave a value")
	}
	if RuntimeFreeMemory(epoch) == 0 {
		t.Log("no free memory figure on this system")
	}
	m := MemoryModel{Boot: epoch, Start: 40_000, LeakPerHour: 10_000, Floor: 5_000}
	for _, c := range []struct {
		after time.Duration
		want  uint32
	}{{0, 40_000}, {30 * time.Minute, 35_000}, {3 * time.Hour, 10_000}, {10 * time.Hour, 5_000}} {
		if got := m.Free(epoch.Add(c.after)); got != c.want {
			t.Errorf("free after %v: %d, want %d", c.after, got, c.want)
		}
	}
	m = MemoryModel{Boot: epoch, Start: 40_000, Ripple: 1000, RipplePeriod: time.Minute}
	if got := m.Free(epoch.Add(15 * time.Second)); got != 41_000 {
		t.Errorf("ripple peak %d", got)
	}
}
