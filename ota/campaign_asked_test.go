package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// A node of a campaign for a role whose reports were all lost, but whose
// request for chunks reached the distributor, takes part: the campaign
// does not settle without its outcome, keeps offering (a receiver running
// the image answers an offer with "confirmed"), and ends once that
// outcome arrives.
func TestRequestPutsUnreportedNodeInRoleCampaign(t *testing.T) {
	h := &fakeHost{id: 1, tree: protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}, {NodeID: 3}}}}
	d := NewDistributor(DistributorConfig{Compress: testCompress})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{ID: "c", Image: sensorImage(74), Mode: ModeBroadcast, Method: "deflate"})
	if err != nil {
		t.Fatal(err)
	}
	chunks := d.find("c").fast.chunks
	send := func(p protocol.Package) {
		t.Helper()
		raw := p.AppendJSON(nil)
		hd, err := protocol.ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		d.HandlePackage(now, 1, hd, raw)
	}
	run := func(until time.Time) {
		for now.Before(until) {
			next := d.NextDeadline()
			if next.IsZero() || next.After(until) {
				next = until
			}
			now = later(next, now.Add(time.Millisecond))
			d.Tick(now)
		}
	}
	single := int(protocol.RouteSingle)

	run(now.Add(time.Second))
	send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateDownloading), Total: chunks})
	// Node 3's reports were lost on the way; its repair request was not.
	send(&Need{From: 3, Dest: 1, Routing: single, ID: "c", Parts: FormatRanges([]int{chunks - 1})})
	if p, ok := c.Node(3); !ok || p.State != StateDownloading || p.Total != chunks {
		t.Fatalf("node 3 asked for a chunk: recorded %v %+v, want downloading with %d chunks in all", ok, p, chunks)
	}
	run(now.Add(5 * time.Second))
	send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateConfirmed), Active: c.Image.MD5})

	// Node 2's outcome was the last change; a campaign for a role settles
	// SettleAfter (2 minutes) after it, unless a node owes its outcome.
	h.take(TypeOffer)
	run(now.Add(4 * time.Minute))
	if !c.Active() {
		t.Fatalf("campaign %s (%q) without node 3's outcome: %+v", c.State, c.Reason, c.Nodes())
	}
	if n := len(h.take(TypeOffer)); n < 3 {
		t.Fatalf("%d offers in 4 minutes while node 3 owed its outcome, want one a minute", n)
	}

	send(&Report{From: 3, Dest: 1, Routing: single, ID: "c", State: string(StateConfirmed), Active: c.Image.MD5})
	run(now.Add(3 * time.Minute))
	if c.State != CampaignCompleted {
		t.Fatalf("campaign %s (%q) after both nodes confirmed, want completed: %+v", c.State, c.Reason, c.Nodes())
	}
	for _, id := range []uint32{2, 3} {
		if p, _ := c.Node(id); p.State != StateConfirmed {
			t.Errorf("node %d: %s, want confirmed", id, p.State)
		}
	}
}

// A request from a node the campaign called lost is news of it: it is
// downloading again, as its next report would say.
func TestRequestBringsLostNodeBack(t *testing.T) {
	h := &fakeHost{id: 1, tree: protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}, {NodeID: 3}}}}
	d := NewDistributor(DistributorConfig{Compress: testCompress, LostAfter: 5 * time.Minute})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{ID: "c", Image: sensorImage(75), Mode: ModeBroadcast, Method: "deflate", Nodes: []uint32{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	chunks := d.find("c").fast.chunks
	send := func(p protocol.Package) {
		t.Helper()
		raw := p.AppendJSON(nil)
		hd, err := protocol.ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		d.HandlePackage(now, 1, hd, raw)
	}
	single := int(protocol.RouteSingle)
	// Node 2 keeps reporting, so the campaign runs on; node 3 is silent.
	for next := now; now.Before(turboEpoch.Add(6 * time.Minute)); {
		if !now.Before(next) {
			send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateDownloading), Total: chunks})
			next = now.Add(time.Minute)
		}
		now = later(d.NextDeadline(), now.Add(time.Millisecond))
		if now.After(next) {
			now = next
		}
		d.Tick(now)
	}
	if p, _ := c.Node(3); p.State != StateLost || !c.Active() {
		t.Fatalf("node 3 silent for 6 minutes: %+v, campaign %s; want it lost and the campaign running", p, c.State)
	}
	send(&Need{From: 3, Dest: 1, Routing: single, ID: "c", Parts: FormatRanges([]int{0})})
	if p, _ := c.Node(3); p.State != StateDownloading || p.Err != "" || p.Total != chunks {
		t.Fatalf("node 3 asked for a chunk after it was called lost: %+v, want downloading", p)
	}
}

// A downloading node whose reports are lost but whose requests arrive is
// not silent: LostAfter counts from its latest request too.
func TestRequestsKeepADownloadingNodeFromLost(t *testing.T) {
	h := &fakeHost{id: 1, tree: protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}}}}
	d := NewDistributor(DistributorConfig{Compress: testCompress, LostAfter: 5 * time.Minute})
	d.Attach(h)
	now := turboEpoch
	c, err := d.Start(now, CampaignSpec{ID: "c", Image: sensorImage(76), Mode: ModeBroadcast, Method: "deflate", Nodes: []uint32{2}})
	if err != nil {
		t.Fatal(err)
	}
	chunks := d.find("c").fast.chunks
	send := func(p protocol.Package) {
		t.Helper()
		raw := p.AppendJSON(nil)
		hd, err := protocol.ParseHeader(raw)
		if err != nil {
			t.Fatal(err)
		}
		d.HandlePackage(now, 1, hd, raw)
	}
	single := int(protocol.RouteSingle)
	send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateDownloading), Total: chunks})
	// From here on only its requests arrive, one a minute, for twice
	// LostAfter.
	end := now.Add(10 * time.Minute)
	for next := now.Add(time.Minute); now.Before(end); {
		if !now.Before(next) {
			send(&Need{From: 2, Dest: 1, Routing: single, ID: "c", Parts: FormatRanges([]int{0})})
			next = now.Add(time.Minute)
		}
		now = later(d.NextDeadline(), now.Add(time.Millisecond))
		if now.After(next) {
			now = next
		}
		d.Tick(now)
	}
	if p, _ := c.Node(2); p.State != StateDownloading || !c.Active() {
		t.Fatalf("node 2 asked for chunks every minute for 10 minutes: %+v, campaign %s; want downloading and running", p, c.State)
	}
}
