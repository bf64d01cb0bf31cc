package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/sim"
)

// A confirmed node's progress keeps the chunk counts of the transfer: the
// outcome report carries none.
func TestConfirmedNodeKeepsChunkCounts(t *testing.T) {
	for _, mode := range []Mode{ModePipelined, ModeBroadcast} {
		t.Run(string(mode), func(t *testing.T) {
			r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 21})
			c := r.start(CampaignSpec{ID: "c", Image: sensorImage(21), Mode: mode, Method: "deflate", Nodes: []uint32{100, 101, 102}})
			if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) {
				t.Fatalf("campaign still %s", c.State)
			}
			if c.State != CampaignCompleted {
				t.Fatalf("campaign %s (%s), want completed", c.State, c.Reason)
			}
			o := r.dist.find("c").offer
			want := (int(o.TSize) + o.ChunkSize - 1) / o.ChunkSize
			snap := c.Snapshot()
			if len(snap.Nodes) != 3 {
				t.Fatalf("snapshot has %d nodes, want 3", len(snap.Nodes))
			}
			for _, p := range snap.Nodes {
				if p.State != StateConfirmed || p.Done != want || p.Total != want {
					t.Errorf("node %d: %s %d/%d chunks, want confirmed %d/%d", p.Node, p.State, p.Done, p.Total, want, want)
				}
			}
		})
	}
}

// linuxRig runs receivers that, like a Linux process, restart to run a
// switched image: the node goes down at the switch and comes back after
// down. Node 101's new image fails its self test.
func linuxRig(t *testing.T, down time.Duration) *rig {
	var r *rig
	r = newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 22, initial: "0123456789abcdef0123456789abcdef",
		// The restarts outlast the default LostAfter; these tests are
		// about outcomes, not silences.
		dcfg: DistributorConfig{AnnounceCount: 2, LostAfter: time.Hour},
		rcfg: func(id uint32) ReceiverConfig {
			return ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTestDelay: 30 * time.Second,
				SelfTest: func(string) bool { return id != 101 },
				Restart: func(time.Time) {
					r.net.After(0, func() { r.net.Crash(r.net.Node(id)) })
					r.net.After(down, func() { r.net.Restart(r.net.Node(id)) })
				}}
		}})
	return r
}

// The outcome of a trial known only after a restart reaches the
// distributor although the campaign no longer announces.
func TestLateOutcomeReachesDistributorAfterAnnounces(t *testing.T) {
	r := linuxRig(t, 20*time.Minute)
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(22), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{100, 101, 102}})
	if !r.net.RunUntil(func() bool { return !c.Active() }, 2*time.Hour) {
		t.Fatalf("campaign still %s with nodes %+v", c.State, c.Nodes())
	}
	if got := r.dist.Stats().Announces; got != 2 {
		t.Fatalf("%d announces, want 2", got)
	}
	if c.State != CampaignFailed {
		t.Fatalf("campaign %s, want failed (node 101 rolled back)", c.State)
	}
	for id, want := range map[uint32]State{100: StateConfirmed, 101: StateRolledBack, 102: StateConfirmed} {
		p, _ := c.Node(id)
		if p.State != want {
			t.Errorf("node %d: %s, want %s", id, p.State, want)
		}
		// The outcome came after the announces: the last offer went out
		// two seconds after the start, the restart twenty minutes later.
		if p.Updated.Sub(c.Started) < 20*time.Minute {
			t.Errorf("node %d: outcome at %v, before the restart", id, p.Updated.Sub(c.Started))
		}
	}
	if a, ok := r.stores[101].Active(); a == c.Image.MD5 || !ok {
		t.Fatalf("node 101 runs %s (confirmed %v), want the old image", a, ok)
	}
}

// A rollback is reported once, to its own campaign: later starts of the
// node and later campaigns never see it.
func TestRollbackReportedOnceToItsCampaign(t *testing.T) {
	r := linuxRig(t, 10*time.Minute)
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(23), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{100, 101, 102}})
	if !r.net.RunUntil(func() bool { return !c.Active() }, 2*time.Hour) {
		t.Fatalf("campaign still %s with nodes %+v", c.State, c.Nodes())
	}
	if p, _ := c.Node(101); p.State != StateRolledBack {
		t.Fatalf("node 101: %s, want rolled_back", p.State)
	}
	// The rollback restarts node 101 once more; let it come back up.
	r.net.RunFor(15 * time.Minute)
	if p := r.recv[101].pending; p != nil {
		t.Fatalf("node 101 still holds an outcome to report after its restart: %+v", *p.rep)
	}
	// A campaign for another image.
	d := r.start(CampaignSpec{ID: "d", Image: sensorImage(24), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{101}})
	if !r.net.RunUntil(func() bool { p, _ := d.Node(101); return p.State == StateDownloading || p.Terminal() }, time.Hour) {
		t.Fatalf("node 101 never took part in campaign d: %+v", d.Nodes())
	}
	for _, ev := range r.cevents {
		if ev.Campaign == "d" && ev.Node == 101 && ev.Progress.State == StateRolledBack {
			t.Fatalf("campaign d shows node 101 rolled back: %+v", ev.Progress)
		}
	}
}

// A node that runs a campaign's image already answers its offers with
// "confirmed", and answers again at the next announce when the answer
// may have been lost, but not every offer of a burst.
func TestRunningNodeConfirmsAgainAtTheNextAnnounce(t *testing.T) {
	p := peerProbe(t)
	o, _ := p.offerOf(t, "c-new", compress.None)
	confirmed := func() int {
		n := 0
		for _, raw := range p.h.take(TypeReport) {
			if rep, err := DecodeReport(raw); err == nil && rep.ID == "c-new" && rep.State == string(StateConfirmed) {
				n++
			}
		}
		return n
	}
	p.recv(o)
	if n := confirmed(); n != 1 {
		t.Fatalf("first offer: %d confirmed reports, want 1", n)
	}
	p.advance(time.Second)
	p.recv(o)
	if n := confirmed(); n != 0 {
		t.Fatalf("an offer 1 s later: %d confirmed reports, want 0", n)
	}
	p.advance(60 * time.Second) // the distributor's next announce: the first answer may be lost
	p.recv(o)
	if n := confirmed(); n != 1 {
		t.Fatalf("the next announce: %d confirmed reports, want 1", n)
	}
}
