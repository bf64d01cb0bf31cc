package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/sim"
)

func sensorImage(seed uint64) Image {
	return Image{Role: "sensor", Hardware: "ESP32", Data: testImage(60_000, seed)}
}

// heldBy returns how many chunks node id has staged.
func (r *rig) held(id uint32) int {
	st := r.stores[id]
	if st.staged == nil {
		return 0
	}
	return st.staged.Count()
}

func TestCrashMidDownloadResumes(t *testing.T) {
	for _, mode := range []Mode{ModeStock, ModePipelined, ModeBroadcast, "stock-only"} {
		t.Run(string(mode), func(t *testing.T) {
			o := rigOpts{n: 4, model: sim.ESP8266(), seed: 5}
			spec := CampaignSpec{ID: "c", Image: sensorImage(1), Mode: mode, Method: "deflate"}
			if mode == "stock-only" {
				// A stock distributor: the announce never says the chunk size.
				o.dcfg.StockOnly = true
				spec.Mode, spec.Method = ModeStock, "none"
			}
			r := newRig(t, o)
			victim := r.nodes[3]
			c := r.start(spec)
			total := r.dist.find("c").fast.chunks
			if !r.net.RunUntil(func() bool { return r.held(victim.ID()) >= total/2 }, time.Hour) {
				t.Fatal("victim never got half the chunks")
			}
			r.net.Crash(victim)
			held := map[int]bool{}
			for k := range r.stores[victim.ID()].staged.chunks {
				held[k] = true
			}
			r.net.RunFor(10 * time.Second)
			r.net.Restart(victim)
			if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
				t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
			}
			asked := r.recv[victim.ID()].asked
			for _, i := range asked {
				if held[i] {
					t.Fatalf("chunk %d was held before the crash and asked for again (asked %v)", i, asked)
				}
			}
			if mode != ModeBroadcast && len(asked) != total-len(held) {
				t.Fatalf("asked %d chunks after restart with %d of %d held (%v)", len(asked), len(held), total, asked)
			}
		})
	}
}

func TestCrashDuringSwitchLeavesBootableSlot(t *testing.T) {
	var r *rig
	crashed := false
	r = newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 6, rcfg: func(id uint32) ReceiverConfig {
		cfg := ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTest: func(string) bool { return true }}
		if id == 102 {
			cfg.Restart = func(now time.Time) {
				// Power fails right after the switch was recorded.
				crashed = true
				r.net.After(0, func() { r.net.Crash(r.net.Node(102)) })
			}
		}
		return cfg
	}})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(2), Mode: ModePipelined, Method: "deflate"})
	r.net.RunUntil(func() bool { return crashed }, time.Hour)
	if !crashed {
		t.Fatal("node 102 never switched")
	}
	r.net.RunFor(time.Second)
	st := r.stores[102]
	if trial, _, _ := st.Boot(r.net.Now()); !trial || md5hex(st.Image()) != c.Image.MD5 {
		t.Fatalf("after the crash the store boots trial=%v image md5 %s", trial, md5hex(st.Image()))
	}
	// Undo the probe boot's side effects by rebuilding through a restart.
	r.net.Restart(r.net.Node(102))
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
	}
}

func TestCorruptChunkFailsVerificationThenRetrySucceeds(t *testing.T) {
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 7})
	r.stores[101].CorruptChunk = map[int]bool{2: true}
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(3), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
	}
	failed, switchedBeforeFail := false, false
	for _, e := range r.events {
		if e.Node != 101 {
			continue
		}
		if e.State == StateFailed {
			failed = true
		}
		if e.State == StateConfirmed && !failed {
			switchedBeforeFail = true
		}
	}
	if !failed || switchedBeforeFail {
		t.Fatalf("node 101: failed=%v, confirmed before failing=%v", failed, switchedBeforeFail)
	}
	if md5hex(r.stores[101].Image()) != c.Image.MD5 {
		t.Fatal("node 101 runs a wrong image")
	}
}

func TestUnhealthyImageRollsBack(t *testing.T) {
	const old = "0123456789abcdef0123456789abcdef"
	r := newRig(t, rigOpts{n: 3, model: sim.ESP8266(), seed: 8, initial: old, rcfg: func(id uint32) ReceiverConfig {
		return ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTest: func(string) bool { return id != 101 }}
	}})
	c := r.start(CampaignSpec{ID: "c", Image: sensorImage(4), Mode: ModePipelined, Method: "deflate", Nodes: []uint32{100, 101, 102}})
	camp := r.dist.find("c").Campaign
	if !r.net.RunUntil(func() bool { return !camp.Active() }, time.Hour) {
		t.Fatalf("campaign still %s", camp.State)
	}
	if camp.State != CampaignFailed {
		t.Fatalf("campaign %s, want failed", camp.State)
	}
	p, _ := camp.Node(101)
	if p.State != StateRolledBack {
		t.Fatalf("node 101 reported %s, want rolled_back", p.State)
	}
	if a, ok := r.stores[101].Active(); a != old || !ok {
		t.Fatalf("node 101 runs %s (confirmed %v), want the old image", a, ok)
	}
	writes := r.stores[101].Writes
	r.net.RunFor(10 * time.Minute) // later announces must not flash it again
	if r.stores[101].Writes != writes {
		t.Fatalf("rolled-back image downloaded again (%d more chunks)", r.stores[101].Writes-writes)
	}
	if r.installed(c.Image.MD5) != 2 {
		t.Fatalf("healthy nodes installed: %d", r.installed(c.Image.MD5))
	}
}

func TestPartitionDuringBroadcastCompletesAfterHeal(t *testing.T) {
	m := sim.ESP8266()
	m.Link.Loss = 0.01
	r := newRig(t, rigOpts{n: 14, model: m, seed: 9, fanOut: 2})
	c := r.start(CampaignSpec{ID: "c", Image: Image{Role: "sensor", Hardware: "ESP32", Data: testImage(200_000, 9)}, Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunFor(time.Second)
	// Cut the subtree under the root's first child off for 30 s. The rig
	// builds a breadth-first tree: all[i] joins all[(i-1)/2], all[0] is
	// the distributor and all[1] = r.nodes[0].
	all := append([]*sim.Node{r.distND}, r.nodes...)
	var cut, rest []*sim.Node
	for i := 1; i < len(all); i++ {
		a := i
		for a > 1 {
			a = (a - 1) / 2
		}
		if a == 1 {
			cut = append(cut, all[i])
		} else {
			rest = append(rest, all[i])
		}
	}
	total := r.dist.find("c").fast.chunks
	if r.held(cut[len(cut)-1].ID()) == total {
		t.Fatal("partition comes too late: the cut leaf already has everything")
	}
	r.net.Partition(append([]*sim.Node{r.distND}, rest...), cut)
	r.net.RunFor(30 * time.Second)
	if n := r.installed(c.Image.MD5); n > len(rest) {
		t.Fatalf("%d nodes installed while %d were cut off", n, len(cut))
	}
	r.net.Heal()
	if !r.runUntilInstalled(c.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
	}
}

func TestNewerImageSupersedes(t *testing.T) {
	r := newRig(t, rigOpts{n: 6, model: sim.ESP8266(), seed: 10})
	a := r.start(CampaignSpec{ID: "a", Image: sensorImage(11), Mode: ModePipelined, Method: "deflate"})
	r.net.RunUntil(func() bool { return r.held(r.nodes[5].ID()) > 3 }, time.Hour)
	b := r.start(CampaignSpec{ID: "b", Image: sensorImage(12), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(b.Image.MD5, time.Hour) {
		t.Fatalf("installed on %d of %d", r.installed(b.Image.MD5), len(r.nodes))
	}
	if a.State != CampaignSuperseded || a.Reason != "superseded by campaign b" {
		t.Fatalf("campaign a %s (%s)", a.State, a.Reason)
	}
	if r.installed(a.Image.MD5) != 0 {
		t.Fatal("superseded image installed")
	}
}
