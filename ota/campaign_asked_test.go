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
	r := newDistRig(t, DistributorConfig{Compress: testCompress}, 2, 3)
	c, err := r.d.Start(r.now, CampaignSpec{ID: "c", Image: sensorImage(74), Mode: ModeBroadcast, Method: "deflate"})
	if err != nil {
		t.Fatal(err)
	}
	chunks := r.d.find("c").fast.chunks
	single := int(protocol.RouteSingle)

	r.run(r.now.Add(time.Second), 0, nil)
	r.send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateDownloading), Total: chunks})
	// Node 3's reports were lost on the way; its repair request was not.
	r.send(&Need{From: 3, Dest: 1, Routing: single, ID: "c", Parts: FormatRanges([]int{chunks - 1})})
	if p, ok := c.Node(3); !ok || p.State != StateDownloading || p.Total != chunks {
		t.Fatalf("node 3 asked for a chunk: recorded %v %+v, want downloading with %d chunks in all", ok, p, chunks)
	}
	r.run(r.now.Add(5*time.Second), 0, nil)
	r.send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateConfirmed), Active: c.Image.MD5})

	// Node 2's outcome was the last change; a campaign for a role settles
	// SettleAfter (2 minutes) after it, unless a node owes its outcome.
	r.h.take(TypeOffer)
	r.run(r.now.Add(4*time.Minute), 0, nil)
	if !c.Active() {
		t.Fatalf("campaign %s (%q) without node 3's outcome: %+v", c.State, c.Reason, c.Nodes())
	}
	if n := len(r.h.take(TypeOffer)); n < 3 {
		t.Fatalf("%d offers in 4 minutes while node 3 owed its outcome, want one a minute", n)
	}

	r.send(&Report{From: 3, Dest: 1, Routing: single, ID: "c", State: string(StateConfirmed), Active: c.Image.MD5})
	r.run(r.now.Add(3*time.Minute), 0, nil)
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
	r := newDistRig(t, DistributorConfig{Compress: testCompress, LostAfter: 5 * time.Minute}, 2, 3)
	c, err := r.d.Start(r.now, CampaignSpec{ID: "c", Image: sensorImage(75), Mode: ModeBroadcast, Method: "deflate", Nodes: []uint32{2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	chunks := r.d.find("c").fast.chunks
	single := int(protocol.RouteSingle)
	// Node 2 keeps reporting, so the campaign runs on; node 3 is silent.
	r.run(turboEpoch.Add(6*time.Minute), time.Minute, func() {
		r.send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateDownloading), Total: chunks})
	})
	if p, _ := c.Node(3); p.State != StateLost || !c.Active() {
		t.Fatalf("node 3 silent for 6 minutes: %+v, campaign %s; want it lost and the campaign running", p, c.State)
	}
	r.send(&Need{From: 3, Dest: 1, Routing: single, ID: "c", Parts: FormatRanges([]int{0})})
	if p, _ := c.Node(3); p.State != StateDownloading || p.Err != "" || p.Total != chunks {
		t.Fatalf("node 3 asked for a chunk after it was called lost: %+v, want downloading", p)
	}
}

// A downloading node whose reports are lost but whose requests arrive is
// not silent: LostAfter counts from its latest request too.
func TestRequestsKeepADownloadingNodeFromLost(t *testing.T) {
	r := newDistRig(t, DistributorConfig{Compress: testCompress, LostAfter: 5 * time.Minute}, 2)
	c, err := r.d.Start(r.now, CampaignSpec{ID: "c", Image: sensorImage(76), Mode: ModeBroadcast, Method: "deflate", Nodes: []uint32{2}})
	if err != nil {
		t.Fatal(err)
	}
	chunks := r.d.find("c").fast.chunks
	single := int(protocol.RouteSingle)
	r.send(&Report{From: 2, Dest: 1, Routing: single, ID: "c", State: string(StateDownloading), Total: chunks})
	// From a minute on only its requests arrive, one a minute, for twice
	// LostAfter.
	r.run(r.now.Add(time.Minute), 0, nil)
	r.run(turboEpoch.Add(10*time.Minute), time.Minute, func() {
		r.send(&Need{From: 2, Dest: 1, Routing: single, ID: "c", Parts: FormatRanges([]int{0})})
	})
	if p, _ := c.Node(2); p.State != StateDownloading || !c.Active() {
		t.Fatalf("node 2 asked for chunks every minute for 10 minutes: %+v, campaign %s; want downloading and running", p, c.State)
	}
}

// distRig drives a distributor alone on a fake host, on a virtual clock.
type distRig struct {
	t   *testing.T
	h   *fakeHost
	d   *Distributor
	now time.Time
}

// newDistRig attaches a distributor with cfg to root 1 over nodes subs.
func newDistRig(t *testing.T, cfg DistributorConfig, subs ...uint32) *distRig {
	tree := protocol.NodeTree{NodeID: 1}
	for _, id := range subs {
		tree.Subs = append(tree.Subs, protocol.NodeTree{NodeID: id})
	}
	h := &fakeHost{id: 1, tree: tree}
	d := NewDistributor(cfg)
	d.Attach(h)
	return &distRig{t: t, h: h, d: d, now: turboEpoch}
}

// send hands p to the distributor as received now.
func (r *distRig) send(p protocol.Package) {
	r.t.Helper()
	raw := p.AppendJSON(nil)
	hd, err := protocol.ParseHeader(raw)
	if err != nil {
		r.t.Fatal(err)
	}
	r.d.HandlePackage(r.now, 1, hd, raw)
}

// run ticks the distributor at each of its deadlines until until, and
// calls every (if set) each period from now on.
func (r *distRig) run(until time.Time, period time.Duration, every func()) {
	next := r.now
	for r.now.Before(until) {
		if every != nil && !r.now.Before(next) {
			every()
			next = r.now.Add(period)
		}
		at := r.d.NextDeadline()
		if at.IsZero() || at.After(until) {
			at = until
		}
		if every != nil && at.After(next) {
			at = next
		}
		r.now = later(at, r.now.Add(time.Millisecond))
		r.d.Tick(r.now)
	}
}
