package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// listingHost is a fakeHost whose node list is its tree's.
type listingHost struct{ fakeHost }

func (h *listingHost) NodeList(includeSelf bool) []uint32 {
	var ids []uint32
	var walk func(t protocol.NodeTree)
	walk = func(t protocol.NodeTree) {
		if includeSelf || t.NodeID != h.id {
			ids = append(ids, t.NodeID)
		}
		for _, s := range t.Subs {
			walk(s)
		}
	}
	walk(h.tree)
	return ids
}

// A stock receiver under stock-turbo names itself nowhere; its reboot
// after the last chunk went out is what shows it installed (estimated).
// A node that stays in the mesh (a relay) is never shown.
func TestStockTurboRebootAfterLastChunkShowsInstalled(t *testing.T) {
	full := protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}, {NodeID: 3}}}
	h := &listingHost{fakeHost{id: 1, tree: full}}
	d := NewDistributor(DistributorConfig{})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: make([]byte, 3*turboPartSize)}, Mode: ModeStockTurbo})
	if err != nil {
		t.Fatal(err)
	}
	step := func(until time.Time) {
		for now.Before(until) {
			now = now.Add(10 * time.Millisecond)
			d.Tick(now)
		}
	}
	lastSent := func() bool {
		for _, m := range h.take(protocol.TypeOTAData) {
			if p, err := protocol.Decode(m); err == nil && p.(*protocol.Data).PartNo == 2 {
				return true
			}
		}
		return false
	}
	for !lastSent() {
		if now.Sub(turboEpoch) > time.Minute {
			t.Fatal("the last chunk did not go out within a minute")
		}
		step(now.Add(10 * time.Millisecond))
	}
	// Node 2 writes the last chunk and reboots 2 s later: away for 3 s.
	step(now.Add(2 * time.Second))
	h.tree = full.Without(2)
	step(now.Add(3 * time.Second))
	if p, ok := c.Node(2); ok {
		t.Fatalf("node 2 shown %s while away", p.State)
	}
	h.tree = full
	h.take(protocol.TypeOTAData)
	step(now.Add(2 * stockPoll))
	if p, ok := c.Node(2); ok {
		t.Fatalf("node 2 shown %s before it answered the probe", p.State)
	}
	if probe := probesTo(h, 2); probe == nil || probe.PartNo != 2 || !probe.Broadcasted {
		t.Fatalf("node 2 back in the mesh got no probe of the last chunk: %+v", probe)
	}
	step(now.Add(turboVerify))
	p, ok := c.Node(2)
	if !ok || p.State != StateInstalled || !p.Estimated || p.Done != 3 || p.Total != 3 || p.BytesTotal != 3*turboPartSize {
		t.Fatalf("node 2 after its reboot: %+v (known %v), want installed (estimated), 3/3 chunks", p, ok)
	}
	step(now.Add(stockRejoin + time.Second))
	if p, ok := c.Node(3); ok {
		t.Fatalf("the relay, never away, shown %s", p.State)
	}
}

// A reboot shorter than the once-a-second poll is still seen: the layout
// changes (the node's connection dropped, then back) check at once.
func TestStockTurboBriefRebootSeenFromLayoutEvents(t *testing.T) {
	full := protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}}}
	h := &listingHost{fakeHost{id: 1, tree: full}}
	d := NewDistributor(DistributorConfig{})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: make([]byte, 1000)}, Mode: ModeStockTurbo})
	if err != nil {
		t.Fatal(err)
	}
	for len(h.take(protocol.TypeOTAData)) == 0 {
		if now.Sub(turboEpoch) > time.Minute {
			t.Fatal("the chunk did not go out within a minute")
		}
		now = now.Add(10 * time.Millisecond)
		d.Tick(now)
	}
	now = now.Add(10 * time.Millisecond)
	h.tree = full.Without(2)
	d.OnEvent(now, mesh.DroppedConnection{NodeID: 2})
	now = now.Add(100 * time.Millisecond)
	h.tree = full
	d.OnEvent(now, mesh.NewConnection{NodeID: 2})
	// Back at once after the last chunk: the first probe's announce is
	// held (others may be restarting), so it counts after a later one.
	for end := now.Add(2*turboVerify + time.Second); now.Before(end); {
		now = now.Add(10 * time.Millisecond)
		d.Tick(now)
	}
	if p, ok := c.Node(2); !ok || p.State != StateInstalled || !p.Estimated {
		t.Fatalf("node 2 after a 100 ms reboot: %+v (known %v), want installed (estimated)", p, ok)
	}
}

// probesTo takes what was sent and returns the last chunk sent to node
// alone (the probe of a returned node), nil if none.
func probesTo(h *listingHost, node uint32) *protocol.Data {
	var probe *protocol.Data
	for _, m := range h.take(protocol.TypeOTAData) {
		if p, err := protocol.Decode(m); err == nil && p.(*protocol.Data).Dest == node && p.(*protocol.Data).Routing == protocol.RouteSingle {
			probe = p.(*protocol.Data)
		}
	}
	return probe
}

// A node that drops out of the mesh and back after the last chunk, and
// answers the probe by asking in its own name for a part it lacks, was
// not rebooting into the image: it is not shown installed.
func TestStockTurboReturnThatAnswersTheProbeIsNotInstalled(t *testing.T) {
	full := protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}}}
	h, d, c, now := pushedTurbo(t, full)
	h.tree = full.Without(2)
	d.OnEvent(now, mesh.DroppedConnection{NodeID: 2})
	h.tree = full
	d.OnEvent(now, mesh.NewConnection{NodeID: 2})
	now = now.Add(10 * time.Millisecond)
	d.Tick(now)
	probe := probesTo(h, 2)
	if probe == nil {
		t.Fatal("no probe to node 2")
	}
	// The receiver waits at part 1: the probe is out of sequence, and it
	// asks for part 1 in the probe's dest, its own id.
	q := &protocol.DataRequest{Announce: probe.Announce, Dest: 1, PartNo: 1}
	q.From, q.Routing, q.Broadcasted = 2, protocol.RouteSingle, false
	raw := protocol.Encode(q)
	hd, err := protocol.ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	d.HandlePackage(now, 1, hd, raw)
	for end := now.Add(turboVerify + time.Second); now.Before(end); {
		now = now.Add(10 * time.Millisecond)
		d.Tick(now)
	}
	if p, ok := c.Node(2); ok && p.State == StateInstalled {
		t.Fatalf("node 2 asked for part 1 and is shown %s", p.State)
	}
}

// A stock-turbo campaign whose known nodes all installed does not end
// while receivers still ask for chunks (they name no node): it ends only
// once the mesh was quiet for the settle period. Ending at the first
// quiet period after the reboots stopped the catch-up of every receiver
// still behind (the 100-node benchmark at 1% loss: 0 of 100 done).
func TestStockTurboDoesNotEndWhileReceiversAsk(t *testing.T) {
	full := protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}, {NodeID: 3}}}
	h, d, c, now := pushedTurbo(t, full)
	// Node 2 reboots with the image; node 3 lost chunk 1 and asks for it
	// every 30 s (in the distributor's name, as after a flooded Data).
	h.tree = full.Without(2)
	d.OnEvent(now, mesh.DroppedConnection{NodeID: 2})
	h.tree = full
	d.OnEvent(now, mesh.NewConnection{NodeID: 2})
	for end := now.Add(2*turboVerify + time.Second); now.Before(end); {
		now = now.Add(10 * time.Millisecond)
		d.Tick(now)
	}
	if p, _ := c.Node(2); p.State != StateInstalled {
		t.Fatalf("node 2: %s, want installed", p.State)
	}
	q := &protocol.DataRequest{Announce: protocol.Announce{From: 1, Routing: protocol.RouteSingle, MD5: c.Image.MD5, Role: "sensor", Hardware: "ESP8266", NoPart: 3, Broadcasted: true}, Dest: 1, PartNo: 1}
	raw := protocol.Encode(q)
	hd, err := protocol.ParseHeader(raw)
	if err != nil {
		t.Fatal(err)
	}
	settle := 2 * 60 * time.Second // 2 × the default announce interval
	asking := now.Add(3 * settle)
	for now.Before(asking) {
		now = now.Add(30 * time.Second)
		d.HandlePackage(now, 1, hd, raw)
		d.Tick(now)
		if c.State != CampaignRunning {
			t.Fatalf("campaign %s at %s while a receiver still asks", c.State, now.Sub(turboEpoch))
		}
	}
	for end := now.Add(settle + time.Minute); now.Before(end) && c.State == CampaignRunning; {
		now = now.Add(time.Second)
		d.Tick(now)
	}
	if c.State != CampaignCompleted {
		t.Fatalf("campaign %s a settle period after the last request, want completed", c.State)
	}
}

// pushedTurbo starts a stock-turbo campaign of a 3-part image on root 1 of
// full and ticks it until the three parts went out.
func pushedTurbo(t *testing.T, full protocol.NodeTree) (*listingHost, *Distributor, *Campaign, time.Time) {
	t.Helper()
	h := &listingHost{fakeHost{id: 1, tree: full}}
	d := NewDistributor(DistributorConfig{})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{Image: Image{Role: "sensor", Hardware: "ESP8266", Data: make([]byte, 3*turboPartSize)}, Mode: ModeStockTurbo})
	if err != nil {
		t.Fatal(err)
	}
	for sent := 0; sent < 3; sent += len(h.take(protocol.TypeOTAData)) {
		if now.Sub(turboEpoch) > time.Minute {
			t.Fatal("the chunks did not go out within a minute")
		}
		now = now.Add(10 * time.Millisecond)
		d.Tick(now)
	}
	return h, d, c, now
}
