package scenario

import (
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/sim"
)

// turboFleet is a fleet of stock receivers (the model of the C++ one)
// under a stock-only distributor, converged.
func turboFleet(t *testing.T, devices int, seed uint64, loss float64) (*Fleet, *ota.Distributor) {
	t.Helper()
	model := sim.ESP8266()
	model.Link.Loss = loss
	radio := ota.Radio{Overhead: model.Radio.TxOverhead + model.Link.Latency, ByteTime: model.Radio.ByteTime}
	// Parts of 1 KiB: the small images here still make dozens of them.
	dist := ota.NewDistributor(ota.DistributorConfig{StockOnly: true, Radio: radio, TurboPartSize: 1024})
	f, err := Build(Spec{
		Devices: devices, Seed: seed, Model: model, Timing: mesh.StockTiming(),
		Layout:  Layout{Topology: sim.TopologyTree, MaxDepth: 4},
		Root:    Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{dist} }},
		FirstID: 100,
		OTA:     OTA{Receiver: StockReceiver, Role: "sensor", Hardware: "ESP8266", Radio: radio},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Converge(5 * time.Minute); err != nil {
		t.Fatal(err)
	}
	return f, dist
}

func startTurbo(t *testing.T, f *Fleet, dist *ota.Distributor, img []byte) string {
	t.Helper()
	spec := ota.CampaignSpec{Image: ota.Image{Role: "sensor", Hardware: "ESP8266", Data: img}, Mode: ota.ModeStockTurbo}
	var err error
	if stepErr := f.Root.Step(func(now time.Time, _ sim.Machine) { _, err = dist.Start(now, spec) }); stepErr != nil || err != nil {
		t.Fatal(stepErr, err)
	}
	return md5hex(img)
}

func allRun(f *Fleet, md5 string) func() bool {
	return func() bool { return !slices.ContainsFunc(f.Devices, func(d *Device) bool { return !d.Runs(md5) }) }
}

// checkImages: every node that installed an image wrote exactly the
// bytes whose md5 it claims, and that is the campaign's.
func checkImages(t *testing.T, f *Fleet, md5 string) {
	t.Helper()
	for _, d := range f.Devices {
		if d.Stock.Installed != md5 || md5hex(d.Stock.Image) != md5 {
			t.Errorf("node %d: installed %q, image md5 %s; want %s", d.ID, d.Stock.Installed, md5hex(d.Stock.Image), md5)
		}
	}
}

// Stock-turbo on a lossy mesh: every stock receiver completes, with the
// campaign's image, far sooner than one stream per receiver would.
func TestStockTurboCompletesEverywhere(t *testing.T) {
	f, dist := turboFleet(t, 30, 3, 0.02)
	img := compress.FirmwareLike(48<<10, 3)
	start := f.Net.Now()
	md5 := startTurbo(t, f, dist, img)
	if !f.Net.RunUntil(allRun(f, md5), 30*time.Minute) {
		t.Fatalf("not every stock receiver completed: %d/%d", countRun(f, md5), len(f.Devices))
	}
	checkImages(t, f, md5)
	took := f.Net.Now().Sub(start)
	st := dist.Stats()
	chunks := (len(img) + 1023) / 1024
	t.Logf("30 stock receivers, %d chunks, loss 0.02: %v, %d Data floods", chunks, took, st.StockServed)
	// Lost chunks came back by catch-up floods, not one stream per node.
	if st.StockServed <= chunks || st.StockServed > 30*chunks/2 {
		t.Errorf("%d Data sent for %d chunks: want catch-up (more than one each) and at most half of one stream per node (%d)", st.StockServed, chunks, 30*chunks)
	}
}

func countRun(f *Fleet, md5 string) int {
	n := 0
	for _, d := range f.Devices {
		if d.Runs(md5) {
			n++
		}
	}
	return n
}

// A node that is off when the transfer starts and joins after the main
// stream is over, and one that crashes mid-transfer and restarts (its
// transfer lost with its RAM), both complete: the late one hears a later
// Announce and the probes, the restarted one asks from chunk 0 and gets a
// catch-up stream.
func TestStockTurboLateAndRestartedNodesComplete(t *testing.T) {
	f, dist := turboFleet(t, 12, 5, 0)
	late, crashed := f.Devices[len(f.Devices)-1], f.Devices[len(f.Devices)-2]
	f.Net.Crash(late.Node)
	img := compress.FirmwareLike(64<<10, 5)
	md5 := startTurbo(t, f, dist, img)
	mid := func() bool { return crashed.Stock.PartsReceived() >= 20 }
	if !f.Net.RunUntil(mid, 10*time.Minute) {
		t.Fatal("the transfer never reached chunk 20")
	}
	f.Net.Crash(crashed.Node)
	others := func() bool {
		return !slices.ContainsFunc(f.Devices, func(d *Device) bool { return d != late && d != crashed && !d.Runs(md5) })
	}
	if !f.Net.RunUntil(others, 10*time.Minute) {
		t.Fatal("the nodes that stayed up did not complete")
	}
	f.Net.Restart(crashed.Node)
	f.Net.Restart(late.Node)
	if !f.Net.RunUntil(allRun(f, md5), 30*time.Minute) {
		t.Fatalf("late node: parts %d, runs %v; restarted node: parts %d, runs %v",
			late.Stock.PartsReceived(), late.Runs(md5), crashed.Stock.PartsReceived(), crashed.Runs(md5))
	}
	checkImages(t, f, md5)
}

// A new image gets a new campaign, which supersedes the old one: nodes
// midway through the first switch to the second and write it whole; no
// node ever installs bytes that mix the two.
func TestStockTurboNewImageNeverMixes(t *testing.T) {
	f, dist := turboFleet(t, 15, 7, 0.01)
	first := compress.FirmwareLike(32<<10, 7)
	startTurbo(t, f, dist, first)
	if !f.Net.RunUntil(func() bool { return f.Devices[0].Stock.PartsReceived() >= 10 }, 10*time.Minute) {
		t.Fatal("the first transfer never reached chunk 10")
	}
	second := compress.FirmwareLike(32<<10, 8)
	md5 := startTurbo(t, f, dist, second)
	if !f.Net.RunUntil(allRun(f, md5), 30*time.Minute) {
		t.Fatalf("not every node installed the second image: %d/%d", countRun(f, md5), len(f.Devices))
	}
	checkImages(t, f, md5)
}

// Stock-turbo is never worse for any node than stock unicast: on the same
// mesh (same seed) every node completes sooner than it does when the
// distributor serves each node its own stream, with and without loss.
// This is a property of the design (one lowest-first stream with each
// part sent twice once losses show), checked on a deterministic run (at
// 2% loss the node next to the root took 1.32× its unicast time when
// catch-up streams ran beside the main one).
func TestStockTurboNeverWorsePerNode(t *testing.T) {
	for _, loss := range []float64{0, 0.02} {
		res, err := Bench(BenchConfig{Nodes: 40, Loss: loss, Seed: 2, Image: compress.FirmwareLike(512<<10, 2),
			Rows: []BenchRow{{"stock-unicast", "none"}, {"stock-turbo", "none"}}})
		if err != nil {
			t.Fatal(err)
		}
		uni, turbo := res[0], res[1]
		t.Logf("loss %v: stock unicast %.1f s, stock-turbo %.1f s, worst node %.2f of its unicast time", loss, uni.VirtualS, turbo.VirtualS, turbo.WorstNodeRatio)
		if uni.Completed != uni.Nodes || turbo.Completed != turbo.Nodes {
			t.Fatalf("loss %v: completed unicast %d/%d, turbo %d/%d", loss, uni.Completed, uni.Nodes, turbo.Completed, turbo.Nodes)
		}
		if turbo.WorstNodeRatio > 1 {
			t.Errorf("loss %v: a node took %.2f× its stock-unicast time", loss, turbo.WorstNodeRatio)
		}
	}
}

// Every one of 100 stock receivers completes with stock-turbo, with and
// without loss, with the campaign's image.
func TestStockTurboHundredNodesComplete(t *testing.T) {
	for _, loss := range []float64{0, 0.01} {
		res, err := Bench(BenchConfig{Nodes: 100, Loss: loss, Seed: 2, Image: compress.FirmwareLike(256<<10, 2),
			Rows: []BenchRow{{"stock-turbo", "none"}}})
		if err != nil {
			t.Fatal(err)
		}
		r := res[0]
		t.Logf("loss %v: %d/%d in %.1f s (floor %.1f s)", loss, r.Completed, r.Nodes, r.VirtualS, r.FloorS)
		if r.Completed != r.Nodes {
			t.Errorf("loss %v: %d/%d completed", loss, r.Completed, r.Nodes)
		}
	}
}
