package ota

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

// A target that goes silent for good gets the outcome lost after
// LostAfter, so its campaign ends with it counted instead of running
// until an operator aborts it.
func TestSilentTargetIsLostAndTheCampaignEnds(t *testing.T) {
	const lostAfter = 3 * time.Minute
	cases := []struct {
		name      string
		mode      Mode
		nodes     []uint32
		queue     int  // MaxConcurrent
		midway    bool // the node dies in the middle of its download, not before the start
		wantError string
	}{
		{name: "pipelined-list", mode: ModePipelined, nodes: []uint32{100, 101, 102, 103}, wantError: "never answered"},
		{name: "broadcast-list", mode: ModeBroadcast, nodes: []uint32{100, 101, 102, 103}, wantError: "never answered"},
		{name: "stock-list", mode: ModeStock, nodes: []uint32{100, 101, 102, 103}, wantError: "never answered"},
		{name: "pipelined-queued", mode: ModePipelined, nodes: []uint32{103, 100, 101, 102}, queue: 1, wantError: "never answered"},
		{name: "broadcast-list-midway", mode: ModeBroadcast, nodes: []uint32{100, 101, 102, 103}, midway: true, wantError: "no news for"},
		{name: "broadcast-role-midway", mode: ModeBroadcast, midway: true, wantError: "no news for"},
		{name: "pipelined-role-midway", mode: ModePipelined, midway: true, wantError: "no news for"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{n: 4, model: sim.ESP8266(), seed: 71, dcfg: DistributorConfig{LostAfter: lostAfter}})
			dead := r.net.Node(103)
			if !tc.midway {
				r.net.CrashSilent(dead)
			}
			c := r.start(CampaignSpec{ID: "c", Image: sensorImage(71), Mode: tc.mode, Method: "none", Nodes: tc.nodes, MaxConcurrent: tc.queue})
			if tc.midway {
				if !r.net.RunUntil(func() bool { return r.held(103) > 0 }, 10*time.Minute) {
					t.Fatalf("node 103 never started its download: %+v", c.Nodes())
				}
				r.net.CrashSilent(dead)
			}
			crashed := r.net.Now()
			if !r.net.RunUntil(func() bool { return !c.Active() }, 2*time.Hour) {
				t.Fatalf("campaign still %s with a dead node: %+v", c.State, c.Nodes())
			}
			p, ok := c.Node(103)
			if !ok || p.State != StateLost || !strings.Contains(p.Err, tc.wantError) || !strings.Contains(p.Err, "not in the mesh") {
				t.Fatalf("dead node 103: %+v, want lost (%s ..., not in the mesh)", p, tc.wantError)
			}
			// Silence counts from its last report, up to a report
			// interval (10 s) before it died.
			if el := p.Updated.Sub(crashed); el < lostAfter-10*time.Second || el > lostAfter+time.Minute {
				t.Errorf("node 103 lost %v after it died, want about LostAfter (%v)", el, lostAfter)
			}
			if c.State != CampaignFailed || !strings.Contains(c.Reason, "1 of 4 nodes lost") {
				t.Fatalf("campaign %s (%q), want failed: 1 of 4 nodes lost", c.State, c.Reason)
			}
			for _, id := range []uint32{100, 101, 102} {
				if p, _ := c.Node(id); p.State != StateConfirmed {
					t.Errorf("node %d: %s, want confirmed", id, p.State)
				}
			}
			seen := false
			for _, ev := range r.cevents {
				seen = seen || ev.Node == 103 && ev.Progress.State == StateLost
			}
			if !seen {
				t.Error("no campaign event says node 103 is lost")
			}
		})
	}
}

// A node that reports again after it was lost takes part again while
// the campaign runs, and its outcome after the end replaces lost in the
// record (the campaign's own state stays final).
func TestLostNodeThatComesBackIsRecorded(t *testing.T) {
	var r *rig
	r = newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 72, initial: "0123456789abcdef0123456789abcdef",
		dcfg: DistributorConfig{LostAfter: 5 * time.Minute},
		rcfg: func(id uint32) ReceiverConfig {
			down := 30 * time.Second
			if id == 102 {
				down = 20 * time.Minute // powered off in its trial, back long after LostAfter
			}
			return ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTest: func(string) bool { return true },
				Restart: func(time.Time) {
					r.net.After(0, func() { r.net.CrashSilent(r.net.Node(id)) })
					r.net.After(down, func() { r.net.Restart(r.net.Node(id)) })
				}}
		}})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(72), Mode: ModeBroadcast, Method: "none", Nodes: []uint32{100, 101, 102}})
	if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	if p, _ := c.Node(102); p.State != StateLost {
		t.Fatalf("node 102 at the end: %+v, want lost", p)
	}
	state, reason := c.State, c.Reason
	if state != CampaignFailed || !strings.Contains(reason, "1 of 3 nodes lost") {
		t.Fatalf("campaign %s (%q), want failed: 1 of 3 nodes lost", state, reason)
	}
	if !r.net.RunUntil(func() bool { p, _ := c.Node(102); return p.State == StateConfirmed }, time.Hour) {
		p, _ := c.Node(102)
		t.Fatalf("node 102 came back and runs %v, but its record says %+v", r.installed(c.Image.MD5), p)
	}
	if a, ok := r.stores[102].Active(); a != c.Image.MD5 || !ok {
		t.Fatalf("node 102 runs %s (confirmed %v), want the image", a, ok)
	}
	if c.State != state || c.Reason != reason {
		t.Fatalf("campaign now %s (%q), want it to stay %s (%q)", c.State, c.Reason, state, reason)
	}
}

// Time the distributor did not run (a stalled process, its clock jumping
// ahead) is not its targets' silence: a check that comes late starts
// their silences over instead of finding every target lost at once.
func TestLostCountsOnlyTimeTheDistributorWatched(t *testing.T) {
	r := newDistRig(t, DistributorConfig{LostAfter: 10 * time.Minute, Compress: testCompress}, 2, 3)
	c, err := r.d.Start(r.now, CampaignSpec{ID: "c", Image: sensorImage(73), Mode: ModePipelined, Nodes: []uint32{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	r.run(r.now.Add(time.Minute), 0, nil)
	// The distributor's clock jumps 30 minutes ahead.
	r.now = r.now.Add(30 * time.Minute)
	r.d.Tick(r.now)
	if n := c.Count(StateLost); n != 0 {
		t.Fatalf("%d targets lost by a clock jump: %+v", n, c.Nodes())
	}
	r.run(r.now.Add(10*time.Minute+time.Second), 0, nil)
	if n := c.Count(StateLost); n != 2 || c.Active() {
		t.Fatalf("10 minutes watched after the jump: %d lost, campaign %s; want 2 lost and the campaign over", n, c.State)
	}
}
