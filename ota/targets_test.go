package ota

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// A campaign with a node list installs on the listed nodes only, in every
// mode: the others of the same role and hardware keep their image, fetch
// nothing, and the campaign completes. With fan-out 3, 100–102 hang off
// the distributor and 103 off 100, so target 103 sits below a node that is
// not a target.
func TestNodeListCampaignInstallsOnlyOnTargets(t *testing.T) {
	const old = "0123456789abcdef0123456789abcdef"
	targets := []uint32{101, 103}
	for _, tc := range []struct {
		mode   Mode
		method string
		model  sim.Model
		split  bool // one offer per listed node, as for a list too long for one package
	}{
		{ModeStock, "none", sim.Ideal(), false},
		{ModeStock, "deflate", sim.Ideal(), false},
		{ModePipelined, "deflate", sim.ESP8266(), false},
		{ModeBroadcast, "deflate", sim.ESP8266(), false},
		{ModeBroadcast, "none", sim.ESP8266(), false},
		{ModePipelined, "deflate", sim.ESP8266(), true},
		{ModeBroadcast, "deflate", sim.ESP8266(), true},
	} {
		name := string(tc.mode) + "/" + tc.method
		if tc.split {
			name += "/split"
		}
		t.Run(name, func(t *testing.T) {
			var dcfg DistributorConfig
			if tc.split {
				// Smaller than an offer, with chunks that fit: one
				// listed node per offer.
				dcfg.MaxPackageSize, dcfg.ChunkSize, dcfg.StockChunkSize = 250, 32, 8
			}
			r := newRig(t, rigOpts{n: 4, model: tc.model, seed: 41, initial: old, dcfg: dcfg})
			c := r.start(CampaignSpec{ID: "c", Image: sensorImage(41), Mode: tc.mode, Method: tc.method, Nodes: targets})
			if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) {
				t.Fatalf("campaign still %s: %+v", c.State, c.Nodes())
			}
			if c.State != CampaignCompleted {
				t.Fatalf("campaign %s (%q), want completed", c.State, c.Reason)
			}
			if n := len(r.dist.find("c").offers); tc.split && n != len(targets) {
				t.Fatalf("%d offers per announce, want one per listed node", n)
			}
			r.net.RunFor(5 * time.Minute) // nothing arrives late either
			for _, nd := range r.nodes {
				id := nd.ID()
				active, _ := r.stores[id].Active()
				switch {
				case slices.Contains(targets, id) && active != c.Image.MD5:
					t.Errorf("target %d runs %s, want the campaign's image", id, active)
				case !slices.Contains(targets, id) && (active != old || r.stores[id].Writes != 0):
					t.Errorf("node %d, not a target, runs %s after fetching %d chunks; want %s and nothing fetched", id, active, r.stores[id].Writes, old)
				}
			}
			for _, p := range c.Nodes() {
				if !slices.Contains(targets, p.Node) {
					t.Errorf("campaign lists node %d, not a target: %+v", p.Node, p)
				}
			}
		})
	}
}

// Stock receivers cannot read the list: the announce reaches every node of
// the role and those not listed ask in vain; the distributor serves only
// the listed ones.
func TestNodeListCampaignStockReceivers(t *testing.T) {
	net, d, dn, rx := stockRig(t, 4, false)
	img := sensorImage(42)
	targets := []uint32{101, 103}
	if err := dn.Step(func(now time.Time, _ sim.Machine) {
		if _, err := d.Start(now, CampaignSpec{ID: "c", Image: img, Mode: ModeStock, Nodes: targets}); err != nil {
			t.Fatal(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	want := md5hex(img.Data)
	if !net.RunUntil(func() bool { return rx[1].Installed == want && rx[3].Installed == want }, time.Hour) {
		t.Fatalf("targets installed %q, %q", rx[1].Installed, rx[3].Installed)
	}
	net.RunFor(10 * time.Minute)
	for _, i := range []int{0, 2} {
		if rx[i].Installed != "" || rx[i].Image != nil {
			t.Errorf("stock node %d, not a target, installed %q", 100+i, rx[i].Installed)
		}
		if rx[i].Sends == 0 {
			t.Errorf("stock node %d, not a target, never asked (the announce should reach it)", 100+i)
		}
	}
	if d.Stats().IgnoredRequests == 0 {
		t.Fatal("the distributor ignored no request of a node outside the list")
	}
}

// Requests of a node outside the list get no data, whatever it asks with:
// stock DataRequests, pipelined Needs, repair Needs as a child.
func TestNodeListCampaignServesNoOutsider(t *testing.T) {
	for _, mode := range []Mode{ModeStock, ModePipelined, ModeBroadcast} {
		t.Run(string(mode), func(t *testing.T) {
			// Node 102 runs another role, so it neither takes part nor
			// answers; it asks in its own name.
			r := newRig(t, rigOpts{n: 3, model: sim.Ideal(), seed: 43, rcfg: func(id uint32) ReceiverConfig {
				role := "sensor"
				if id == 102 {
					role = "probe"
				}
				return ReceiverConfig{Role: role, Hardware: "ESP32", SelfTest: func(string) bool { return true }}
			}})
			c := r.start(CampaignSpec{ID: "c", Image: sensorImage(43), Mode: mode, Method: "deflate", Nodes: []uint32{100}})
			dc := r.dist.find("c")
			o := dc.offer
			before := r.dist.Stats()
			err := r.net.Node(102).Do(func(now time.Time, m *mesh.Node) {
				req := &stockMsg{Type: protocol.TypeOTADataRequest, From: 102, Routing: int(protocol.RouteSingle), MD5: o.MD5,
					Hardware: o.Hardware, Role: o.Role, NoPart: uint32(dc.stock.chunks), Dest: 1}
				if mode == ModeStock {
					req.NoPart, req.Compressed = uint32(o.Chunks), true
				}
				for _, p := range []protocol.Package{
					req,
					&Need{From: 102, Dest: 1, Routing: int(protocol.RouteSingle), ID: "c", Parts: "0-3"},
					&Need{From: 102, Dest: 1, Routing: int(protocol.RouteNeighbour), ID: "c", Parts: "4"},
				} {
					if err := m.SendPackage(now, p); err != nil {
						t.Fatal(err)
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			r.net.RunFor(time.Minute)
			after := r.dist.Stats()
			if got := after.IgnoredRequests - before.IgnoredRequests; got != 3 {
				t.Errorf("distributor ignored %d of the outsider's 3 requests", got)
			}
			if !r.net.RunUntil(func() bool { return !c.Active() }, time.Hour) || c.State != CampaignCompleted {
				t.Fatalf("campaign %s (%q), want completed", c.State, c.Reason)
			}
		})
	}
}

// An offer's node list is bounded by the mesh's package size: a long list
// is split over several offers, each within the limit, every node in
// exactly one; a receiver not listed in an offer ignores it, and one
// listed in any takes the transfer.
func TestOfferNodeListSplitToFit(t *testing.T) {
	var nodes []uint32
	for i := range 2000 {
		nodes = append(nodes, 3_000_000_000+uint32(i)*7)
	}
	base := Offer{From: 4_000_000_000, Routing: 2, ID: "fw-2.1", MD5: strings.Repeat("a", 32), Role: "sensor", Hardware: "ESP32",
		Size: 1 << 20, Mode: "broadcast", Method: "deflate", TSize: 600_000, TMD5: strings.Repeat("b", 32), ChunkSize: 4096, Chunks: 147,
		Encoding: EncDense, Manifest: strings.Repeat("M", 1368), ManifestSig: strings.Repeat("S", 88), Signature: strings.Repeat("s", 88)}
	const limit = 8192
	parts := splitOffer(base, nodes, limit)
	if len(parts) < 2 {
		t.Fatalf("%d offers for %d nodes, want the list split", len(parts), len(nodes))
	}
	seen := map[uint32]int{}
	for _, p := range parts {
		b := (&offerTo{Offer: p, dest: 4_294_967_295}).AppendJSON(nil)
		if len(b) > limit {
			t.Fatalf("offer of %d nodes is %d bytes, over %d", len(p.Nodes), len(b), limit)
		}
		o, err := DecodeOffer(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range o.Nodes {
			seen[id]++
		}
	}
	for _, id := range nodes {
		if seen[id] != 1 {
			t.Fatalf("node %d is in %d offers, want 1", id, seen[id])
		}
	}
	if got := splitOffer(base, nil, limit); len(got) != 1 || got[0].Nodes != nil {
		t.Fatalf("role campaign: %d offers (%v), want one without a list", len(got), got)
	}
}

// The list is a new key: a decoder that does not know it (an older
// receiver) still reads the offer, and ours reads offers with keys it does
// not know.
func TestOfferWithNodesDecodesAnywhere(t *testing.T) {
	o := Offer{From: 1, Routing: 2, ID: "c", MD5: strings.Repeat("a", 32), Role: "sensor", Hardware: "ESP32", Size: 10,
		Mode: "pipelined", Method: "none", TSize: 10, TMD5: strings.Repeat("a", 32), ChunkSize: 10, Chunks: 1, Encoding: EncDense,
		Nodes: []uint32{7, 9}}
	b := o.AppendJSON(nil)
	if !strings.Contains(string(b), `"nodes":[7,9]`) {
		t.Fatalf("offer %s carries no node list", b)
	}
	var older struct {
		ID    string `json:"id"`
		Chunk int    `json:"cs"`
	}
	if err := decodeExt(b, &older); err != nil || older.ID != "c" || older.Chunk != 10 {
		t.Fatalf("an offer decoder without nodes: %+v, %v", older, err)
	}
	future := strings.Replace(string(b), `"nodes"`, `"later":{"x":[1]},"nodes"`, 1)
	got, err := DecodeOffer([]byte(future))
	if err != nil || !slices.Equal(got.Nodes, o.Nodes) {
		t.Fatalf("offer with an unknown key: %+v, %v", got, err)
	}
	role := o
	role.Nodes = nil
	if b := role.AppendJSON(nil); strings.Contains(string(b), "nodes") {
		t.Fatalf("role offer %s names nodes", b)
	}
}

// A stock broadcast transfer floods every node of the role; it cannot be
// limited to a list, so such a start is refused.
func TestStockBroadcastWithNodeListRefused(t *testing.T) {
	r := newRig(t, rigOpts{n: 1, model: sim.Ideal(), seed: 44})
	err := r.distND.Step(func(now time.Time, _ sim.Machine) {
		_, err := r.dist.Start(now, CampaignSpec{ID: "c", Image: sensorImage(44), StockBroadcast: true, Nodes: []uint32{100}})
		if err == nil || !strings.Contains(err.Error(), "node list") {
			t.Errorf("stock broadcast start with a node list: %v, want refused", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
