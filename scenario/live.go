package scenario

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/sim"
)

// LiveConfig describes a simulated fleet that runs in real time under a
// live root (the gateway's node): the demo, and tests that need a whole
// fleet without hardware.
type LiveConfig struct {
	Nodes    int     // devices besides the root
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
	// NoPeerToPeer has every device fetch from the root only. By default
	// devices serve the image they verified to others and fetch from the
	// nearest holder (ota.ReceiverConfig.PeerToPeer): they are our
	// receivers, which check every image before they run or serve it.
	NoPeerToPeer bool
}

// Live is a simulated fleet run in real time: every device runs the
// status reporter and an OTA receiver with an in-memory A/B slot store.
type Live struct {
	*Fleet
	Realtime *sim.Realtime
	// Driver runs the root's node for its owner (the gateway).
	Driver *sim.NodeDriver
	Stores map[uint32]*ota.MemoryStore
}

// MaxLiveNodes bounds a live fleet: every device runs in real time.
const MaxLiveNodes = 2000

// NewLive builds the fleet of lc under root, the devices in a random tree
// of at most four children a node, with random clocks. log sees what goes
// wrong building a device's plugins.
func NewLive(lc LiveConfig, root Root, log *slog.Logger) (*Live, error) {
	if lc.Nodes < 1 || lc.Nodes > MaxLiveNodes {
		return nil, fmt.Errorf("simulated mesh: %d nodes: want 1..%d", lc.Nodes, MaxLiveNodes)
	}
	if lc.Model == "" {
		lc.Model = "esp32"
	}
	model, err := sim.ParseModel(lc.Model)
	if err != nil {
		return nil, err
	}
	if lc.Role == "" {
		lc.Role = "sensor"
	}
	if lc.Hardware == "" {
		lc.Hardware = "ESP32"
	}
	if lc.Firmware == "" {
		lc.Firmware = "1.0.0"
	}
	if lc.ReportInterval <= 0 {
		lc.ReportInterval = time.Second
	}
	firstID := root.ID + 1000
	if firstID == 0 {
		firstID = 1
	}
	f, err := Build(Spec{
		Devices: lc.Nodes, Seed: lc.Seed, Model: model, Epoch: lc.Epoch,
		Layout:       Layout{Topology: sim.TopologyRandom, FanOut: 4},
		Root:         root,
		FirstID:      firstID,
		RandomClocks: true,
		OTA:          OTA{Receiver: OurReceiver, Role: lc.Role, Hardware: lc.Hardware, PeerToPeer: !lc.NoPeerToPeer},
		Reporter:     &Reporter{Interval: lc.ReportInterval, Firmware: lc.Firmware},
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}
	l := &Live{Fleet: f, Stores: map[uint32]*ota.MemoryStore{}}
	for _, d := range f.Devices {
		l.Stores[d.ID] = d.Store
	}
	l.Realtime = sim.NewRealtime(f.Net, lc.Speed)
	l.Driver = l.Realtime.NodeDriver(root.ID, 4096)
	return l, nil
}
