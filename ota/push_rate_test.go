package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// pushRig is a broadcast campaign on a distributor whose TIME_DELAY probes
// the test answers after a round trip of its choice, on a virtual clock.
type pushRig struct {
	t     *testing.T
	h     *probeHost
	d     *Distributor
	c     *dcampaign
	now   time.Time
	trip  time.Duration // the link's round trip
	taken int           // probes answered
	// pushedAt is when each chunk was pushed, in order.
	pushedAt []time.Time
}

// newPushRig starts a broadcast push of size bytes in 1 KiB chunks over
// the tree 1 → 2, 1 → 3 → 4 (node 4 is the deepest; nodes 1 and 3 have
// one child each, node 1 two), started by a receiver's first Report.
func newPushRig(t *testing.T, size int, trip time.Duration) *pushRig {
	h := &probeHost{fakeHost: fakeHost{id: 1, tree: protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{
		{NodeID: 2}, {NodeID: 3, Subs: []protocol.NodeTree{{NodeID: 4}}}}}}}
	d := NewDistributor(DistributorConfig{QueueBudget: 2 * 1400})
	d.Attach(h)
	r := &pushRig{t: t, h: h, d: d, now: turboEpoch, trip: trip}
	if _, err := d.Start(r.now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP32", Data: make([]byte, size)}, Mode: ModeBroadcast}); err != nil {
		t.Fatal(err)
	}
	r.c = d.campaigns[0]
	if r.c.fast.chunkSize != 1024 {
		t.Fatalf("chunk size %d, want 1024", r.c.fast.chunkSize)
	}
	r.report(4, 0, 0)
	return r
}

// report hands the distributor a downloading Report of node from.
func (r *pushRig) report(from uint32, hi, lost int) {
	raw := (&Report{From: from, Dest: 1, Routing: int(protocol.RouteSingle), ID: r.c.ID,
		State: string(StateDownloading), Total: r.c.fast.chunks, High: hi, Lost: lost}).AppendJSON(nil)
	hd, err := protocol.ParseHeader(raw)
	if err != nil {
		r.t.Fatal(err)
	}
	r.d.HandlePackage(r.now, 1, hd, raw)
}

// run steps the clock by 100 µs until done, answering each probe one trip
// after it went.
func (r *pushRig) run(done func() bool) {
	var probeAt time.Time
	for !done() {
		if r.now.Sub(turboEpoch) > time.Hour {
			r.t.Fatal("no end within an hour")
		}
		r.now = r.now.Add(100 * time.Microsecond)
		r.d.Tick(r.now)
		for range r.h.take(TypeChunk) {
			r.pushedAt = append(r.pushedAt, r.now)
		}
		if r.taken < len(r.h.probes) {
			if probeAt.IsZero() {
				probeAt = r.now
			}
			if r.now.Sub(probeAt) >= r.trip {
				if r.h.probes[r.taken] != 4 {
					r.t.Fatalf("probe to %d, want the deepest node 4", r.h.probes[r.taken])
				}
				r.d.OnEvent(r.now, mesh.DelayMeasured{NodeID: 4, Delay: int32(r.trip / 2 / time.Microsecond)})
				r.taken++
				probeAt = time.Time{}
			}
		}
	}
}

// modelGap is the model's spacing of the push: the busiest radio (two
// children) sends each chunk twice.
func (r *pushRig) modelGap() time.Duration {
	msg := Dense.EncodedLen(r.c.fast.chunkSize) + 80
	return time.Duration(float64(2*r.d.cfg.Radio.airtime(msg)) / r.d.cfg.Utilization)
}

// On links no faster than the airtime model (probes take the model's round
// trip) the broadcast push keeps the model's spacing exactly; on a fast
// lossless link (1 ms) its rate rises far above it and the image goes out
// in a fraction of the model's time.
func TestBroadcastPushFollowsTheLinks(t *testing.T) {
	const size = 200 * 1024
	slow := newPushRig(t, size, 0)
	// The probe's own round trip on the model: 2 hops there and back.
	slow.trip = 4 * slow.d.cfg.Radio.airtime(linkProbeLen)
	slow.run(func() bool { return slow.c.push.over })
	if slow.taken == 0 {
		t.Fatal("no probe answered on the slow link")
	}
	if f := slow.c.push.link.factor(); f != 1 || slow.c.push.link.rises != 0 {
		t.Fatalf("on the model's links the rate rose: %.0f×, %d rises", f, slow.c.push.link.rises)
	}
	gap := slow.modelGap()
	for i := 1; i < len(slow.pushedAt); i++ {
		if got := slow.pushedAt[i].Sub(slow.pushedAt[i-1]); got < gap {
			t.Fatalf("chunks %d and %d %s apart on the model's links, want the model's %s", i-1, i, got, gap)
		}
	}
	slowTime := slow.pushedAt[len(slow.pushedAt)-1].Sub(slow.pushedAt[0])

	fast := newPushRig(t, size, time.Millisecond)
	fast.run(func() bool { return fast.c.push.over })
	if n := len(fast.pushedAt); n != fast.c.fast.chunks || len(slow.pushedAt) != n {
		t.Fatalf("pushed %d and %d chunks, want %d", len(slow.pushedAt), n, fast.c.fast.chunks)
	}
	if fast.c.push.link.factor() < linkMaxSpeed/2 {
		t.Fatalf("on a 1 ms link the rate reached only %.0f× the model's", fast.c.push.link.factor())
	}
	fastTime := fast.pushedAt[len(fast.pushedAt)-1].Sub(fast.pushedAt[0])
	if fastTime*20 > slowTime {
		t.Fatalf("the push took %s on a 1 ms link and %s on the model's: want at least 20× faster", fastTime, slowTime)
	}
}

// Loss the receivers report lowers the push rate although the probes come
// back fast: a report with loss well above the target halves the links'
// speed-up at the next probe, down to the model's, and the control window
// with that loss takes the rate below the model's (AIMD).
func TestBroadcastPushSlowsOnReportedLoss(t *testing.T) {
	r := newPushRig(t, 8<<20, time.Millisecond)
	p := &r.c.push
	r.run(func() bool { return p.link.factor() >= 16 })
	hi, lost := 0, 0
	for p.link.factor() > 1 {
		before := p.link.factor()
		// Every receiver lost a tenth of what was pushed since its last
		// report: far above the loss target.
		hi += 100
		lost += 10
		for id := uint32(2); id <= 4; id++ {
			r.report(id, hi, lost)
		}
		seen := r.taken
		r.run(func() bool { return p.link.factor() != before || r.taken > seen+3 && p.window.samples == 0 })
		if f := p.link.factor(); f > before/2 {
			t.Fatalf("after reported loss the links' speed-up is %.0f×, was %.0f×: want it halved", f, before)
		}
		if p.over {
			t.Fatal("the image was pushed before the rate came down")
		}
	}
	// The control window closes on the loss: AIMD takes the rate below
	// the model's, and the fast probes do not lift it while loss shows.
	for p.rate >= 1 && !p.over {
		hi += 100
		lost += 10
		r.report(2, hi, lost)
		seen := r.taken
		r.run(func() bool { return r.taken > seen })
	}
	if p.rate >= 1 || p.link.factor() != 1 {
		t.Fatalf("after the loss: AIMD rate %.2f, links' speed-up %.0f×; want below the model's", p.rate, p.link.factor())
	}
	if p.link.falls == 0 || p.link.rises == 0 {
		t.Fatalf("rises %d, falls %d", p.link.rises, p.link.falls)
	}
}

// A probe with nobody to probe (an empty layout) is tried again later:
// a due time left in the past would wake the driver again and again.
func TestLinkProbeWithNobodyToProbeWaits(t *testing.T) {
	var r linkRate
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	r.probe(now, nil, 0, time.Millisecond)
	if due := r.due(); !due.After(now) {
		t.Fatalf("next probe due %v, want after %v", due, now)
	}
}
