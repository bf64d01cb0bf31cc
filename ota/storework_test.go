package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

// The store's slow work (flush, decode and verify the image, switch) is
// done by the driver outside the node's steps: while it runs, the
// receiver stays verifying and the node goes on relaying and answering
// time sync; the transfer completes when the store answers.
func TestVerifyWaitsForTheStoreWhileTheNodeRuns(t *testing.T) {
	const workTime = 30 * time.Second
	r := newRig(t, rigOpts{n: 3, fanOut: 1, seed: 7, workTime: workTime})
	img := testImage(20000, 3)
	md5 := md5hex(img)
	r.start(CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP32", Data: img}, Mode: ModeBroadcast})

	relay := r.nodes[0] // every other receiver is behind it
	last := r.nodes[len(r.nodes)-1]
	rc := r.recv[relay.ID()]
	// Its chunk writes take workTime too: a chunk received counts as held
	// only once the store wrote it.
	if !r.net.RunUntil(func() bool { t := rc.cur; return t != nil && t.have.Count() > t.held.Count() }, time.Minute) {
		t.Fatal("relay never had a chunk waiting for its write")
	}
	var switchedAt, confirmedAt time.Time
	r.net.OnEvent(func(n *sim.Node, at time.Time, ev mesh.Event) {
		if p, ok := ev.(Progress); ok && p.Node == relay.ID() {
			switch {
			case p.State == StateSwitching && switchedAt.IsZero():
				switchedAt = at
			case p.State == StateConfirmed:
				confirmedAt = at
			}
		}
	})
	if !r.net.RunUntil(func() bool { return rc.State() == StateVerifying }, 5*time.Minute) { // its chunk writes take workTime too
		t.Fatalf("relay never verifying: %s", rc.State())
	}
	asked := r.net.Now()

	var delivered, measured int
	r.net.OnEvent(func(n *sim.Node, at time.Time, ev mesh.Event) {
		switch e := ev.(type) {
		case mesh.MessageReceived:
			if n == last && e.Msg == "through the relay" {
				delivered++
			}
		case mesh.DelayMeasured:
			if n == r.distND && e.NodeID == relay.ID() {
				measured++
			}
		}
	})
	r.net.RunFor(time.Second)
	if err := r.distND.Do(func(now time.Time, m *mesh.Node) {
		if !m.SendSingle(now, last.ID(), "through the relay") {
			t.Error("last receiver unreachable")
		}
		if !m.StartDelayMeasurement(now, relay.ID()) {
			t.Error("relay unreachable")
		}
	}); err != nil {
		t.Fatal(err)
	}
	r.net.RunFor(workTime - 3*time.Second)
	if delivered != 1 || measured != 1 {
		t.Fatalf("while its store worked the relay passed on %d messages and answered %d delay measurements, want 1 and 1", delivered, measured)
	}
	if s := rc.State(); s != StateVerifying {
		t.Fatalf("relay %s before its store answered, want verifying", s)
	}
	if active, _ := r.stores[relay.ID()].Active(); active == md5 {
		t.Fatal("relay switched before its store answered")
	}
	if !r.runUntilInstalled(md5, 5*time.Minute) {
		t.Fatalf("installed on %d of %d", r.installed(md5), len(r.nodes))
	}
	if took := r.net.Now().Sub(asked); took < workTime {
		t.Fatalf("installed %v after the store was asked, before its work (%v) was done", took, workTime)
	}
	// The trial's confirm is store work as well: switching until it answered.
	if took := confirmedAt.Sub(switchedAt); switchedAt.IsZero() || took < workTime {
		t.Fatalf("relay switched at %v and confirmed %v later, before its store's confirm (%v) was done", switchedAt, took, workTime)
	}
}
