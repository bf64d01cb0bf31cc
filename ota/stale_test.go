package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// A late copy of a superseded campaign's offer reaches a node that runs
// the newer image. It takes the transfer up, but its distributor says the
// transfer is over at its first report, and the node drops it: before,
// it stayed downloading a transfer nobody served, for ever.
func TestStaleOfferOfASupersededCampaignIsDropped(t *testing.T) {
	r := newRig(t, rigOpts{n: 4, model: sim.ESP8266(), seed: 22})
	r.start(CampaignSpec{ID: "a", Image: sensorImage(41), Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunUntil(func() bool { return r.held(r.nodes[3].ID()) > 3 }, time.Hour)
	stale := r.dist.find("a").offer
	raw := stale.AppendJSON(nil)
	b := r.start(CampaignSpec{ID: "b", Image: sensorImage(42), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(b.Image.MD5, 30*time.Minute) {
		t.Fatalf("installed on %d of %d", r.installed(b.Image.MD5), len(r.nodes))
	}
	r.net.RunFor(time.Minute)
	nd := r.nodes[2]
	rc := r.recv[nd.ID()]
	h, err := protocol.ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Step(func(now time.Time, _ sim.Machine) { rc.HandlePackage(now, 0, h, raw) }); err != nil {
		t.Fatal(err)
	}
	if id, _, _, ok := rc.Downloading(); !ok || id != "a" {
		t.Fatalf("the late offer of a was not taken up (%q, %v): the test shows nothing", id, ok)
	}
	if !r.net.RunUntil(func() bool { _, _, _, ok := rc.Downloading(); return !ok }, 30*time.Second) {
		t.Fatalf("node %d still downloads the superseded transfer after 30 s (%s)", nd.ID(), rc.State())
	}
	r.net.RunFor(5 * time.Minute)
	if rc.State() == StateDownloading {
		t.Fatalf("node %d took the superseded transfer up again", nd.ID())
	}
	r.checkRecord(b, b.Image.MD5)
}

// Receivers downloading when their campaign is aborted drop the transfer
// at their next report, instead of asking for chunks for ever.
func TestAbortedCampaignEndsDownloads(t *testing.T) {
	for _, mode := range []Mode{ModePipelined, ModeBroadcast, ModeStock} {
		t.Run(string(mode), func(t *testing.T) {
			r := newRig(t, rigOpts{n: 6, model: sim.ESP8266(), seed: 23})
			r.start(CampaignSpec{ID: "a", Image: sensorImage(43), Mode: mode, Method: "deflate"})
			if !r.net.RunUntil(func() bool { return r.held(r.nodes[5].ID()) > 2 }, time.Hour) {
				t.Fatal("no chunk reached the last node")
			}
			if err := r.distND.Step(func(now time.Time, _ sim.Machine) {
				if err := r.dist.Abort(now, "a"); err != nil {
					t.Error(err)
				}
			}); err != nil {
				t.Fatal(err)
			}
			downloading := func() int {
				n := 0
				for _, rc := range r.recv {
					if _, _, _, ok := rc.Downloading(); ok {
						n++
					}
				}
				return n
			}
			if downloading() == 0 {
				t.Fatal("no receiver was downloading at the abort: the test shows nothing")
			}
			if !r.net.RunUntil(func() bool { return downloading() == 0 }, time.Minute) {
				t.Fatalf("%d receivers still download a minute after the abort", downloading())
			}
		})
	}
}
