package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// probeHost is a fakeHost that records TIME_DELAY probes for the test to
// answer.
type probeHost struct {
	fakeHost
	probes []uint32
}

func (h *probeHost) StartDelayMeasurement(_ time.Time, id uint32) bool {
	h.probes = append(h.probes, id)
	return true
}

// Stock-turbo starts at the airtime model's rate and follows the links:
// on a fast lossless link (probes to the deepest node come back in 1 ms)
// the rate rises far above the model's and the parts go out that much
// faster; receivers seen stuck bring it back down to the model's.
func TestStockTurboRateRisesOnAFastLinkAndFallsOnLoss(t *testing.T) {
	// 1 → 2, 1 → 3 → 4: node 4 is the deepest.
	h := &probeHost{fakeHost: fakeHost{id: 1, tree: protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{
		{NodeID: 2}, {NodeID: 3, Subs: []protocol.NodeTree{{NodeID: 4}}}}}}}
	d := NewDistributor(DistributorConfig{TurboPartSize: 1024})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: make([]byte, 400*1024)}, Mode: ModeStockTurbo})
	if err != nil {
		t.Fatal(err)
	}
	tc := &d.campaigns[0].turbo
	answered := 0
	var trip time.Duration = time.Millisecond // the link's round trip
	// run steps the virtual clock by 100 µs until done, answering each
	// probe one trip after it went; it returns the parts pushed.
	run := func(done func() bool) int {
		pushed := 0
		var probeAt time.Time
		for !done() {
			if now.Sub(turboEpoch) > time.Hour {
				t.Fatal("no end within an hour")
			}
			now = now.Add(100 * time.Microsecond)
			d.Tick(now)
			pushed += len(h.take(protocol.TypeOTAData))
			if answered < len(h.probes) {
				if probeAt.IsZero() {
					probeAt = now
				}
				if now.Sub(probeAt) >= trip {
					if h.probes[answered] != 4 {
						t.Fatalf("probe to %d, want the deepest node 4", h.probes[answered])
					}
					d.OnEvent(now, mesh.DelayMeasured{NodeID: 4, Delay: int32(trip / 2 / time.Microsecond)})
					answered++
					probeAt = time.Time{}
				}
			}
		}
		return pushed
	}
	start := now
	run(func() bool { return tc.rate.factor() >= linkMaxSpeed })
	ramp := now.Sub(start)
	// The model: the busiest radio (two children) sends each part twice.
	model := time.Duration(float64(2*d.cfg.Radio.airtime(tc.lastLen)) / d.cfg.Utilization)
	if ramp > 20*model {
		t.Fatalf("the rate took %s to reach %d× the model's (a push every %s)", ramp, linkMaxSpeed, model)
	}
	start = now
	fast := run(func() bool { return now.Sub(start) >= 10*model })
	if fast < 50 {
		t.Fatalf("%d parts pushed in 10 model push times at full rate, want at least 50", fast)
	}

	// Receivers now show losses: one stuck at the part before each probe
	// is answered (a request for part 0 after a push of a later part).
	stuck := func() {
		q := &protocol.DataRequest{Announce: protocol.Announce{From: tc.base + tc.seq - 1, Routing: protocol.RouteSingle,
			MD5: c.Image.MD5, Role: "sensor", Hardware: "ESP8266", NoPart: uint32(tc.chunks), Broadcasted: true}, Dest: 1, PartNo: 0}
		raw := protocol.Encode(q)
		hd, err := protocol.ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		d.HandlePackage(now, 1, hd, raw)
	}
	for tc.rate.factor() > 1 {
		before, seen := tc.rate.factor(), answered
		stuck()
		run(func() bool { return answered > seen })
		if f := tc.rate.factor(); f > before/2 {
			t.Fatalf("after a loss the rate is %.0f× the model's, was %.0f×: want it halved", f, before)
		}
	}
	// The link is now as slow as the model: nothing raises the rate.
	trip = model
	start = now
	slow := run(func() bool { return now.Sub(start) >= 10*model })
	if slow > 11 {
		t.Fatalf("%d parts pushed in 10 model push times after the losses, want the model's rate (at most 11)", slow)
	}
	if tc.rate.rises == 0 || tc.rate.falls == 0 {
		t.Fatalf("rises %d, falls %d", tc.rate.rises, tc.rate.falls)
	}
}

// A probe whose round trip grows to several times the shortest (queues
// fill on the path) lowers the rate, and one that goes unanswered counts
// as lost; neither takes it below the model's.
func TestStockTurboRateFallsOnQueueGrowthAndLostProbes(t *testing.T) {
	h := &probeHost{}
	model := 12 * time.Millisecond // the probe's round trip on the model
	now := turboEpoch
	var r linkRate
	answer := func(trip time.Duration) {
		r.probe(now, h, 4, model)
		now = now.Add(trip)
		if !r.measured(now, mesh.DelayMeasured{NodeID: 4, Delay: int32(trip / 2 / time.Microsecond)}) {
			t.Fatal("the probe's answer was not taken")
		}
		now = now.Add(linkMaxProbeGap)
	}
	for range 4 {
		answer(time.Millisecond)
	}
	if f := r.factor(); f != 16 {
		t.Fatalf("after 4 fast round trips: %.0f×, want 16×", f)
	}
	answer(time.Millisecond + model/2)
	if f := r.factor(); f != 8 {
		t.Fatalf("after a round trip grown to 4× the shortest and past half the model's: %.0f×, want 8×", f)
	}
	r.probe(now, h, 4, model) // never answered
	now = now.Add(linkProbeTimeout)
	r.probe(now, h, 4, model)
	if f := r.factor(); f != 4 {
		t.Fatalf("after a lost probe: %.0f×, want 4×", f)
	}
	if r.measured(now, mesh.DelayMeasured{NodeID: 9, Delay: 500}) {
		t.Fatal("an answer from a node not probed was taken")
	}
	for range 5 {
		now = now.Add(linkProbeTimeout)
		r.probe(now, h, 4, model)
	}
	if f := r.factor(); f != 1 {
		t.Fatalf("after lost probes: %.2f×, want the model's", f)
	}
	// At the model's rate on a link as slow as the model the probes
	// back off, to one every linkIdleProbeGap.
	for range 30 {
		now = now.Add(linkProbeTimeout)
		if r.probe(now, h, 4, model); r.probeAt == now {
			r.measured(now.Add(model), mesh.DelayMeasured{NodeID: 4, Delay: int32(model / 2 / time.Microsecond)})
		}
	}
	if r.idleGap != linkIdleProbeGap || r.factor() != 1 {
		t.Fatalf("probe gap %s at %.0f×, want %s at the model's rate", r.idleGap, r.factor(), linkIdleProbeGap)
	}
}
