package status

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// A TIME_DELAY round trip during which the node adjusted its clock
// measures the adjustment (minutes, on a mesh whose clocks are still being
// synced), not the path: the reporter keeps the latency it had. The next
// probe, sent after the adjustment, counts again.
func TestReporterIgnoresDelayAcrossClockAdjustment(t *testing.T) {
	m := newFakeMesh(t)
	m.add(rootID, true)
	r := NewReporter(ReporterConfig{Interval: 30 * time.Second, ProbeInterval: 5 * time.Second}, m.now)
	a := m.add(nodeA, false, r)
	m.link(rootID, nodeA)
	m.run(epoch.Add(6 * time.Second)) // one probe: 2500 µs
	if got := r.Snapshot(m.now).LatencyUs; got != 2500 {
		t.Fatalf("latency %d µs after the first probe, want 2500", got)
	}

	a.Emit(mesh.TimeAdjusted{NodeID: rootID, Offset: -1_800_000_000})
	a.Emit(mesh.DelayMeasured{NodeID: rootID, Delay: 900_000_000})
	if got := r.Snapshot(m.now).LatencyUs; got != 2500 {
		t.Fatalf("latency %d µs after a delay measured across a clock jump, want 2500 kept", got)
	}

	// The next probe goes out after the jump: its answer counts, and so
	// does a real high delay without a jump.
	m.delay = 10_000
	m.run(m.now.Add(5 * time.Second))
	want := uint32(0.3*10_000 + 0.7*2500)
	if got := r.Snapshot(m.now).LatencyUs; got != want {
		t.Fatalf("latency %d µs after the next probe, want %d", got, want)
	}
	a.Emit(mesh.DelayMeasured{NodeID: rootID, Delay: 900_000})
	if got := r.Snapshot(m.now).LatencyUs; got <= want {
		t.Fatalf("latency %d µs: a high delay without a clock jump was ignored", got)
	}
}
