package ota

import (
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

var turboEpoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// stock-turbo is a mode like the others, and what it cannot do is said
// plainly: stock receivers cannot read a node list or decompress.
func TestStockTurboModeAndItsLimits(t *testing.T) {
	if m, err := ParseMode("stock-turbo"); err != nil || m != ModeStockTurbo {
		t.Fatalf("ParseMode(stock-turbo) = %q, %v", m, err)
	}
	if _, err := ParseMode("turbo"); err == nil || !strings.Contains(err.Error(), "stock-turbo") {
		t.Fatalf("ParseMode(turbo): %v; want the valid modes named", err)
	}
	img := Image{Role: "sensor", Hardware: "ESP8266", Data: []byte("firmware")}
	for _, c := range []struct {
		spec CampaignSpec
		want string
	}{
		{CampaignSpec{Image: img, Mode: ModeStockTurbo, Nodes: []uint32{7}}, "cannot have a node list"},
		{CampaignSpec{Image: img, Mode: ModeStockTurbo, Method: "deflate"}, "cannot decompress"},
	} {
		d := NewDistributor(DistributorConfig{Compress: Compress})
		if _, err := d.Start(turboEpoch, c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v): %v; want %q", c.spec.Nodes, err, c.want)
		}
	}
}

// On the wire stock-turbo is stock packages only: an Announce with
// broadcasted:true and no Offer, then the chunks in order as BROADCAST
// Data with broadcasted:true, each addressed to a ticket of its own
// counting up from the distributor's id (the stock receiver ignores dest;
// its request names it).
func TestStockTurboSendsStockPackagesOnly(t *testing.T) {
	h := &fakeHost{id: 1, tree: protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}}}}
	d := NewDistributor(DistributorConfig{TurboPartSize: 1024})
	d.Attach(h)
	img := Image{Role: "sensor", Hardware: "ESP8266", Data: make([]byte, 3000)}
	now := turboEpoch
	if _, err := d.Start(now, CampaignSpec{Image: img, Mode: ModeStockTurbo}); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		now = now.Add(10 * time.Millisecond)
		d.Tick(now)
	}
	for _, m := range h.sent {
		if hd, _ := protocol.ParseHeader(m); hd.Type != protocol.TypeOTAAnnounce && hd.Type != protocol.TypeOTAData {
			t.Fatalf("sent a type %d package: %s", hd.Type, m)
		}
	}
	ann := h.take(protocol.TypeOTAAnnounce)
	if len(ann) == 0 || !strings.Contains(string(ann[0]), `"broadcasted":true`) {
		t.Fatalf("announces %q: want broadcasted:true", ann)
	}
	data := h.take(protocol.TypeOTAData)
	if len(data) < 3 {
		t.Fatalf("%d Data pushed, want the 3 chunks", len(data))
	}
	for i, m := range data[:3] {
		p, err := protocol.Decode(m)
		if err != nil {
			t.Fatal(err)
		}
		dd := p.(*protocol.Data)
		if dd.PartNo != uint32(i) || dd.Routing != protocol.RouteBroadcast || !dd.Broadcasted || dd.Dest != 1+uint32(i) || dd.NoPart != 3 {
			t.Fatalf("Data %d: %+v", i, dd.DataRequest)
		}
	}
}

// A pass cut short by a go-back keeps its pending checks, and a deficit
// one of them finds brings the stream back once, not at every later
// check (seed 6 of the benchmark went back to the same part for hours).
func TestStockTurboCutPassDeficitBringsTheStreamBackOnce(t *testing.T) {
	now := turboEpoch
	tc := newTurboControl(40, 100, now, 0)
	later := now.Add(turboMaxWait)
	tc.begin(0, false)
	for k := range 20 {
		tc.lastPush[k] = now
		if k >= 8 {
			tc.lastPush[k] = later // its requests are still on their way
		}
	}
	tc.pass.pos = 20
	// Three receivers asked for parts 1…5, one of them never for 6.
	for k := 1; k <= 20; k++ {
		tc.pass.asks[k] = 2
		if k <= 5 {
			tc.pass.asks[k] = 3
		}
	}
	tc.begin(15, false) // someone stuck at 15, before part 5 was checked
	tc.goBack(later)
	if tc.pass.start != 5 {
		t.Fatalf("after the cut pass's checks: stream from %d, want 5", tc.pass.start)
	}
	id := tc.pass.id
	tc.pass.pos = 10
	for k := 5; k < 10; k++ {
		tc.lastPush[k] = later
	}
	tc.goBack(later.Add(turboMaxWait))
	if tc.pass.id != id {
		t.Fatalf("the stream went back again (pass %d from %d) with nothing new asked", tc.pass.id, tc.pass.start)
	}
}
