package scenario

import (
	"context"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/status"
)

// The must-show of issue 14 on the 100-node mesh of TestScenarioMustShow,
// with relays bundling and nodes reporting on change: every node visible,
// changes at the root within 2 s at the 99th percentile, and the root's
// radio under 1 % — all read off the virtual clock.
func TestScenarioAggregatedMustShow(t *testing.T) {
	cfg := StatusConfig{Nodes: 100, Seed: 1, Aggregate: true}
	if err := cfg.normalise(); err != nil {
		t.Fatal(err)
	}
	sm, err := newScenarioMesh(cfg, scenarioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sm.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Visibility != 1 || rep.VisibilityMin != 1 {
		t.Errorf("visibility %v, min %v", rep.Visibility, rep.VisibilityMin)
	}
	// Changes happen (the heaps ripple across the 512-byte step, the
	// crash changes every node's node count) and reach the root fast.
	if rep.Changes < 100 || rep.FreshnessP99S > 2 || rep.FreshnessP50S <= 0 {
		t.Errorf("freshness p50 %.3f s, p99 %.3f s over %d changes", rep.FreshnessP50S, rep.FreshnessP99S, rep.Changes)
	}
	// What travels only with regular frames is at most one longest
	// interval (and the holds) old.
	if rep.DataAgeP99S > DefaultMaxInterval.Seconds()+2 {
		t.Errorf("data age p99 %.3f s", rep.DataAgeP99S)
	}
	if !rep.BusiestRadioIsRoot || rep.StatusOverheadBusiest <= 0 || rep.StatusOverheadBusiest > 0.01 {
		t.Errorf("busiest radio %d (root %v): %.4f", rep.BusiestRadio, rep.BusiestRadioIsRoot, rep.StatusOverheadBusiest)
	}
	if rep.Bundles == 0 || rep.ReconstructionMismatches != 0 || rep.EncodingMismatches != 0 ||
		rep.ReconstructionChecked+sm.superseded < rep.FramesAccepted || rep.ReconstructionChecked < rep.FramesAccepted*99/100 || rep.FramesRefused != 0 {
		t.Errorf("frames: %d bundles, %d checked of %d accepted, %d mismatches, %d encoding mismatches, %d refused",
			rep.Bundles, rep.ReconstructionChecked, rep.FramesAccepted, rep.ReconstructionMismatches, rep.EncodingMismatches, rep.FramesRefused)
	}
	// No frame waits at relays longer than the regular hold (plus the
	// links): nothing old is delivered as new.
	if rep.FrameDelayMaxS > (status.DefaultRegularHold + 500*time.Millisecond).Seconds() {
		t.Errorf("a frame took %.3f s to the root", rep.FrameDelayMaxS)
	}
	// The offline rule follows the stated interval: 3 s after the report
	// the silent node did not send. Low memory: the next check sends it,
	// relays hold it at most UrgentHold.
	if d := rep.OfflineDetectionS; d == nil || *d < status.DefaultGrace.Seconds() || *d > 5 {
		t.Errorf("offline detection %s s", fmtSec(d))
	}
	if d := rep.LowMemoryDetectionS; d == nil || *d > (status.DefaultCheckInterval+status.DefaultUrgentHold+300*time.Millisecond).Seconds() {
		t.Errorf("low memory detection %s s", fmtSec(d))
	}
	if c := rep.LowMemoryClearS; c == nil || *c > 4 {
		t.Errorf("low memory cleared %s s after recovery", fmtSec(c))
	}
	if rep.UnexpectedAlerts != 0 {
		t.Errorf("%d unexpected alerts", rep.UnexpectedAlerts)
	}
	t.Logf("freshness p50 %.3f s, p99 %.3f s (%d changes), root's radio %.4f, %d bundles",
		rep.FreshnessP50S, rep.FreshnessP99S, rep.Changes, rep.StatusOverheadBusiest, rep.Bundles)
}

// A mesh where some nodes are stock (no reporter) and some report but do
// not aggregate (as the esp/ library's nodes): frames pass those relays
// untouched, aggregating relays above bundle them, and the root sees
// every reporting node, all the time.
func TestScenarioAggregatedMixedMesh(t *testing.T) {
	cfg := StatusConfig{Nodes: 100, Seed: 2, Aggregate: true, Duration: 5 * time.Minute}
	if err := cfg.normalise(); err != nil {
		t.Fatal(err)
	}
	sm, err := newScenarioMesh(cfg, scenarioOptions{
		stock: func(i int) bool { return i%7 == 0 },
		plain: func(i int) bool { return i%3 == 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := sm.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var stock, plain int
	for _, d := range sm.dev {
		if d.stock {
			stock++
		} else if d.plain {
			plain++
		}
	}
	if stock == 0 || plain == 0 {
		t.Fatalf("%d stock and %d plain nodes", stock, plain)
	}
	// Stock nodes are never online (they send nothing): visibility counts
	// the reporting nodes.
	model := sm.collector.Model()
	for _, nd := range sm.nodes[1:] {
		if d := sm.dev[nd.ID()]; d.stock {
			continue
		}
		if st, ok := model.Node(nd.ID()); !ok || !st.Online {
			t.Errorf("reporting node %d not online at the root", nd.ID())
		}
	}
	if rep.Bundles == 0 || rep.ReconstructionMismatches != 0 || rep.FramesRefused != 0 {
		t.Errorf("%d bundles, %d mismatches, %d refused", rep.Bundles, rep.ReconstructionMismatches, rep.FramesRefused)
	}
	if rep.FreshnessP99S > 2 || rep.FrameDelayMaxS > 1.5 {
		t.Errorf("freshness p99 %.3f s, frame delay max %.3f s", rep.FreshnessP99S, rep.FrameDelayMaxS)
	}
}

// A relay with a subtree crashes silently and restarts: what it held is
// lost, never delivered late; its subtree is back at the root once it is.
func TestScenarioAggregatedRelayRestart(t *testing.T) {
	cfg := StatusConfig{Nodes: 60, Seed: 3, Aggregate: true, Duration: 4 * time.Minute}
	if err := cfg.normalise(); err != nil {
		t.Fatal(err)
	}
	sm, err := newScenarioMesh(cfg, scenarioOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var relay uint32
	crashAt := sm.net.Now().Add(150 * time.Second)
	sm.net.At(crashAt, func() {
		order := sm.byDepth()
		for i := len(order) - 1; i >= 0; i-- {
			if !order[i].leaf && order[i].depth > 1 {
				relay = order[i].id
				break
			}
		}
		if relay != 0 {
			sm.net.CrashSilent(sm.net.Node(relay))
		}
	})
	var visDown float64
	sm.net.At(crashAt.Add(19*time.Second), func() { visDown = sm.visible() })
	sm.net.At(crashAt.Add(20*time.Second), func() {
		if relay != 0 {
			sm.net.Restart(sm.net.Node(relay))
		}
	})
	rep, err := sm.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if relay == 0 {
		t.Fatal("no relay below depth 1 to crash")
	}
	// The crash took the relay's subtree away (its frames had nowhere to
	// go), and all of it came back.
	if visDown > 1-2.0/59 || rep.Visibility != 1 {
		t.Errorf("visibility %v while the relay was down, %v at the end", visDown, rep.Visibility)
	}
	if rep.FrameDelayMaxS > (status.DefaultRegularHold + 500*time.Millisecond).Seconds() {
		t.Errorf("a frame took %.3f s to the root", rep.FrameDelayMaxS)
	}
	if rep.ReconstructionMismatches != 0 || rep.EncodingMismatches != 0 {
		t.Errorf("%d mismatches, %d encoding mismatches", rep.ReconstructionMismatches, rep.EncodingMismatches)
	}
}
