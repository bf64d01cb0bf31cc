package ota

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

// stockRig is a mesh of faithful stock receivers under our distributor.
func stockRig(t *testing.T, n int, root bool) (*sim.Network, *Distributor, *sim.Node, []*stockota.Receiver) {
	t.Helper()
	net := sim.New(sim.Config{Seed: 4, Model: sim.ESP8266()})
	d := NewDistributor(DistributorConfig{Compress: testCompress})
	dn, _ := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: 1, Root: true}, Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{d} }})
	all := []*sim.Node{dn}
	var rx []*stockota.Receiver
	for i := 0; i < n; i++ {
		s := &stockota.Receiver{Role: "sensor", Hardware: "ESP32", Root: root && i == 0}
		rx = append(rx, s)
		nd, _ := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: uint32(100 + i)}, Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{s} }})
		all = append(all, nd)
	}
	if err := net.Tree(all, 2, 0); err != nil {
		t.Fatal(err)
	}
	net.RunUntil(net.Converged, time.Minute)
	return net, d, dn, rx
}

func TestStockReceiversUnderOurDistributor(t *testing.T) {
	net, d, dn, rx := stockRig(t, 5, false)
	img := sensorImage(20)
	dn.Step(func(now time.Time, _ sim.Machine) {
		if _, err := d.Start(now, CampaignSpec{ID: "c", Image: img, Mode: ModeBroadcast, Method: "deflate"}); err != nil {
			t.Fatal(err)
		}
	})
	// Stock receivers ignore the offer and fetch the uncompressed image with
	// the stock packages even while our broadcast mode runs.
	ok := net.RunUntil(func() bool {
		for _, s := range rx {
			if s.Installed != md5hex(img.Data) {
				return false
			}
		}
		return true
	}, time.Hour)
	if !ok {
		t.Fatal("stock receivers did not all install the image")
	}
	for _, s := range rx {
		if string(s.Image) != string(img.Data) {
			t.Fatal("stock receiver image differs")
		}
	}
	if d.Stats().IgnoredRequests != 0 {
		t.Fatalf("%d stock requests ignored", d.Stats().IgnoredRequests)
	}
}

// TestStockBroadcastPitfalls shows Q-19 a with the faithful stock receiver
// (nobody is root: nothing happens) and our receivers' fix (they wait for
// broadcast data, then ask for themselves, in their own name).
func TestStockBroadcastPitfalls(t *testing.T) {
	net, d, dn, rx := stockRig(t, 4, false)
	img := sensorImage(21)
	dn.Step(func(now time.Time, _ sim.Machine) {
		d.Start(now, CampaignSpec{ID: "c", Image: img, Mode: ModeStock, StockBroadcast: true})
	})
	net.RunFor(20 * time.Minute)
	for _, s := range rx {
		if s.Sends != 0 || s.Installed != "" {
			t.Fatalf("stock non-root receiver sent %d requests, installed %q", s.Sends, s.Installed)
		}
	}

	r := newRig(t, rigOpts{n: 4, model: sim.ESP8266(), seed: 22, dcfg: DistributorConfig{StockOnly: true}, rcfg: func(id uint32) ReceiverConfig {
		return ReceiverConfig{Role: "sensor", Hardware: "ESP32", BroadcastWait: 20 * time.Second, SelfTest: func(string) bool { return true }}
	}})
	// A stock-only distributor: our receivers see only the stock announce.
	c := r.start(CampaignSpec{ID: "c", Image: img, Mode: ModeStock, StockBroadcast: true})
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
	}
	if r.dist.Stats().IgnoredRequests != 0 {
		t.Fatalf("%d requests did not match the announce", r.dist.Stats().IgnoredRequests)
	}
	for id, rc := range r.recv {
		if rc.stats.StockRequests == 0 {
			t.Fatalf("node %d never asked for itself", id)
		}
	}
}

// TestForcedDoesNotReflash checks Q-19 c: a forced announce installs once.
func TestForcedDoesNotReflash(t *testing.T) {
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 23})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(24), Mode: ModeStock, Forced: true})
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatal("not installed")
	}
	writes := map[uint32]int{}
	for id, st := range r.stores {
		writes[id] = st.Writes
	}
	r.net.RunFor(10 * time.Minute) // ten more forced announces
	for id, st := range r.stores {
		if st.Writes != writes[id] {
			t.Fatalf("node %d flashed again after a forced announce", id)
		}
	}
}

func TestCampaignPauseResumeAbortSnapshot(t *testing.T) {
	r := newRig(t, rigOpts{n: 4, model: sim.ESP8266(), seed: 25})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(26), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{100, 101, 102, 103}})
	r.net.RunUntil(func() bool { return r.held(103) > 2 }, time.Hour)
	step := func(f func(now time.Time) error) {
		t.Helper()
		var err error
		r.distND.Step(func(now time.Time, _ sim.Machine) { err = f(now) })
		if err != nil {
			t.Fatal(err)
		}
	}
	step(func(now time.Time) error { return r.dist.Pause(now, "c") })
	held := r.held(103)
	r.net.RunFor(2 * time.Minute)
	if c.State != CampaignPaused || r.held(103) > held+8 {
		t.Fatalf("paused campaign %s still served: %d → %d chunks", c.State, held, r.held(103))
	}
	if err := r.dist.Pause(r.net.Now(), "c"); err == nil {
		t.Fatal("pausing a paused campaign succeeded")
	}
	b, err := json.Marshal(c.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap CampaignSnapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}
	back := RestoreCampaign(snap)
	if back.ID != "c" || back.State != CampaignPaused || len(back.Nodes()) != len(c.Nodes()) || back.Image.MD5 != c.Image.MD5 {
		t.Fatalf("snapshot round trip lost state: %+v", back.Snapshot())
	}
	step(func(now time.Time) error { return r.dist.Resume(now, "c") })
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatal("not installed after resume")
	}
	r.net.RunUntil(func() bool { return c.State != CampaignRunning }, time.Minute)
	if c.State != CampaignCompleted || c.Finished.IsZero() || c.Count(StateConfirmed) != 4 {
		t.Fatalf("campaign %s finished %v confirmed %d", c.State, c.Finished, c.Count(StateConfirmed))
	}
	if err := r.dist.Abort(r.net.Now(), "c"); err == nil {
		t.Fatal("aborting a completed campaign succeeded")
	}
	if err := r.dist.Abort(r.net.Now(), "nope"); err == nil {
		t.Fatal("aborting an unknown campaign succeeded")
	}
}

func TestProgressEvents(t *testing.T) {
	r := newRig(t, rigOpts{n: 2, model: sim.ESP8266(), seed: 27})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(28), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatal("not installed")
	}
	var states []State
	lastDone := -1
	for _, e := range r.events {
		if e.Node != 101 {
			continue
		}
		if len(states) == 0 || states[len(states)-1] != e.State {
			states = append(states, e.State)
		}
		if e.State == StateDownloading {
			if e.Done < lastDone || e.Total == 0 || e.Done > e.Total {
				t.Fatalf("progress went %d → %d of %d", lastDone, e.Done, e.Total)
			}
			lastDone = e.Done
		}
	}
	want := []State{StateDownloading, StateVerifying, StateSwitching, StateConfirmed}
	if len(states) != len(want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("states %v, want %v", states, want)
		}
	}
}
