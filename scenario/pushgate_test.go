package scenario

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/sim"
)

// wireWatch sees every message every node sends: per package type, how
// many and the largest.
type wireWatch struct {
	count, largest map[int]int
}

type watchedNode struct {
	*mesh.Node
	w *wireWatch
}

func (n watchedNode) Ready() mesh.Ready {
	rd := n.Node.Ready()
	for _, m := range rd.Messages {
		var h struct {
			Type int `json:"type"`
		}
		_ = json.Unmarshal(m.Data, &h)
		n.w.count[h.Type]++
		n.w.largest[h.Type] = max(n.w.largest[h.Type], len(m.Data))
	}
	return rd
}

// pushFleet builds a chain (every relay has one child, which once made
// the broadcast chunk 8 KiB, a 10 KB package) of devices, stock receivers
// where stock(i) says so, meshfleet receivers elsewhere.
func pushFleet(t *testing.T, devices int, stock func(i int) bool) (*Fleet, *ota.Distributor, *wireWatch) {
	t.Helper()
	w := &wireWatch{count: map[int]int{}, largest: map[int]int{}}
	dist := ota.NewDistributor(ota.DistributorConfig{Compress: ota.Compress})
	f, err := Build(Spec{
		Devices: devices, Seed: 5, Model: sim.ESP8266(),
		Layout:  Layout{Topology: sim.TopologyChain},
		Root:    Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{dist} }},
		FirstID: 100,
		OTA:     OTA{Receiver: OurReceiver, Role: "sensor", Hardware: "ESP8266"},
		Wrap:    func(_ *sim.Node, mn *mesh.Node) sim.Machine { return watchedNode{mn, w} },
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range f.Devices {
		if stock(i) {
			// Boot it again with the stock receiver instead.
			d.Store, d.Receiver = nil, nil
			d.Stock = &stockota.Receiver{Role: "sensor", Hardware: "ESP8266"}
			f.Net.Restart(d.Node)
		}
	}
	if err := f.Converge(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
	return f, dist, w
}

func runBroadcast(t *testing.T, f *Fleet, dist *ota.Distributor) []byte {
	t.Helper()
	img := compress.FirmwareLike(100<<10, 2)
	spec := ota.CampaignSpec{ID: "b", Image: ota.Image{Role: "sensor", Hardware: "ESP8266", Data: img},
		Mode: ota.ModeBroadcast, Method: "deflate", Nodes: f.DeviceIDs()}
	var startErr error
	if err := f.Root.Step(func(now time.Time, _ sim.Machine) { _, startErr = dist.Start(now, spec) }); err != nil || startErr != nil {
		t.Fatal(err, startErr)
	}
	md5 := md5hex(img)
	if !f.Net.RunUntil(func() bool {
		return !slices.ContainsFunc(f.Devices, func(d *Device) bool { return !d.Runs(md5) })
	}, time.Hour) {
		t.Fatal("not every device runs the image")
	}
	return img
}

// The limit every package keeps (ota.DistributorConfig.MaxPackageSize):
// what an ESP8266 relay built with ArduinoJson v6 still parses.
const espMaxPackage = 8192

// A broadcast campaign into a mesh of stock receivers only pushes nothing
// of its own: no receiver accepted the offer, so no 722 chunk crosses the
// mesh, and the stock nodes get the stock transfer alone.
func TestBroadcastIntoStockMeshPushesNothing(t *testing.T) {
	f, dist, w := pushFleet(t, 3, func(int) bool { return true })
	runBroadcast(t, f, dist)
	if n := w.count[ota.TypeChunk]; n != 0 || dist.Stats().ChunksPushed != 0 {
		t.Errorf("%d chunk packages (722) on the links, %d pushed, want none", n, dist.Stats().ChunksPushed)
	}
	for typ, n := range w.largest {
		if n > espMaxPackage {
			t.Errorf("type %d: a %d-byte package, above %d", typ, n, espMaxPackage)
		}
	}
}

// With meshfleet receivers among stock ones the push goes on, in packages
// an ESP8266 relay can forward.
func TestBroadcastMixedMeshPushesWithinLimit(t *testing.T) {
	f, dist, w := pushFleet(t, 4, func(i int) bool { return i%2 == 1 })
	runBroadcast(t, f, dist)
	if dist.Stats().ChunksPushed == 0 {
		t.Error("no chunk pushed, with meshfleet receivers in the mesh")
	}
	if w.count[ota.TypeChunk] == 0 {
		t.Error("no chunk package on the links")
	}
	for typ, n := range w.largest {
		if n > espMaxPackage {
			t.Errorf("type %d: a %d-byte package, above %d", typ, n, espMaxPackage)
		}
	}
}
