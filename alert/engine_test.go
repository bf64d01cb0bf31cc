package alert

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// healthy is a sample no rule objects to.
func healthy(uptime uint32) Sample {
	return Sample{Uptime: uptime, FreeMemory: 40_000, LatencyUs: 20_000, LossPermille: 5, RSSI: -60, WiFi: 80}
}

// feed runs samples every 30 s (uptime growing along) and collects the
// changes.
type feeder struct {
	e   *Engine
	now time.Time
	up  uint32
	all []Change
}

func newFeeder(cfg Config) *feeder {
	return &feeder{e: NewEngine(cfg), now: epoch, up: 100}
}

func (f *feeder) step(node uint32, change func(*Sample)) []Change {
	f.now = f.now.Add(30 * time.Second)
	f.up += 30
	m := healthy(f.up)
	if change != nil {
		change(&m)
	}
	cs := f.e.Observe(f.now, node, m)
	f.all = append(f.all, cs...)
	return cs
}

func one(t *testing.T, cs []Change, tr Transition, k Kind) Alert {
	t.Helper()
	if len(cs) != 1 || cs[0].Transition != tr || cs[0].Alert.Kind != k {
		t.Fatalf("want one %s %s, got %+v", tr, k, cs)
	}
	return cs[0].Alert
}

func none(t *testing.T, cs []Change) {
	t.Helper()
	if len(cs) != 0 {
		t.Fatalf("want no change, got %+v", cs)
	}
}

func TestAlertRulesFireAndClear(t *testing.T) {
	cases := []struct {
		kind  Kind
		bad   func(*Sample)
		sev   Severity
		value float64
	}{
		{KindLowMemory, func(m *Sample) { m.FreeMemory = 8000 }, SeverityWarning, 8000},
		{KindHighLatency, func(m *Sample) { m.LatencyUs = 800_000 }, SeverityWarning, 800},
		{KindPacketLoss, func(m *Sample) { m.LossPermille = 150 }, SeverityWarning, 15},
		{KindWeakWiFi, func(m *Sample) { m.RSSI = -85 }, SeverityWarning, -85},
		{KindWeakWiFi, func(m *Sample) { m.RSSI = 0; m.WiFi = 25 }, SeverityWarning, 25},
		{KindOTAFailed, func(m *Sample) { m.OTAFailed = true; m.OTAState = "failed" }, SeverityCritical, 0},
		{KindOTAFailed, func(m *Sample) { m.Flags = KindOTAFailed.Flag() }, SeverityCritical, 0},
		{KindConnectionLost, func(m *Sample) { m.Flags = KindConnectionLost.Flag() }, SeverityWarning, 0},
		{KindSensorError, func(m *Sample) { m.Flags = KindSensorError.Flag() }, SeverityWarning, 0},
		{KindLowMemory, func(m *Sample) { m.Flags = KindLowMemory.Flag() }, SeverityWarning, 40_000},
	}
	for _, c := range cases {
		f := newFeeder(Config{})
		none(t, f.step(7, nil))
		a := one(t, f.step(7, c.bad), Raised, c.kind)
		if a.Node != 7 || !a.Active || a.Severity != c.sev || a.Value != c.value || a.Raised != f.now || a.ID != "7/"+c.kind.String() {
			t.Errorf("%s raised %+v", c.kind, a)
		}
		none(t, f.step(7, c.bad)) // still bad: de-duplicated
		none(t, f.step(7, nil))   // one good sample is not enough (ClearSamples 2)
		a = one(t, f.step(7, nil), Cleared, c.kind)
		if a.Active || a.Cleared != f.now || a.Raised != epoch.Add(60*time.Second) {
			t.Errorf("%s cleared %+v", c.kind, a)
		}
		if len(f.e.Active()) != 0 || len(f.e.Recent()) != 1 {
			t.Errorf("%s: active %v recent %v", c.kind, f.e.Active(), f.e.Recent())
		}
	}
}

func TestAlertSeverityAndUpdates(t *testing.T) {
	f := newFeeder(Config{})
	one(t, f.step(1, func(m *Sample) { m.FreeMemory = 9000 }), Raised, KindLowMemory)
	none(t, f.step(1, func(m *Sample) { m.FreeMemory = 8500 })) // < 20% worse
	a := one(t, f.step(1, func(m *Sample) { m.FreeMemory = 4000 }), Updated, KindLowMemory)
	if a.Severity != SeverityCritical || a.Value != 4000 || a.Updates != 1 || a.Updated != f.now {
		t.Fatalf("updated %+v", a)
	}
	f2 := newFeeder(Config{})
	one(t, f2.step(1, func(m *Sample) { m.LossPermille = 120 }), Raised, KindPacketLoss)
	a = one(t, f2.step(1, func(m *Sample) { m.LossPermille = 300 }), Updated, KindPacketLoss)
	if a.Severity != SeverityCritical {
		t.Fatalf("loss 30%% severity %s", a.Severity)
	}
}

// TestAlertHysteresis moves latency back and forth between the raise
// (500 ms) and clear (400 ms) thresholds: one raise, no flapping.
func TestAlertHysteresis(t *testing.T) {
	f := newFeeder(Config{})
	one(t, f.step(1, func(m *Sample) { m.LatencyUs = 600_000 }), Raised, KindHighLatency)
	for i := 0; i < 20; i++ {
		lat := uint32(450_000)
		if i%2 == 0 {
			lat = 510_000
		}
		none(t, f.step(1, func(m *Sample) { m.LatencyUs = lat }))
	}
	// Below the clear threshold but only once between bad samples.
	for i := 0; i < 5; i++ {
		none(t, f.step(1, func(m *Sample) { m.LatencyUs = 300_000 }))
		none(t, f.step(1, func(m *Sample) { m.LatencyUs = 600_000 }))
	}
	none(t, f.step(1, func(m *Sample) { m.LatencyUs = 300_000 }))
	one(t, f.step(1, func(m *Sample) { m.LatencyUs = 300_000 }), Cleared, KindHighLatency)
	// An unknown latency (0) neither raises nor clears.
	one(t, f.step(1, func(m *Sample) { m.LatencyUs = 600_000 }), Raised, KindHighLatency)
	for i := 0; i < 3; i++ {
		none(t, f.step(1, func(m *Sample) { m.LatencyUs = 0 }))
	}
}

func TestAlertDedupeAcrossNodes(t *testing.T) {
	f := newFeeder(Config{})
	low := func(m *Sample) { m.FreeMemory = 5000 }
	one(t, f.step(1, low), Raised, KindLowMemory)
	one(t, f.step(2, low), Raised, KindLowMemory)
	for i := 0; i < 5; i++ {
		none(t, f.step(1, low))
		none(t, f.step(2, low))
	}
	if act := f.e.Active(); len(act) != 2 || act[0].Node != 1 || act[1].Node != 2 {
		t.Fatalf("active %+v", act)
	}
	if f.e.ActiveCount(1) != 1 || f.e.ActiveCount(3) != 0 {
		t.Fatal("active counts")
	}
	f.e.Forget(1)
	if len(f.e.Active()) != 1 {
		t.Fatal("forget kept the node's alert")
	}
}

func TestAlertRebootLoop(t *testing.T) {
	e := NewEngine(Config{RebootCount: 3, RebootWindow: 10 * time.Minute})
	now := epoch
	up := uint32(3600)
	// sample moves time on by d; uptime < 0 means "grew by d".
	sample := func(d time.Duration, uptime int) []Change {
		now = now.Add(d)
		up += uint32(d / time.Second)
		if uptime >= 0 {
			up = uint32(uptime)
		}
		return e.Observe(now, 9, healthy(up))
	}
	none(t, sample(0, -1))
	none(t, sample(30*time.Second, 5))  // restart 1 at 0:30
	none(t, sample(30*time.Second, -1)) // uptime grew: no restart
	none(t, sample(2*time.Minute, 5))   // restart 2 at 3:00
	a := one(t, sample(2*time.Minute, 5), Raised, KindRebootLoop)
	if a.Value != 3 || a.Severity != SeverityCritical { // restart 3 at 5:00
		t.Fatalf("reboot loop %+v", a)
	}
	// A restart between two samples is seen too: uptime 10 s after a gap
	// of 60 s means the node booted 50 s ago. Four restarts is a
	// significant worsening: the alert is updated.
	a = one(t, sample(60*time.Second, 10), Updated, KindRebootLoop) // restart 4 at 6:00
	if a.Value != 4 {
		t.Fatalf("updated %+v", a)
	}
	// The window is 10 minutes: the loop clears once fewer than 3 of the
	// restarts are within it, at 3:00 + 10:00 = 13:00 (the third-last one
	// ages out).
	want := epoch.Add(13 * time.Minute)
	if d := e.NextDeadline(); !d.Equal(want) {
		t.Fatalf("next deadline %v, want %v", d.Sub(epoch), want.Sub(epoch))
	}
	none(t, e.Tick(want.Add(-time.Second)))
	a = one(t, e.Tick(want), Cleared, KindRebootLoop)
	if a.Cleared != want {
		t.Fatalf("cleared %+v", a)
	}
	if !e.NextDeadline().IsZero() {
		t.Fatal("deadline left after clearing")
	}
}

func TestAlertNodeOffline(t *testing.T) {
	e := NewEngine(Config{})
	a := one(t, e.SetOnline(epoch, 4, false, "overdue"), Raised, KindNodeOffline)
	if a.Severity != SeverityCritical || a.Message != "node 4 offline: overdue" {
		t.Fatalf("%+v", a)
	}
	none(t, e.SetOnline(epoch.Add(time.Second), 4, false, "overdue"))
	one(t, e.SetOnline(epoch.Add(time.Minute), 4, true, "report"), Cleared, KindNodeOffline)
	none(t, e.SetOnline(epoch.Add(time.Minute), 4, true, "report"))
}

func TestAlertDropRateAnomaly(t *testing.T) {
	f := newFeeder(Config{})
	r := rand.New(rand.NewPCG(3, 3))
	var drops uint32
	step := func(perSample uint32) []Change {
		drops += perSample
		return f.step(5, func(m *Sample) { m.MessagesDropped = drops })
	}
	// A baseline of 0–3 drops per 30 s (≤ 0.1/s): no alert.
	for i := 0; i < 30; i++ {
		none(t, step(uint32(r.IntN(4))))
	}
	// 300 drops in 30 s (10/s) is far outside the band.
	a := one(t, step(300), Raised, KindAnomaly)
	if a.Metric != MetricDropRate || a.ID != "5/anomaly_drop_rate" || a.Value != 10 {
		t.Fatalf("anomaly %+v", a)
	}
	// Back to normal: cleared after ClearSamples (3) quiet samples.
	none(t, step(1))
	none(t, step(1))
	one(t, step(1), Cleared, KindAnomaly)
}

func TestAlertMemoryTrendAnomaly(t *testing.T) {
	f := newFeeder(Config{})
	r := rand.New(rand.NewPCG(4, 4))
	mem := uint32(60_000)
	step := func(delta int) []Change {
		mem = uint32(int(mem) + delta)
		return f.step(6, func(m *Sample) { m.FreeMemory = mem })
	}
	for i := 0; i < 30; i++ {
		none(t, step(r.IntN(601)-300)) // ±10 B/s noise
	}
	// A leak of 150 B/s (4500 bytes per 30 s): flagged while memory is
	// still far above the low-memory threshold.
	a := one(t, step(-4500), Raised, KindAnomaly)
	if a.Metric != MetricMemoryTrend || a.Value != -150 {
		t.Fatalf("anomaly %+v", a)
	}
	// Memory rising fast is not an anomaly of this (downward) rule.
	f2 := newFeeder(Config{})
	mem2 := uint32(60_000)
	for i := 0; i < 30; i++ {
		mem2 += uint32(r.IntN(50))
		none(t, f2.step(6, func(m *Sample) { m.FreeMemory = mem2 }))
	}
	none(t, f2.step(6, func(m *Sample) { m.FreeMemory = mem2 + 20_000 }))
}

func TestAlertStatePersists(t *testing.T) {
	cfg := Config{}
	f := newFeeder(cfg)
	var drops uint32
	for i := 0; i < 20; i++ {
		drops += uint32(i % 3)
		d := drops
		f.step(1, func(m *Sample) { m.MessagesDropped = d; m.FreeMemory = 8000 })
	}
	f.e.SetOnline(f.now, 2, false, "overdue")
	f.step(3, func(m *Sample) { m.LatencyUs = 900_000 })
	none(t, f.e.Tick(f.now)) // nothing is due
	data, err := json.Marshal(f.e)
	if err != nil {
		t.Fatal(err)
	}
	restored := NewEngine(cfg)
	if err := restored.Restore(data); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(restored)
	if string(again) != string(data) {
		t.Fatalf("state changed across a restore:\n%s\n%s", data, again)
	}
	// Both engines go on identically, including the baselines: a drop
	// burst is an anomaly for both, and node 1's low memory clears in both.
	for _, e := range []*Engine{f.e, restored} {
		cs := e.Observe(f.now.Add(30*time.Second), 1, Sample{Uptime: f.up + 30, MessagesDropped: drops + 600, FreeMemory: 40_000})
		if len(cs) != 1 || cs[0].Alert.Kind != KindAnomaly {
			t.Fatalf("after restore: %+v", cs)
		}
		cs = e.Observe(f.now.Add(60*time.Second), 1, Sample{Uptime: f.up + 60, MessagesDropped: drops + 600, FreeMemory: 40_000})
		if len(cs) != 1 || cs[0].Transition != Cleared || cs[0].Alert.Kind != KindLowMemory {
			t.Fatalf("after restore: %+v", cs)
		}
	}
}

func TestAlertRestoreRejectsBadState(t *testing.T) {
	e := NewEngine(Config{})
	e.SetOnline(epoch, 2, false, "overdue")
	before, _ := json.Marshal(e)
	for _, bad := range []string{
		``, `[]`, `{"version":2}`, `{"version":1,"active":[{"id":"2/nope","node_id":2,"kind":"nope"}]}`,
		`{"version":1,"active":[{"id":"2/low_memory","node_id":2,"kind":"low_memory","severity":"warning","active":false}]}`,
		`{"version":1,"active":[{"id":"3/low_memory","node_id":2,"kind":"low_memory","severity":"warning","active":true}]}`,
		`{"version":1,"active":[{"id":"2/anomaly","node_id":2,"kind":"anomaly","severity":"warning","active":true}]}`,
		`{"version":1,"nodes":[null]}`,
		`{"version":1,"nodes":[{"node":1},{"node":1}]}`,
		`{"version":1,"nodes":[{"node":1,"drop":{"mean":0,"var":-1,"n":3}}]}`,
		`{"version":1,"nodes":[{"node":1,"streaks":{"low_memory":{"bad":-1}}}]}`,
		`{"version":1,"nodes":[{"node":1,"resets":["2026-01-02T00:00:00Z","2026-01-01T00:00:00Z"]}]}`,
	} {
		if err := e.Restore([]byte(bad)); !errors.Is(err, ErrState) {
			t.Errorf("Restore(%s): %v", bad, err)
		}
	}
	after, _ := json.Marshal(e)
	if string(after) != string(before) {
		t.Fatal("a failed restore changed the engine")
	}
}

func TestKindAndSeverityNames(t *testing.T) {
	for k := KindLowMemory; k <= KindAnomaly; k++ {
		b, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Kind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Fatalf("kind %d → %s → %d, %v", k, b, back, err)
		}
	}
	// Kinds 1–8 are the alert flag bits, in order.
	for k := KindLowMemory; k <= KindRebootLoop; k++ {
		if k.Flag() != 1<<(k-1) {
			t.Fatalf("kind %s flag %v", k, k.Flag())
		}
	}
	if KindNodeOffline.Flag() != 0 || Kind(0).String() != "kind(0)" || Severity(9).String() != "severity(9)" {
		t.Fatal("names of out-of-range values")
	}
	if _, err := Kind(0).MarshalText(); err == nil {
		t.Fatal("kind 0 marshalled")
	}
}
