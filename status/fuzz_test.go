package status

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

func seedPackages(f *testing.F) {
	for _, p := range []protocol.Package{
		&TelemetryPackage{From: 1, Dest: 2, Frame: []byte{1, 5, 0, 0, 1, 0, 0, 0, 0, 0xAC, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xBA, 0, 0, 0, 0, 0, 4, 3, 2, 1}},
		&TelemetryBundle{From: 4, Dest: 2, Entries: []telemetry.BundleEntry{
			{Node: 1, Frame: []byte{1, 5, 0, 0, 1, 0, 0, 0, 0, 0xAC, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xBA, 0, 0, 0, 0, 0, 4, 3, 2, 1}},
			{Node: 7, Waited: 30 * time.Millisecond, Frame: []byte{1, 2, 1, 0, 1, 0, 0, 0, 0, 0x80, 0x20, 1}},
		}},
		&StatusQuery{From: 1, ID: 3, Targets: []uint32{2, 3}, Spread: time.Second},
		&StatusQuery{From: 1, Dest: 2, ID: 3, Form: FormEnhanced},
		&StatusReport{From: 2, Dest: 1, QueryID: 3, Metrics: Metrics{Uptime: 9, FirmwareVersion: "x"}},
		&TelemetryControl{From: 1, Dest: 2, Keyframe: true},
	} {
		f.Add(p.AppendJSON(nil))
	}
	f.Add([]byte(example604))
	f.Add([]byte(`{"type":8,"from":5,"dest":0,"msg":"{\"from\":5,\"routing\":2,\"type\":605,\"uptime\":9}"}`))
	f.Add([]byte(`{"from":5,"routing":2,"type":202,"status":1,"uptime":2,"mem":3,"wifi":4,"fw":"v"}`))
}

// FuzzDecode: hostile packages give ErrBadPackage or ErrNotStatus, never
// a panic, and what decodes encodes back to the same package.
func FuzzDecode(f *testing.F) {
	seedPackages(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := Decode(raw)
		if err != nil {
			if !errors.Is(err, ErrBadPackage) && !errors.Is(err, ErrNotStatus) {
				t.Fatalf("error outside the set: %v", err)
			}
			return
		}
		again, err := Decode(p.AppendJSON(nil))
		if err != nil {
			t.Fatalf("re-encoded %T does not decode: %v", p, err)
		}
		a, _ := json.Marshal(p)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("round trip changed the package:\n%s\n%s", a, b)
		}
	})
}

// FuzzCollector feeds hostile packages to a collector, natively and
// wrapped in a broadcast: nothing panics and the model stays usable.
func FuzzCollector(f *testing.F) {
	seedPackages(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := newFakeMesh(t)
		col := NewCollector(CollectorConfig{}, m.now)
		m.add(rootID, true, col)
		if h, err := protocol.ParseHeader(raw); err == nil {
			m.nodes[rootID].receive(m.now, h, raw)
		}
		col.handleMessage(m.now, 5, protocol.TypeBroadcast, string(raw))
		m.runFor(time.Hour)
		_ = col.Health()
		if _, err := json.Marshal(col.Alerts()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzAggregator hands hostile packages to a relay's aggregator in
// transit: nothing panics, what it takes fits a bundle, and everything it
// sends decodes as a status package.
func FuzzAggregator(f *testing.F) {
	seedPackages(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m := newFakeMesh(t)
		agg := NewAggregator(AggregatorConfig{})
		m.add(rootID, true)
		relay := m.add(2, false, agg)
		m.add(3, false)
		m.link(rootID, 2)
		m.link(2, 3)
		h, err := protocol.ParseHeader(raw)
		if err != nil {
			return
		}
		h.Dest = rootID
		for range 3 {
			agg.HandleTransit(m.now, 1, h, raw)
			if agg.size > telemetry.MaxBundleSize {
				t.Fatalf("holding %d bytes", agg.size)
			}
		}
		m.runFor(5 * time.Second)
		for _, msg := range relay.sent {
			if _, err := Decode(msg); err != nil {
				t.Fatalf("relay sent %s: %v", msg, err)
			}
		}
	})
}
