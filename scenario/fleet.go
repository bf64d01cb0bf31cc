package scenario

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/status"
)

// Spec describes a simulated fleet: a root and its devices, how they
// connect, and what each of them runs. The same Spec and Seed build the same
// fleet, draw for draw.
type Spec struct {
	Devices int       // nodes besides the root
	Seed    uint64    // same seed, same fleet
	Model   sim.Model // link model; zero: sim.ESP8266()
	// Epoch is virtual time zero (zero: sim's default).
	Epoch   time.Time
	OnEvent func(n *sim.Node, at time.Time, ev mesh.Event)
	Layout  Layout
	// Timing is every node's mesh timers (zero: ours; mesh.StockTiming()
	// for a fleet of C++ nodes).
	Timing mesh.Timing
	// WorkTime is how long each slow store job takes in virtual time
	// (sim.Config.WorkTime; zero: done at once). A fault campaign sets it so
	// that a crash can fall between a job's request and its completion.
	WorkTime time.Duration

	Root Root
	// FirstID is device 0's node id; device i has FirstID+i (an id that
	// wraps to 0 becomes i+1). Zero draws distinct random ids from the seed.
	FirstID uint32
	// RandomClocks starts the devices' micros() at random values, as
	// unsynchronised ESP clocks do.
	RandomClocks bool

	// OTA is the receiver every device runs; Reporter, if set, the status
	// reporter every device runs.
	OTA      OTA
	Reporter *Reporter
	// Plugins, if set, gives every device further plugins at each start,
	// after its receiver and reporter.
	Plugins func(d *Device, now time.Time) []mesh.Plugin

	// Prepare, if set, runs for every node in order (0 is the root) once its
	// id is known and before its clock is drawn: a scenario that draws its
	// own per-node values from the seed does so here, so that the draws
	// keep one order.
	Prepare func(i int, id uint32, rng *rand.Rand)
	// Wrap, if set, wraps every node's mesh.Node at each start: instruments
	// that watch what a node receives and sends.
	Wrap func(nd *sim.Node, mn *mesh.Node) sim.Machine

	// Logger sees what goes wrong building a device's plugins (nil: none).
	Logger *slog.Logger
}

// Layout is how the nodes connect, the root first.
type Layout struct {
	// Topology: sim.TopologyRandom (default), chain, star or tree.
	Topology sim.Topology
	// FanOut is the children limit of random and tree (0: the model's
	// MaxConn, or 4); a tree with a MaxDepth and no FanOut takes the
	// smallest fan-out that fits.
	FanOut int
	// MaxDepth limits a tree's depth in hops from the root.
	MaxDepth int
}

// Root is the fleet's root node: the gateway, distributor or collector.
type Root struct {
	ID            uint32 // 0: drawn at random like the devices' ids
	RandomClock   bool   // micros() starts at a random value
	TimeAuthority bool
	// Plugins gives the root its plugins at each start.
	Plugins func(now time.Time, id uint32) []mesh.Plugin
}

// ReceiverKind says which OTA receiver the devices run.
type ReceiverKind int

const (
	NoReceiver    ReceiverKind = iota
	OurReceiver                // ota.Receiver on an in-memory A/B slot store
	StockReceiver              // the model of the stock C++ receiver
)

// OTA is the devices' OTA receiver.
type OTA struct {
	Receiver       ReceiverKind
	Role, Hardware string
	// Radio is our receivers' estimate of the radio (ota.ReceiverConfig).
	Radio ota.Radio
	// Decode decompresses transfers into the slot store (nil: ota.Decode).
	Decode func(method string, r io.Reader) (io.Reader, error)
	// Factory is the md5 of the image our receivers' slot stores start
	// with ("" unknown, like a serial-flashed node).
	Factory string
	// SelfTest, if set, is our receivers' self test of a switched image
	// (nil: every image passes); Restart, if set, their restart after a
	// switch or a rollback (nil: the new slot boots in place). A scenario
	// that models what an image does on a device sets them (firmware.go).
	SelfTest func(d *Device, md5 string) bool
	Restart  func(d *Device, now time.Time)
	// ServeConfirmed: our receivers serve their children's repair asks
	// for the image they confirmed from the running slot.
	ServeConfirmed bool
	// PeerToPeer: our receivers serve the image they verified to any
	// node, offer it to neighbours that connect, and fetch from the
	// nearest holder first (ota.ReceiverConfig.PeerToPeer).
	PeerToPeer bool
	// Store, if set, opens our receivers' slot store at each start of a
	// device instead of the in-memory ota.MemoryStore kept across starts:
	// a fault campaign gives its devices slot.Store on a slot.Memory that
	// loses what was not synced when the power goes.
	Store func(d *Device, now time.Time) (ota.Store, error)
	// PublicKey is our receivers' key for image signatures (nil: none).
	PublicKey ed25519.PublicKey
	// StockFlash, if set, gives each stock receiver its flash for the
	// device's life (stockota.Flash): a fault campaign hooks its
	// operations. Restart is then also the stock receiver's restart 2 s
	// after a good image.
	StockFlash func(d *Device) *stockota.Flash
}

// Reporter is the devices' status reporter.
type Reporter struct {
	Interval time.Duration // telemetry interval (0: the reporter's default)
	// Firmware is the version devices report before any update.
	Firmware string
	// Providers, if set, replaces the simulated device's readings
	// (DeviceProviders).
	Providers func(d *Device, now time.Time) status.Providers
}

// Device is one simulated device of a fleet.
type Device struct {
	Index int
	ID    uint32
	Node  *sim.Node
	// Store is our receiver's slot store (OurReceiver); it survives
	// restarts, as flash does.
	Store *ota.MemoryStore
	// Stock is the stock receiver (StockReceiver).
	Stock *stockota.Receiver
	// Opened is the store OTA.Store opened at the device's current start.
	Opened ota.Store
	// Receiver and Reporter are those of the device's current start.
	Receiver *ota.Receiver
	Reporter *status.Reporter
}

// Runs reports whether the device runs the image with this md5: booted
// from the stock receiver's flash (installed, without one), or active
// and confirmed in our slot store.
func (d *Device) Runs(md5 string) bool {
	switch {
	case d.Stock != nil && d.Stock.Flash != nil:
		return d.Stock.Flash.RunningMD5() == md5
	case d.Stock != nil:
		return d.Stock.Installed == md5
	case d.Opened != nil:
		active, confirmed := d.Opened.Active()
		return active == md5 && confirmed
	case d.Store != nil:
		active, confirmed := d.Store.Active()
		return active == md5 && confirmed
	}
	return false
}

// Fleet is a built simulated fleet.
type Fleet struct {
	Net     *sim.Network
	Root    *sim.Node
	Devices []*Device
}

// Nodes is every node, the root first.
func (f *Fleet) Nodes() []*sim.Node {
	out := []*sim.Node{f.Root}
	for _, d := range f.Devices {
		out = append(out, d.Node)
	}
	return out
}

// DeviceIDs is the devices' node ids in order.
func (f *Fleet) DeviceIDs() []uint32 {
	out := make([]uint32, len(f.Devices))
	for i, d := range f.Devices {
		out[i] = d.ID
	}
	return out
}

// Converge runs the fleet until every node knows every other, for at most
// limit of virtual time.
func (f *Fleet) Converge(limit time.Duration) error {
	if !f.Net.RunUntil(f.Net.Converged, limit) {
		return fmt.Errorf("%w within %v (%d nodes)", sim.ErrNotConverged, limit, len(f.Devices)+1)
	}
	return nil
}

// MaxDevices bounds a fleet, so that an absurd request is an error rather
// than an exhausted machine.
const MaxDevices = sim.MaxScenarioNodes

// Build builds the fleet of spec and connects it; it does not run it.
func Build(spec Spec) (*Fleet, error) {
	if spec.Devices < 0 || spec.Devices > MaxDevices {
		return nil, fmt.Errorf("scenario: %d devices: want 0..%d", spec.Devices, MaxDevices)
	}
	if spec.Model.Name == "" {
		spec.Model = sim.ESP8266()
	}
	if spec.Layout.Topology == "" {
		spec.Layout.Topology = sim.TopologyRandom
	}
	if _, err := sim.ParseTopology(string(spec.Layout.Topology)); err != nil {
		return nil, err
	}
	if spec.OTA.Decode == nil {
		spec.OTA.Decode = ota.Decode
	}
	if spec.Logger == nil {
		spec.Logger = slog.New(slog.DiscardHandler)
	}
	b := &builder{spec: spec, used: map[uint32]bool{}}
	b.net = sim.New(sim.Config{Seed: spec.Seed, Model: spec.Model, Epoch: spec.Epoch, OnEvent: spec.OnEvent, WorkTime: spec.WorkTime})
	f := &Fleet{Net: b.net}
	root, err := b.addRoot()
	if err != nil {
		return nil, err
	}
	f.Root = root
	for i := range spec.Devices {
		d, err := b.addDevice(i)
		if err != nil {
			return nil, err
		}
		f.Devices = append(f.Devices, d)
	}
	if err := b.connect(f.Nodes()); err != nil {
		return nil, err
	}
	return f, nil
}

type builder struct {
	spec Spec
	net  *sim.Network
	used map[uint32]bool
}

// id is the node id given, or else a distinct random one.
func (b *builder) id(given uint32) uint32 {
	id := given
	for id == 0 || (given == 0 && b.used[id]) {
		id = b.net.Rand().Uint32()
	}
	b.used[id] = true
	return id
}

func (b *builder) clock(random bool) uint32 {
	if !random {
		return 0
	}
	return b.net.Rand().Uint32()
}

func (b *builder) addRoot() (*sim.Node, error) {
	s := b.spec
	id := b.id(s.Root.ID)
	if s.Prepare != nil {
		s.Prepare(0, id, b.net.Rand())
	}
	cfg := mesh.Config{ID: id, Root: true, ContainsRoot: true, TimeAuthority: s.Root.TimeAuthority,
		ClockStart: b.clock(s.Root.RandomClock), Timing: s.Timing}
	plugins := func(nd *sim.Node, now time.Time) []mesh.Plugin {
		if s.Root.Plugins == nil {
			return nil
		}
		return s.Root.Plugins(now, nd.ID())
	}
	return b.net.AddNode(b.nodeSpec(cfg, plugins))
}

func (b *builder) addDevice(i int) (*Device, error) {
	s := b.spec
	given := uint32(0)
	if s.FirstID != 0 {
		if given = s.FirstID + uint32(i); given == 0 {
			given = uint32(i) + 1
		}
	}
	d := &Device{Index: i, ID: b.id(given)}
	if s.Prepare != nil {
		s.Prepare(i+1, d.ID, b.net.Rand())
	}
	switch s.OTA.Receiver {
	case OurReceiver:
		if s.OTA.Store != nil {
			break // opened at each start
		}
		d.Store = ota.NewMemoryStore(s.OTA.Factory)
		d.Store.Decode = s.OTA.Decode
	case StockReceiver:
		// One object for the device's life: Attach clears what lives in
		// RAM at each start; the flash, if any, is kept.
		d.Stock = &stockota.Receiver{Role: s.OTA.Role, Hardware: s.OTA.Hardware}
		if s.OTA.StockFlash != nil {
			d.Stock.Flash = s.OTA.StockFlash(d)
			if s.OTA.Restart != nil {
				d.Stock.Reboot = func(now time.Time) { s.OTA.Restart(d, now) }
			}
		}
	}
	cfg := mesh.Config{ID: d.ID, ClockStart: b.clock(s.RandomClocks), Timing: s.Timing}
	nd, err := b.net.AddNode(b.nodeSpec(cfg, func(nd *sim.Node, now time.Time) []mesh.Plugin {
		d.Node = nd
		return b.devicePlugins(d, now)
	}))
	if err != nil {
		return nil, err
	}
	d.Node = nd
	return d, nil
}

// nodeSpec builds a node from cfg with the plugins of each start, wrapped
// if the spec says so.
func (b *builder) nodeSpec(cfg mesh.Config, plugins func(nd *sim.Node, now time.Time) []mesh.Plugin) sim.NodeSpec {
	if b.spec.Wrap == nil {
		return sim.NodeSpec{Config: cfg, Plugins: func(nd *sim.Node) []mesh.Plugin { return plugins(nd, nd.Network().Now()) }}
	}
	return sim.NodeSpec{Config: cfg, Machine: func(now time.Time, nd *sim.Node) sim.Machine {
		c := cfg
		if nd.Restarts() > 0 {
			c.ClockStart = 0 // micros() starts again at power-on
		}
		mn := mesh.New(c, now)
		for _, p := range plugins(nd, now) {
			mn.Use(p)
		}
		return b.spec.Wrap(nd, mn)
	}}
}

// devicePlugins builds a device's plugins for one start.
func (b *builder) devicePlugins(d *Device, now time.Time) []mesh.Plugin {
	s := b.spec
	var out []mesh.Plugin
	var store ota.Store
	if d.Store != nil {
		store = d.Store
	}
	if s.OTA.Receiver == OurReceiver && s.OTA.Store != nil {
		d.Opened = nil
		st, err := s.OTA.Store(d, now)
		if err != nil {
			s.Logger.Error("simulated slot store", "node", d.ID, "err", err)
		} else {
			d.Opened, store = st, st
		}
	}
	switch {
	case d.Stock != nil:
		out = append(out, d.Stock)
	case store != nil:
		selfTest := func(string) bool { return true }
		if s.OTA.SelfTest != nil {
			selfTest = func(md5 string) bool { return s.OTA.SelfTest(d, md5) }
		}
		var restart func(time.Time)
		if s.OTA.Restart != nil {
			restart = func(now time.Time) { s.OTA.Restart(d, now) }
		}
		rc, err := ota.NewReceiver(ota.ReceiverConfig{Role: s.OTA.Role, Hardware: s.OTA.Hardware, Store: store,
			Seed: uint64(d.ID), Radio: s.OTA.Radio, PublicKey: s.OTA.PublicKey, SelfTest: selfTest, Restart: restart, ServeConfirmed: s.OTA.ServeConfirmed,
			PeerToPeer: s.OTA.PeerToPeer}, now)
		if err != nil {
			// Only a missing store fails, and every device has one; still, a
			// device without a receiver beats a crashed simulation.
			s.Logger.Error("simulated receiver", "node", d.ID, "err", err)
		} else {
			d.Receiver = rc
			out = append(out, rc)
		}
	}
	if st := s.Reporter; st != nil {
		providers := DeviceProviders(d, now, s.OTA, st.Firmware)
		if st.Providers != nil {
			providers = st.Providers(d, now)
		}
		d.Reporter = status.NewReporter(status.ReporterConfig{Interval: st.Interval, Providers: providers}, now)
		out = append(out, d.Reporter)
	}
	if s.Plugins != nil {
		out = append(out, s.Plugins(d, now)...)
	}
	return out
}

// DeviceProviders are a simulated device's readings booted at now: the
// firmware in its slot store (factory before any update), its role and
// hardware, a free heap that ripples around 120–144 KB and a signal of
// −50 to −79 dBm, both fixed by its id.
func DeviceProviders(d *Device, now time.Time, o OTA, factory string) status.Providers {
	id := d.ID
	mem := status.MemoryModel{Boot: now, Start: 120_000 + (id%7)*4_000, Floor: 60_000, Ripple: 2_000, RipplePeriod: 3 * time.Minute}
	return status.Providers{
		Firmware:   slotFirmware(d.Store, factory),
		Identity:   func() (string, string) { return o.Role, o.Hardware },
		FreeMemory: mem.Free,
		RSSI:       func(time.Time) int8 { return int8(-50 - int(id%30)) },
	}
}

// slotFirmware reports the version the running image was installed as,
// the factory version before any update. An image installed without a
// version (a stock transfer) has none: an empty version is reported rather
// than a wrong one.
func slotFirmware(store *ota.MemoryStore, factory string) func() (string, string) {
	return func() (string, string) {
		if store == nil {
			return factory, ""
		}
		md5, _ := store.Active()
		if md5 == "" {
			return factory, ""
		}
		return store.ActiveVersion(), md5
	}
}

func (b *builder) connect(nodes []*sim.Node) error {
	l := b.spec.Layout
	if l.Topology == sim.TopologyTree && l.MaxDepth > 0 {
		return b.net.Tree(nodes, l.FanOut, l.MaxDepth)
	}
	return b.net.Build(l.Topology, nodes, l.FanOut)
}
