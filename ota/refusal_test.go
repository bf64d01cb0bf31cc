package ota

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

// A node that refuses the image is through for the campaign: a campaign
// whose list includes it ends failed, refusals and rollbacks counted apart.
func TestRefusalEndsNodeListCampaign(t *testing.T) {
	r := newRig(t, rigOpts{n: 4, model: sim.ESP8266(), seed: 45, rcfg: func(id uint32) ReceiverConfig {
		return ReceiverConfig{Role: "sensor", Hardware: "ESP32", PublicKey: testPub, SelfTest: func(string) bool { return id != 102 }}
	}})
	r.stores[101].SetSecurityCounter(9) // refuses counter 5
	c := r.start(CampaignSpec{ID: "c", Image: signed(t, sensorImage(45), testKey, "sensor", "ESP32", 5, false), Mode: ModeBroadcast,
		Method: "deflate", Nodes: []uint32{100, 101, 102}})
	if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) {
		t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
	}
	if c.State != CampaignFailed || c.Reason != "1 of 3 nodes refused the image, 1 rolled back" {
		t.Fatalf("campaign %s (%q), want failed: 1 of 3 nodes refused the image, 1 rolled back", c.State, c.Reason)
	}
	p, _ := c.Node(101)
	if p.State != StateRefused || !strings.Contains(p.Err, "security counter 5 is below this node's 9") {
		t.Fatalf("node 101 at the distributor: %+v, want refused with the reason", p)
	}
	for _, e := range r.events {
		if e.Node == 101 && e.State == StateFailed {
			t.Fatalf("refusing node emitted failed: %+v", e)
		}
	}
}

// A campaign for a role with one refusing node ends after the settle
// period, failed, naming the refusal.
func TestRefusalEndsRoleCampaign(t *testing.T) {
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 46, dcfg: DistributorConfig{AnnounceInterval: 10 * time.Second},
		rcfg: func(id uint32) ReceiverConfig {
			return ReceiverConfig{Role: "sensor", Hardware: "ESP32", PublicKey: testPub, SelfTest: func(string) bool { return true }}
		}})
	r.stores[102].SetSecurityCounter(9)
	c := r.start(CampaignSpec{ID: "c", Image: signed(t, sensorImage(46), testKey, "sensor", "ESP32", 5, false), Mode: ModeBroadcast, Method: "deflate"})
	if !r.net.RunUntil(func() bool { return c.Count(StateConfirmed) == 2 && c.Count(StateRefused) == 1 }, time.Hour) {
		t.Fatalf("nodes %+v, want 2 confirmed and 1 refused", c.Nodes())
	}
	if !r.net.RunUntil(func() bool { return !c.Active() }, 10*time.Minute) {
		t.Fatalf("role campaign still %s with every node through: %+v", c.State, c.Nodes())
	}
	if c.State != CampaignFailed || c.Reason != "1 of 3 nodes refused the image" {
		t.Fatalf("campaign %s (%q), want failed: 1 of 3 nodes refused the image", c.State, c.Reason)
	}
}

// A verification failure is not final: the node backs off and retries,
// so it does not end the campaign.
func TestTransientFailureIsNotFinal(t *testing.T) {
	for _, s := range []State{StateFailed, StateDownloading, StateVerifying} {
		if (NodeProgress{State: s}).Terminal() {
			t.Errorf("state %s counts as final", s)
		}
	}
	for _, s := range []State{StateConfirmed, StateRolledBack, StateRefused} {
		if !(NodeProgress{State: s}).Terminal() {
			t.Errorf("state %s does not count as final", s)
		}
	}
}

// Final states never change: a report that arrives after the campaign
// ended leaves the node's record as it was.
func TestReportAfterEndKeepsRecord(t *testing.T) {
	r := newRig(t, rigOpts{n: 2, model: sim.ESP8266(), seed: 47})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(47), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{100, 101}})
	if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) || c.State != CampaignCompleted {
		t.Fatalf("campaign %s (%q), want completed", c.State, c.Reason)
	}
	before := c.Nodes()
	err := r.net.Node(101).Do(func(now time.Time, m *mesh.Node) {
		for _, rep := range []*Report{
			{From: 101, Dest: 1, Routing: 1, ID: "c", State: string(StateRolledBack), Error: "late"},
			{From: 100, Dest: 1, Routing: 1, ID: "c", State: string(StateDownloading), Have: 1, Total: 9},
		} {
			if err := m.SendPackage(now, rep); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.net.RunFor(time.Minute)
	after := c.Nodes()
	if !slices.Equal(before, after) || c.State != CampaignCompleted {
		t.Fatalf("ended campaign changed by late reports:\nbefore %+v\nafter  %+v (%s)", before, after, c.State)
	}
}
