package scenario

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// depthOf is the depth of the tree below t, in hops.
func depthOf(t *protocol.NodeTree) int {
	d := 0
	for i := range t.Subs {
		d = max(d, 1+depthOf(&t.Subs[i]))
	}
	return d
}

// A fleet of our receivers with reporters, in a tree of limited depth:
// every device has its slot store, receiver and reporter, numbered from
// FirstID, and the root runs the plugins it was given.
func TestBuildOurReceiversWithReporters(t *testing.T) {
	rootStarts := 0
	f, err := Build(Spec{
		Devices: 20, Seed: 3, Model: sim.Ideal(),
		Layout:   Layout{Topology: sim.TopologyTree, MaxDepth: 3},
		Root:     Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { rootStarts++; return nil }},
		FirstID:  1000,
		OTA:      OTA{Receiver: OurReceiver, Role: "sensor", Hardware: "ESP32"},
		Reporter: &Reporter{Interval: time.Second, Firmware: "1.0.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Converge(time.Minute); err != nil {
		t.Fatal(err)
	}
	if rootStarts != 1 || f.Root.ID() != 1 || len(f.Devices) != 20 || len(f.Nodes()) != 21 || f.Nodes()[0] != f.Root {
		t.Fatalf("root started %d times, id %d; %d devices", rootStarts, f.Root.ID(), len(f.Devices))
	}
	for i, d := range f.Devices {
		if d.ID != uint32(1000+i) || d.Node.ID() != d.ID || d.Index != i {
			t.Errorf("device %d: id %d, node %d", i, d.ID, d.Node.ID())
		}
		if d.Store == nil || d.Receiver == nil || d.Reporter == nil || d.Stock != nil {
			t.Errorf("device %d runs store %v, receiver %v, reporter %v, stock %v", i, d.Store != nil, d.Receiver != nil, d.Reporter != nil, d.Stock != nil)
		}
	}
	if ids := f.DeviceIDs(); len(ids) != 20 || ids[0] != 1000 || ids[19] != 1019 {
		t.Errorf("device ids %v", ids)
	}
	tree := f.Root.Mesh().Tree()
	if d := depthOf(&tree); d > 3 || d < 2 {
		t.Errorf("tree depth %d, want at most 3", d)
	}
}

// A device that restarts gets a fresh receiver and reporter on the slot
// store it had: flash survives a reboot, memory does not.
func TestBuildRestartKeepsTheStore(t *testing.T) {
	f, err := Build(Spec{
		Devices: 2, Seed: 1, Model: sim.Ideal(), FirstID: 10, Root: Root{ID: 1},
		OTA:      OTA{Receiver: OurReceiver, Role: "sensor", Hardware: "ESP32"},
		Reporter: &Reporter{},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := f.Devices[1]
	store, rc, rep := d.Store, d.Receiver, d.Reporter
	f.Net.Restart(d.Node)
	if d.Store != store || d.Receiver == rc || d.Reporter == rep || d.Receiver == nil || d.Reporter == nil {
		t.Errorf("after a restart: same store %v, new receiver %v, new reporter %v", d.Store == store, d.Receiver != rc, d.Reporter != rep)
	}
}

// Stock receivers (the model of the C++ one) under our distributor fetch
// the image with the stock packages and run it.
func TestBuildStockReceivers(t *testing.T) {
	dist := ota.NewDistributor(ota.DistributorConfig{Compress: ota.Compress, StockOnly: true, Unpaced: true})
	f, err := Build(Spec{
		Devices: 3, Seed: 2, Model: sim.ESP32(), Timing: mesh.StockTiming(),
		Root:    Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{dist} }},
		FirstID: 100,
		OTA:     OTA{Receiver: StockReceiver, Role: "sensor", Hardware: "ESP32"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Converge(time.Minute); err != nil {
		t.Fatal(err)
	}
	img := compress.FirmwareLike(8<<10, 1)
	spec := ota.CampaignSpec{ID: "c", Image: ota.Image{Role: "sensor", Hardware: "ESP32", Data: img}, Mode: ota.ModeStock, Method: "none"}
	var startErr error
	if err := f.Root.Step(func(now time.Time, _ sim.Machine) { _, startErr = dist.Start(now, spec) }); err != nil || startErr != nil {
		t.Fatal(err, startErr)
	}
	md5 := md5hex(img)
	all := func() bool {
		return !slices.ContainsFunc(f.Devices, func(d *Device) bool { return !d.Runs(md5) })
	}
	if !f.Net.RunUntil(all, 10*time.Minute) {
		t.Fatal("stock receivers did not all install the image")
	}
	for _, d := range f.Devices {
		if d.Stock == nil || d.Store != nil || d.Receiver != nil || string(d.Stock.Image) != string(img) {
			t.Errorf("device %d: stock %v, store %v", d.ID, d.Stock != nil, d.Store != nil)
		}
	}
}

// The same spec and seed build the same fleet: ids, clocks and layout
// drawn from the seed; another seed, another fleet.
func TestBuildSameSeedSameFleet(t *testing.T) {
	build := func(seed uint64) (ids []uint32, clocks []uint32, layout string) {
		f, err := Build(Spec{Devices: 12, Seed: seed, Model: sim.Ideal(), Root: Root{RandomClock: true}, RandomClocks: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Converge(time.Minute); err != nil {
			t.Fatal(err)
		}
		for _, nd := range f.Nodes() {
			ids = append(ids, nd.ID())
			clocks = append(clocks, nd.Spec().Config.ClockStart)
		}
		tree := f.Root.Mesh().Tree()
		return ids, clocks, tree.String()
	}
	ids1, clocks1, layout1 := build(5)
	ids2, clocks2, layout2 := build(5)
	if !slices.Equal(ids1, ids2) || !slices.Equal(clocks1, clocks2) || layout1 != layout2 {
		t.Fatalf("same seed, different fleets:\n%v %v %s\n%v %v %s", ids1, clocks1, layout1, ids2, clocks2, layout2)
	}
	seen := map[uint32]bool{}
	for _, id := range ids1 {
		if id == 0 || seen[id] {
			t.Fatalf("ids %v: zero or repeated", ids1)
		}
		seen[id] = true
	}
	if ids3, _, _ := build(6); slices.Equal(ids1, ids3) {
		t.Errorf("seeds 5 and 6 drew the same ids %v", ids1)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Devices: -1}, "-1 devices"},
		{Spec{Devices: MaxDevices + 1}, "devices: want 0.."},
		{Spec{Devices: 3, Layout: Layout{Topology: "ring"}}, "ring"},
		{Spec{Devices: 30, Layout: Layout{Topology: sim.TopologyTree, FanOut: 2, MaxDepth: 2}}, "limit 2"},
	} {
		_, err := Build(c.spec)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one that says %q", c.spec.Layout, err, c.want)
		}
	}
}
