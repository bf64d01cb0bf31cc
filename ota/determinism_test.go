package ota

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

// The stock and stock-turbo checks move several nodes at once; they emit
// them by id, never in map order, so a run does not vary with Go's map
// iteration.
func TestStockChecksReportNodesInIDOrder(t *testing.T) {
	ids := make([]uint32, 40)
	for i := range ids {
		ids[i] = uint32(100 + i)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	v := newVariant(make([]byte, 3*1024), 1024, "00000000000000000000000000000000", "none")
	everywhere := func(uint32) bool { return true }
	nowhere := func(uint32) bool { return false }
	got := func(out []NodeProgress, want State) []uint32 {
		t.Helper()
		var seen []uint32
		for _, p := range out {
			if p.State != want {
				t.Fatalf("node %d: %s, want %s", p.Node, p.State, want)
			}
			seen = append(seen, p.Node)
		}
		if len(seen) != len(ids) {
			t.Fatalf("%d nodes moved, want %d", len(seen), len(ids))
		}
		return seen
	}
	t0 := turboEpoch

	t.Run("stock-turbo reboots", func(t *testing.T) {
		c := &Campaign{State: CampaignRunning, nodes: map[uint32]*NodeProgress{}}
		c.turboLastSent(t0, ids, v)
		c.turboCheck(t0.Add(time.Second), nowhere)
		// Back in the mesh: each is probed, and counts once it stays
		// silent for turboVerify after a probe it could answer.
		back := t0.Add(2 * time.Second)
		if out := c.turboCheck(back, everywhere); len(out) != 0 {
			t.Fatalf("%d nodes installed on their return, before a probe", len(out))
		}
		c.turboProbed(back, back, ids)
		out := got(c.turboCheck(back.Add(turboVerify), everywhere), StateInstalled)
		if !slices.IsSorted(out) {
			t.Fatalf("installed nodes reported in the order %v, want by id", out)
		}
	})
	t.Run("stock silences", func(t *testing.T) {
		c := &Campaign{State: CampaignRunning, nodes: map[uint32]*NodeProgress{}}
		for _, id := range ids {
			c.stockAsked(t0, id, 1, v)
		}
		// Checked when the campaign asks to be: a late check is time
		// the distributor did not watch, not the nodes' silence.
		var moved []NodeProgress
		for len(moved) == 0 && c.stockNext.Before(t0.Add(2*stockLostAfter)) {
			moved = c.stockCheck(c.stockNext, everywhere)
		}
		out := got(moved, StateLost)
		if !slices.IsSorted(out) {
			t.Fatalf("lost nodes reported in the order %v, want by id", out)
		}
	})
}

// Two runs of one seed of a stock-turbo campaign on stock receivers that
// reboot after they install are the same run: the same trace digest and
// the same campaign events in the same order.
func TestStockTurboCampaignRepeatsWithItsSeed(t *testing.T) {
	run := func() ([32]byte, []string) {
		var events []string
		net := sim.New(sim.Config{Seed: 9, Model: sim.ESP8266(), OnEvent: func(_ *sim.Node, at time.Time, ev mesh.Event) {
			if c, ok := ev.(CampaignEvent); ok && c.Node != 0 {
				events = append(events, fmt.Sprintf("%v %d %s", at.Sub(sim.DefaultEpoch), c.Node, c.Progress.State))
			}
		}})
		d := NewDistributor(DistributorConfig{})
		dn, err := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: 1, Root: true, ContainsRoot: true}, Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{d} }})
		if err != nil {
			t.Fatal(err)
		}
		all := []*sim.Node{dn}
		var rx []*stockota.Receiver
		for i := 0; i < 12; i++ {
			s := &stockota.Receiver{Role: "sensor", Hardware: "ESP8266"}
			rx = append(rx, s)
			nd, err := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: uint32(100 + i)}, Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{s} }})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, nd)
		}
		if err := net.Tree(all, 3, 0); err != nil {
			t.Fatal(err)
		}
		if !net.RunUntil(net.Converged, 5*time.Minute) {
			t.Fatal("mesh did not converge")
		}
		img := Image{Role: "sensor", Hardware: "ESP8266", Data: testImage(40_000, 9)}
		var c *Campaign
		if err := dn.Step(func(now time.Time, _ sim.Machine) {
			if c, err = d.Start(now, CampaignSpec{ID: "t", Image: img, Mode: ModeStockTurbo}); err != nil {
				t.Fatal(err)
			}
		}); err != nil {
			t.Fatal(err)
		}
		// A stock receiver reboots 2 s after it wrote the last chunk.
		rebooting := make([]bool, len(rx))
		if !net.RunUntil(func() bool {
			for i, s := range rx {
				if s.Installed == c.Image.MD5 && !rebooting[i] {
					rebooting[i] = true
					nd := all[i+1]
					net.After(2*time.Second, func() { net.Restart(nd) })
				}
			}
			return !c.Active()
		}, time.Hour) {
			t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
		}
		if n := c.Count(StateInstalled); n < 2 {
			t.Fatalf("%d nodes shown installed, want several to compare the order of", n)
		}
		return net.TraceDigest(), events
	}
	d1, e1 := run()
	d2, e2 := run()
	if !slices.Equal(e1, e2) {
		t.Fatalf("campaign events differ between runs of one seed:\n%v\n%v", e1, e2)
	}
	if d1 != d2 {
		t.Fatalf("trace digests differ between runs of one seed: %x, %x", d1, d2)
	}
	t.Logf("%d node events, digest %x", len(e1), d1[:8])
}
