package chaos

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/slot"
)

// Result is one seed's run.
type Result struct {
	Plan       Plan         `json:"plan"`
	Violations []Violation  `json:"violations,omitempty"`
	Injected   map[Kind]int `json:"injected"` // faults that fired, by kind
	Bricked    int          `json:"bricked"`
	Reachable  int          `json:"reachable"` // devices the root reached after the heal
	Completed  int          `json:"completed"` // of those, on the target image
	// StockStuck are the stock receivers among those on their previous
	// image, which the C++ receiver's own behaviour left there (stock.go);
	// StockWhy says what each was waiting for.
	StockStuck int `json:"stock_stuck,omitempty"`
	// StockUnseen are the stock receivers on the target that the
	// distributor has no record of (stock.go).
	StockUnseen int      `json:"stock_unseen,omitempty"`
	StockWhy    []string `json:"stock_why,omitempty"`
	Target      string   `json:"target"` // md5 of the image the run ended with as target
	VirtualS    float64  `json:"virtual_s"`
	// ThroughS is when, from the campaign's start, every device was
	// through (or the settle limit ran out).
	ThroughS   float64       `json:"through_s"`
	NodeHours  float64       `json:"node_hours"` // simulated nodes × virtual time
	WallS      float64       `json:"wall_s"`
	Digest     string        `json:"digest"` // the run's fingerprint: trace and outcome
	Shrunk     []Fault       `json:"-"`
	ShrinkRuns int           `json:"shrink_runs,omitempty"`
	Elapsed    time.Duration `json:"-"`
}

// Failed reports whether an invariant broke.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

// Violation is one broken invariant.
type Violation struct {
	Invariant string `json:"invariant"` // bricked | bad-image | stuck | disagree | panic | setup
	Node      uint32 `json:"node,omitempty"`
	Detail    string `json:"detail"`
}

func (v Violation) String() string {
	if v.Node != 0 {
		return fmt.Sprintf("%s: node %d: %s", v.Invariant, v.Node, v.Detail)
	}
	return fmt.Sprintf("%s: %s", v.Invariant, v.Detail)
}

// device is the fault campaign's side of one simulated device.
type device struct {
	idx int
	d   *scenario.Device
	mem *slot.Memory

	cut       bool // the power is out: every storage operation fails
	cutAfter  int  // storage operations left before an armed cut (-1: none)
	cutFor    time.Duration
	cutKind   Kind // the fault the armed cut counts as
	bricked   bool
	offGen    int // bumps at every power-off, so a stale power-on is ignored
	down      bool
	rebooting bool // a restart into a new image is under way

	// Armed faults waiting for the device to reach a step of the update.
	armVerify, armSwitch, armBoot []Fault

	corruptAfter int // chunk writes left before the armed corruption (-1: none)
	corrupted    int

	// flash is a stock receiver's flash (nil for ours); booted the md5 of
	// the image it last booted, to see a new image's first boot.
	flash  *stockota.Flash
	booted string
	bootAt time.Time // its last start
}

// run is one seed's simulation.
type run struct {
	cfg    Config
	plan   Plan
	im     images
	fleet  *scenario.Fleet
	net    *sim.Network
	root   *sim.Node
	dist   *ota.Distributor
	devs   []*device
	byID   map[uint32]*device
	res    *Result
	t0     time.Time
	target *ota.Image // the image the run ends with as target
	newer  bool
	// resume are the campaigns the distributor had when the root went
	// down; the restarted distributor takes them up again.
	resume   []ota.CampaignSpec
	ended    map[string]*ota.Campaign // campaigns that ended before a gateway restart
	rootDown bool
	rootGen  int

	partitions map[int][]*sim.Node // active partitions by fault number
	lossCount  map[nodePair]int
	flapCount  map[nodePair]int
	lossPct    map[nodePair]float64
	flapEvery  map[nodePair]time.Duration
	queueCount map[*sim.Node]int
	baseRadio  sim.Radio
	pending    []*Fault // relay crashes waiting for a transfer
}

// Run runs seed with cfg (cfg.Faults, when set, replaces the drawn
// schedule). A panic anywhere is a violation with its stack, not a crash
// of the caller.
func Run(cfg Config, seed uint64) (res Result) {
	cfg.defaults()
	wall := time.Now()
	res.Plan = NewPlan(cfg, seed)
	res.Injected = map[Kind]int{}
	defer func() {
		if p := recover(); p != nil {
			res.Violations = append(res.Violations, Violation{Invariant: "panic", Detail: fmt.Sprintf("%v\n%s", p, debug.Stack())})
		}
		res.Elapsed = time.Since(wall)
		res.WallS = res.Elapsed.Seconds()
	}()
	r := &run{cfg: cfg, plan: res.Plan, res: &res, byID: map[uint32]*device{}, ended: map[string]*ota.Campaign{},
		partitions: map[int][]*sim.Node{}, lossCount: map[nodePair]int{}, flapCount: map[nodePair]int{}, queueCount: map[*sim.Node]int{},
		lossPct: map[nodePair]float64{}, flapEvery: map[nodePair]time.Duration{}}
	if err := r.build(); err != nil {
		res.Violations = append(res.Violations, Violation{Invariant: "setup", Detail: err.Error()})
		return res
	}
	r.campaign()
	return res
}

func (r *run) build() error {
	var err error
	if r.im, err = makeImages(r.plan); err != nil {
		return err
	}
	r.target = &r.im.target
	model := sim.ESP8266()
	model.Link.Loss = r.plan.Loss
	r.baseRadio = model.Radio
	for i := range r.plan.Devices {
		r.devs = append(r.devs, &device{idx: i, mem: slot.NewMemory(), cutAfter: -1, corruptAfter: -1})
	}
	spec := scenario.Spec{
		Devices: r.plan.Devices, Seed: r.plan.Seed, Model: model, FirstID: 1000,
		Layout:   scenario.Layout{Topology: sim.TopologyTree, MaxDepth: 6},
		WorkTime: 2 * time.Millisecond,
		OTA: scenario.OTA{Receiver: scenario.OurReceiver, Role: role, Hardware: hardware,
			Radio:     ota.Radio{Overhead: model.Radio.TxOverhead + model.Link.Latency, ByteTime: model.Radio.ByteTime},
			Store:     r.openStore,
			Restart:   func(d *scenario.Device, now time.Time) { r.reboot(r.devs[d.Index]) },
			PublicKey: r.im.pub, PeerToPeer: r.plan.PeerToPeer, ServeConfirmed: r.plan.PeerToPeer,
		},
		Root:    scenario.Root{ID: 1, Plugins: r.rootPlugins},
		OnEvent: r.onEvent,
	}
	if r.plan.Receiver == StockReceiver {
		spec.OTA.Receiver, spec.OTA.Store = scenario.StockReceiver, nil
		spec.OTA.StockFlash = r.stockFlash
		spec.Plugins = r.stockBoot
	}
	if r.fleet, err = scenario.Build(spec); err != nil {
		return err
	}
	r.net, r.root = r.fleet.Net, r.fleet.Root
	for i, d := range r.fleet.Devices {
		r.devs[i].d = d
		r.byID[d.ID] = r.devs[i]
	}
	if err := r.fleet.Converge(10 * time.Minute); err != nil {
		return err
	}
	return nil
}

// rootPlugins gives the root a fresh distributor at each start; after a
// restart it takes up the campaigns it had, from their last record, as
// the gateway does.
func (r *run) rootPlugins(time.Time, uint32) []mesh.Plugin {
	m := sim.ESP8266()
	r.dist = ota.NewDistributor(ota.DistributorConfig{
		Compress: ota.Compress,
		Radio:    ota.Radio{Overhead: m.Radio.TxOverhead + m.Link.Latency, ByteTime: m.Radio.ByteTime},
	})
	if specs := r.resume; len(specs) > 0 {
		r.resume = nil
		dist := r.dist
		r.net.At(r.net.Now(), func() {
			for _, s := range specs {
				_ = r.root.Step(func(now time.Time, _ sim.Machine) {
					if _, err := dist.Start(now, s); err != nil {
						r.violate("setup", 0, "resume campaign %s after the gateway restart: %v", s.ID, err)
					}
				})
			}
		})
	}
	return []mesh.Plugin{r.dist}
}

// openStore opens a device's slot store at each start, after checking
// what would boot: the bricked and bad-image invariants.
func (r *run) openStore(d *scenario.Device, now time.Time) (ota.Store, error) {
	dv := r.devs[d.Index]
	dv.cut = false
	st, err := slot.Open(slot.WithFaults(dv.mem, r.storageHook(dv)), &slot.Options{
		Factory: slot.Info{MD5: r.im.factory, Role: role, Hardware: hardware, Version: "1.0.0"}, FlushEvery: 8,
	})
	if err != nil {
		if dv.cut {
			return nil, err // the power went again while it opened: not a boot
		}
		r.brick(dv, "the slot store does not open: %v", err)
		return nil, err
	}
	r.checkBootable(dv, st)
	if st.State().Pending != "" {
		// The first boot of a new image: the store's boot record, the
		// self test and the confirm are next.
		r.armNext(dv, &dv.armBoot)
	}
	return chaosStore{ota.SlotStore(st), dv}, nil
}

func (r *run) violate(inv string, node uint32, format string, args ...any) {
	r.res.Violations = append(r.res.Violations, Violation{Invariant: inv, Node: node, Detail: fmt.Sprintf(format, args...)})
}

// campaign starts the campaign, runs the faults, heals and checks.
func (r *run) campaign() {
	r.t0 = r.net.Now()
	spec := ota.CampaignSpec{ID: "v2", Image: r.im.target, Mode: r.plan.Mode, Method: r.plan.Method}
	r.startCampaign(spec)
	var last time.Duration
	for i := range r.plan.Faults {
		f := &r.plan.Faults[i]
		onRoot := f.Kind == Newer || f.Kind == Gateway || f.Kind == ClockJump && f.Arg == jumpRootClock
		if f.Node >= len(r.devs) && !onRoot {
			continue // a schedule for a bigger mesh: nothing to do
		}
		end := f.At + f.For
		if f.Kind == ClockJump {
			end = f.At // For is the jump's size: it is over at once
		}
		last = max(last, end)
		n := i
		r.net.At(r.t0.Add(f.At), func() { r.fire(n, f) })
	}
	if r.runTo(r.t0.Add(last)) {
		r.heal()
		if r.settle() {
			r.check()
		}
	}
	elapsed := r.net.Elapsed()
	r.res.VirtualS = elapsed.Seconds()
	r.res.NodeHours = float64(len(r.devs)+1) * elapsed.Hours()
	r.res.Target = r.target.MD5
	r.digest()
}

func (r *run) startCampaign(spec ota.CampaignSpec) {
	err := r.root.Step(func(now time.Time, _ sim.Machine) {
		_, err := r.dist.Start(now, spec)
		if err != nil {
			r.violate("setup", 0, "start campaign %s: %v", spec.ID, err)
		}
	})
	if err != nil {
		r.violate("setup", 0, "start campaign %s: %v", spec.ID, err)
	}
}

// digest fingerprints the run: every machine input and the outcome.
func (r *run) digest() {
	h := sha256.New()
	td := r.net.TraceDigest()
	h.Write(td[:])
	fmt.Fprintf(h, "%d %d %d %s", r.res.Reachable, r.res.Completed, r.res.Bricked, r.res.Target)
	for _, v := range r.res.Violations {
		fmt.Fprintln(h, v.String())
	}
	r.res.Digest = hex.EncodeToString(h.Sum(nil))[:16]
}
