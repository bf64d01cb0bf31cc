package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/sim"
)

// A stock receiver asks for the next part the moment it wrote one, so on
// a link far faster than the ESP8266 airtime model its round trips, not
// the model, set the pace of stock replies.
func TestStockRepliesFollowAFastLink(t *testing.T) {
	net := sim.New(sim.Config{Seed: 5, Model: sim.Ideal()})
	d := NewDistributor(DistributorConfig{Compress: testCompress}) // paced by DefaultRadio
	dn, _ := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: 1, Root: true}, Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{d} }})
	rx := &stockota.Receiver{Role: "sensor", Hardware: "ESP32"}
	rn, _ := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: 100}, Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{rx} }})
	if err := net.Tree([]*sim.Node{dn, rn}, 2, 0); err != nil {
		t.Fatal(err)
	}
	net.RunUntil(net.Converged, time.Minute)
	img := Image{Role: "sensor", Hardware: "ESP32", Data: testImage(200_000, 7)}
	var started time.Time
	if err := dn.Step(func(now time.Time, _ sim.Machine) {
		started = now
		if _, err := d.Start(now, CampaignSpec{ID: "c", Image: img, Mode: ModeStock}); err != nil {
			t.Fatal(err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	want := md5hex(img.Data)
	if !net.RunUntil(func() bool { return rx.Installed == want }, time.Hour) {
		t.Fatal("the stock receiver did not install the image")
	}
	took := net.Now().Sub(started)
	dc := d.find("c")
	model := time.Duration(dc.stock.chunks) * DefaultRadio.airtime(dc.stock.chunkSize*4/3+200)
	t.Logf("%d parts in %v; the airtime model alone paces them in %v", dc.stock.chunks, took, model)
	if took > model/10 {
		t.Fatalf("%d parts took %v on an ideal link: paced by the model (%v), not by the link", dc.stock.chunks, took, model)
	}
}
