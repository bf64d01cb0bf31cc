package gateway

import (
	"fmt"
	"io"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/status"
)

// SimMeshConfig describes a simulated mesh for the gateway to run on: the
// demo, and tests that need a whole fleet without hardware.
type SimMeshConfig struct {
	Nodes    int     // devices besides the gateway's node
	Seed     uint64  // same seed, same mesh
	Model    string  // link model: esp32 (default), esp8266, ideal, ...
	Speed    float64 // virtual seconds per wall second (1: real time)
	Role     string  // the devices' OTA role (default "sensor")
	Hardware string  // the devices' hardware (default "ESP32")
	Firmware string  // the version they run at start (default "1.0.0")
	// ReportInterval is the devices' telemetry interval (default 1 s).
	ReportInterval time.Duration
	// Epoch is virtual time zero; the demo passes the wall clock so
	// timestamps read naturally.
	Epoch time.Time
}

// SimMesh is a simulated fleet: every device runs the status reporter and
// an OTA receiver with an in-memory A/B slot store.
type SimMesh struct {
	Realtime *sim.Realtime
	Driver   *sim.NodeDriver
	Net      *sim.Network
	Stores   map[uint32]*ota.MemoryStore
}

// decodeTransfer is the receivers' decompressor for the slot store.
func decodeTransfer(method string, r io.Reader) (io.Reader, error) {
	m, err := compress.ParseMethod(method)
	if err != nil {
		return nil, err
	}
	return compress.NewDecompressor(m, r)
}

// simFirmware is a simulated device's firmware provider: the version its
// running image was installed as, the factory version before any update.
// An image installed without a version (a stock transfer) has none: an
// empty version is reported rather than a wrong one.
func simFirmware(store *ota.MemoryStore, factory string) func() (string, string) {
	return func() (string, string) {
		md5, _ := store.Active()
		if md5 == "" {
			return factory, ""
		}
		return store.ActiveVersion(), md5
	}
}

// NewSimMesh builds the mesh with the gateway's node as root (id
// cfg.Node.ID) and the devices in a random tree below it.
func (g *Gateway) NewSimMesh(sc SimMeshConfig) (*SimMesh, error) {
	if sc.Nodes < 1 || sc.Nodes > 2000 {
		return nil, fmt.Errorf("simulated mesh: %d nodes: want 1..2000", sc.Nodes)
	}
	if sc.Model == "" {
		sc.Model = "esp32"
	}
	model, err := sim.ParseModel(sc.Model)
	if err != nil {
		return nil, err
	}
	if sc.Role == "" {
		sc.Role = "sensor"
	}
	if sc.Hardware == "" {
		sc.Hardware = "ESP32"
	}
	if sc.Firmware == "" {
		sc.Firmware = "1.0.0"
	}
	if sc.ReportInterval <= 0 {
		sc.ReportInterval = time.Second
	}
	net := sim.New(sim.Config{Seed: sc.Seed, Model: model, Epoch: sc.Epoch})
	sm := &SimMesh{Net: net, Stores: map[uint32]*ota.MemoryStore{}}
	gw, err := net.AddNode(sim.NodeSpec{
		Config:  mesh.Config{ID: g.cfg.Node.ID, Root: true, ContainsRoot: true, TimeAuthority: g.cfg.Node.TimeAuthority},
		Plugins: func(nd *sim.Node) []mesh.Plugin { return g.Plugins(nd.Network().Now()) },
	})
	if err != nil {
		return nil, err
	}
	all := []*sim.Node{gw}
	for i := range sc.Nodes {
		id := g.cfg.Node.ID + 1000 + uint32(i)
		if id == 0 {
			id = uint32(i) + 1
		}
		store := ota.NewMemoryStore("")
		store.Decode = decodeTransfer
		sm.Stores[id] = store
		nd, err := net.AddNode(sim.NodeSpec{
			Config: mesh.Config{ID: id, ClockStart: net.Rand().Uint32()},
			Plugins: func(nd *sim.Node) []mesh.Plugin {
				now := nd.Network().Now()
				mem := status.MemoryModel{Boot: now, Start: 120_000 + (id%7)*4_000, Floor: 60_000, Ripple: 2_000, RipplePeriod: 3 * time.Minute}
				rc, rcErr := ota.NewReceiver(ota.ReceiverConfig{Role: sc.Role, Hardware: sc.Hardware, Store: store, Seed: uint64(id),
					SelfTest: func(string) bool { return true }}, now)
				rep := status.NewReporter(status.ReporterConfig{Interval: sc.ReportInterval, Providers: status.Providers{
					Firmware:   simFirmware(store, sc.Firmware),
					Identity:   func() (string, string) { return sc.Role, sc.Hardware },
					FreeMemory: mem.Free,
					RSSI:       func(time.Time) int8 { return int8(-50 - int(id%30)) },
				}}, now)
				if rcErr != nil {
					// Only a missing store fails, and every node has one; still,
					// a node without a receiver beats a crashed simulation.
					g.log.Error("simulated receiver", "node", id, "err", rcErr)
					return []mesh.Plugin{rep}
				}
				return []mesh.Plugin{rc, rep}
			},
		})
		if err != nil {
			return nil, err
		}
		all = append(all, nd)
	}
	if err := net.RandomTree(all, 4); err != nil {
		return nil, err
	}
	sm.Realtime = sim.NewRealtime(net, sc.Speed)
	sm.Driver = sm.Realtime.NodeDriver(g.cfg.Node.ID, 4096)
	return sm, nil
}
