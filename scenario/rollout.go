package scenario

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/rollout"
	"github.com/meshfleet/meshfleet/sim"
)

// RolloutScenarios are the scenarios of the rollout benchmark.
var RolloutScenarios = []string{"good", "bad", "bad-boot", "leak", "late"}

// RolloutBenchConfig configures BenchRollout: the rollout engine driving
// our receivers on a simulated mesh, in virtual time.
type RolloutBenchConfig struct {
	Nodes     int // devices (the gateway is the root, one more node)
	Seed      uint64
	Model     sim.Model // zero: sim.ESP8266() with Loss
	Loss      float64   // per-message loss on every link
	MaxDepth  int       // tree depth limit, 6
	ImageSize int       // bytes of each image, 64 KiB
	Soak      time.Duration
	// Scenarios to run; nil: RolloutScenarios.
	Scenarios []string
	// Limit caps each run's virtual time (3 h).
	Limit  time.Duration
	Report func(RolloutBenchResult)
}

// RolloutBenchResult is one scenario's figures.
type RolloutBenchResult struct {
	Scenario string `json:"scenario"`
	Nodes    int    `json:"nodes"`
	State    string `json:"state"` // the rollout's final state
	Reason   string `json:"reason"`
	// RolloutS is the virtual time until the rollout reached it.
	RolloutS float64 `json:"rollout_s"`
	// Started: nodes the rollout asked to update; RanNew: nodes that
	// booted the new image; Confirmed: running it confirmed at the end.
	Started   int `json:"started"`
	RanNew    int `json:"ran_new"`
	Confirmed int `json:"confirmed"`
	// RolledBack: nodes that ran the new image and run the old one again.
	RolledBack  int `json:"rolled_back"`
	Unreachable int `json:"unreachable"` // devices the root cannot reach at the end
	// NestedReboots counts reboots that began while an ancestor or a
	// descendant (in the tree at the start) was rebooting.
	NestedReboots int `json:"nested_reboots"`
	// CampaignS and CampaignNested are the same figures for one campaign
	// to every node at once, on the same mesh (good only).
	CampaignS      float64 `json:"campaign_s,omitempty"`
	CampaignNested int     `json:"campaign_nested_reboots,omitempty"`
	CampaignDone   int     `json:"campaign_confirmed,omitempty"`
	// CaughtAfterS: leak, the time from the first canary confirm to the
	// gate failure; CaughtWave the wave it was in.
	CaughtAfterS float64 `json:"caught_after_s,omitempty"`
	CaughtWave   int     `json:"caught_wave,omitempty"`
	Canary       int     `json:"canary"`
	// Late: devices away at the start that came back during the run.
	Late        int     `json:"late,omitempty"`
	LateUpdated int     `json:"late_updated,omitempty"`
	WallS       float64 `json:"wall_s"`
}

// BenchRollout runs each scenario on its own copy of the same mesh.
func BenchRollout(cfg RolloutBenchConfig) ([]RolloutBenchResult, error) {
	if cfg.Nodes < 2 {
		return nil, errors.New("scenario: the rollout bench needs at least 2 nodes")
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 6
	}
	if cfg.Model.Name == "" {
		cfg.Model = sim.ESP8266()
		cfg.Model.Link.Loss = cfg.Loss
	}
	if cfg.ImageSize <= 0 {
		cfg.ImageSize = 64 << 10
	}
	if cfg.Soak <= 0 {
		cfg.Soak = 2 * time.Minute
	}
	if cfg.Limit <= 0 {
		cfg.Limit = 3 * time.Hour
	}
	scen := cfg.Scenarios
	if scen == nil {
		scen = RolloutScenarios
	}
	var out []RolloutBenchResult
	for _, s := range scen {
		if !slices.Contains(RolloutScenarios, s) {
			return out, fmt.Errorf("scenario: rollout bench: unknown scenario %q (known: %v)", s, RolloutScenarios)
		}
		res, err := benchRolloutRun(cfg, s)
		if err != nil {
			return out, fmt.Errorf("scenario: rollout bench %s: %w", s, err)
		}
		if cfg.Report != nil {
			cfg.Report(res)
		}
		out = append(out, res)
	}
	return out, nil
}

// rolloutRig is one simulated mesh with our receivers, a distributor at
// the root, and the firmware model.
type rolloutRig struct {
	cfg     RolloutBenchConfig
	fleet   *Fleet
	dist    *ota.Distributor
	fw      *Firmware
	start   time.Time
	oldImg  []byte
	newImg  []byte
	oldMD5  string
	newMD5  string
	parent  map[uint32]uint32 // the tree at the start
	byID    map[uint32]*Device
	nested  int
	ranNew  map[uint32]bool
	seq     int
	reports map[string]bool // outcomes fed, by node/md5/state
}

func newRolloutRig(cfg RolloutBenchConfig, bad ImageBehaviour) (*rolloutRig, error) {
	return newRig(cfg, bad, false, serveNone)
}

// newRig builds the rig; inPlace boots a switched image without a reboot
// (the receiver object, and what it holds in memory, lives on); serve
// has receivers serve their confirmed image (ota.ReceiverConfig.ServeConfirmed).
func newRig(cfg RolloutBenchConfig, bad ImageBehaviour, inPlace bool, serve serving) (*rolloutRig, error) {
	g := &rolloutRig{cfg: cfg, byID: map[uint32]*Device{}, ranNew: map[uint32]bool{}, reports: map[string]bool{}}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x726f6c6c))
	g.oldImg, g.newImg = make([]byte, cfg.ImageSize), make([]byte, cfg.ImageSize)
	for i := range g.oldImg {
		g.oldImg[i], g.newImg[i] = byte(rng.Uint32()), byte(rng.Uint32())
	}
	g.oldMD5, g.newMD5 = md5hex(g.oldImg), md5hex(g.newImg)
	radio := ota.Radio{Overhead: cfg.Model.Radio.TxOverhead + cfg.Model.Link.Latency, ByteTime: cfg.Model.Radio.ByteTime}
	g.dist = ota.NewDistributor(ota.DistributorConfig{Radio: radio})
	spec := Spec{
		Devices: cfg.Nodes, Seed: cfg.Seed, Model: cfg.Model, FirstID: 1000,
		Layout: Layout{Topology: sim.TopologyTree, MaxDepth: cfg.MaxDepth},
		Root:   Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{g.dist} }},
		OTA: OTA{Receiver: OurReceiver, Role: "bench", Hardware: "ESP32", Radio: radio, Factory: g.oldMD5,
			SelfTest: func(d *Device, md5 string) bool { return g.fw.SelfTest(d, md5) },
			Restart:  func(d *Device, now time.Time) { g.fw.Restart(d, now) }},
	}
	if inPlace {
		spec.OTA.Restart = nil
	}
	spec.OTA.ServeConfirmed = serve == serveSlot
	spec.OTA.PeerToPeer = serve == servePeers
	f, err := Build(spec)
	if err != nil {
		return nil, err
	}
	g.fleet = f
	g.fw = NewFirmware(f.Net, map[string]ImageBehaviour{g.newMD5: bad})
	g.fw.OnReboot = g.countNested
	g.fw.OnBoot = func(d *Device, _ time.Time) {
		if md5, _ := running(d); md5 == g.newMD5 {
			g.ranNew[d.ID] = true
		}
	}
	for _, d := range f.Devices {
		g.byID[d.ID] = d
	}
	if err := f.Converge(10 * time.Minute); err != nil {
		return nil, err
	}
	g.start = f.Net.Now()
	g.parent = parents(f.Root.Mesh().Tree())
	return g, nil
}

// parents is each node's parent in the tree.
func parents(t protocol.NodeTree) map[uint32]uint32 {
	out := map[uint32]uint32{}
	var walk func(t *protocol.NodeTree)
	walk = func(t *protocol.NodeTree) {
		for i := range t.Subs {
			out[t.Subs[i].NodeID] = t.NodeID
			walk(&t.Subs[i])
		}
	}
	walk(&t)
	return out
}

// countNested counts a reboot that starts while a node on its path to the
// root, or one below it, is rebooting.
func (g *rolloutRig) countNested(d *Device, _ time.Time) {
	for p, hops := g.parent[d.ID], 0; p != 0 && hops < len(g.parent); p, hops = g.parent[p], hops+1 {
		if a := g.byID[p]; a != nil && g.fw.Rebooting(a) {
			g.nested++
			return
		}
	}
	for _, o := range g.fleet.Devices {
		if o == d || !g.fw.Rebooting(o) {
			continue
		}
		for p, hops := g.parent[o.ID], 0; p != 0 && hops < len(g.parent); p, hops = g.parent[p], hops+1 {
			if p == d.ID {
				g.nested++
				return
			}
		}
	}
}

// reachable is the devices the root's mesh knows.
func (g *rolloutRig) reachable() map[uint32]bool {
	out := map[uint32]bool{}
	for _, id := range g.fleet.Root.NodeList(false) {
		out[id] = true
	}
	return out
}

func (g *rolloutRig) topology() rollout.Topology {
	return rollout.Topology{Root: g.fleet.Root.ID(), Parent: parents(g.fleet.Root.Mesh().Tree())}
}

// startCampaign starts a campaign of img for nodes (it supersedes the one
// running: the distributor runs one per role and hardware).
func (g *rolloutRig) startCampaign(img []byte, version string, nodes []uint32, forced bool) error {
	return g.startMode(ota.ModePipelined, img, version, nodes, forced)
}

func (g *rolloutRig) startMode(mode ota.Mode, img []byte, version string, nodes []uint32, forced bool) error {
	g.seq++
	var err error
	spec := ota.CampaignSpec{ID: fmt.Sprintf("c%d", g.seq), Image: ota.Image{Role: "bench", Hardware: "ESP32", Version: version, Data: img},
		Mode: mode, Nodes: slices.Sorted(slices.Values(nodes)), Forced: forced}
	if serr := g.fleet.Root.Step(func(now time.Time, _ sim.Machine) { _, err = g.dist.Start(now, spec) }); serr != nil {
		return serr
	}
	return err
}

// poll hands feed every final node outcome the distributor's campaigns
// know, each once.
func (g *rolloutRig) poll(feed func(rollout.Outcome)) {
	for _, c := range g.dist.Campaigns() {
		for _, p := range c.Nodes() {
			var st rollout.OutcomeState
			switch p.State {
			case ota.StateConfirmed:
				st = rollout.OutcomeConfirmed
			case ota.StateRolledBack:
				st = rollout.OutcomeRolledBack
			case ota.StateRefused:
				st = rollout.OutcomeRefused
			default:
				continue
			}
			key := fmt.Sprintf("%d/%s/%s", p.Node, c.Image.MD5, st)
			if g.reports[key] {
				continue
			}
			g.reports[key] = true
			feed(rollout.Outcome{Node: p.Node, MD5: c.Image.MD5, State: st, Error: p.Err})
		}
	}
}

func benchRolloutRun(cfg RolloutBenchConfig, scenario string) (RolloutBenchResult, error) {
	wall := time.Now()
	res := RolloutBenchResult{Scenario: scenario, Nodes: cfg.Nodes}
	var bad ImageBehaviour
	switch scenario {
	case "bad":
		bad.CrashEvery = 40 * time.Second
	case "bad-boot":
		bad.CrashOnBoot = true
	case "leak":
		bad.LeakPerMinute, bad.LeakAfter = 40_000, time.Minute
	}
	if scenario == "good" {
		// One campaign to every node, on its own copy of the mesh.
		g, err := newRolloutRig(cfg, bad)
		if err != nil {
			return res, err
		}
		if err := g.startCampaign(g.newImg, "2.0", nil, false); err != nil {
			return res, err
		}
		net := g.fleet.Net
		net.RunUntil(func() bool {
			n := 0
			for _, d := range g.fleet.Devices {
				if d.Runs(g.newMD5) {
					n++
				}
			}
			res.CampaignDone = n
			return n == len(g.fleet.Devices)
		}, cfg.Limit)
		res.CampaignS = net.Now().Sub(g.start).Seconds()
		res.CampaignNested = g.nested
	}
	g, err := newRolloutRig(cfg, bad)
	if err != nil {
		return res, err
	}
	net := g.fleet.Net
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c617465))
	late := map[uint32]bool{}
	if scenario == "late" {
		// A tenth of the leaves are away at the start and come back at
		// random times within 20 minutes.
		var leaves []*Device
		for _, d := range g.fleet.Devices {
			if len(childrenOf(g.parent, d.ID)) == 0 {
				leaves = append(leaves, d)
			}
		}
		rng.Shuffle(len(leaves), func(i, j int) { leaves[i], leaves[j] = leaves[j], leaves[i] })
		for _, d := range leaves[:min(len(leaves), cfg.Nodes/10)] {
			late[d.ID] = true
			net.Crash(d.Node)
			back := time.Minute + time.Duration(rng.Int64N(int64(19*time.Minute)))
			net.After(back, func() { g.fw.PowerOn(d) })
		}
		res.Late = len(late)
	}
	spec := rollout.Spec{ID: "bench", Image: rollout.Image{MD5: g.newMD5, Version: "2.0", Role: "bench", Hardware: "ESP32"},
		Plan: rollout.Plan{Waves: []rollout.Wave{{Count: 5}, {Percent: 25}, {Percent: 100}}, Soak: cfg.Soak,
			Policy: rollout.PolicyRollback, MaxPerSubtree: 4, Linger: 30 * time.Minute}}
	var nodes []rollout.NodeInfo
	for _, d := range g.fleet.Devices {
		nodes = append(nodes, rollout.NodeInfo{ID: d.ID, Role: "bench", Hardware: "ESP32", Version: "1.0", MD5: g.oldMD5, Online: !late[d.ID]})
	}
	now := net.Now()
	r, err := rollout.New(now, spec, nodes, g.topology())
	if err != nil {
		return res, err
	}
	res.Canary = 5
	updating, back := map[uint32]bool{}, map[uint32]bool{}
	online := g.reachable()
	var firstConfirm time.Time
	apply := func() error {
		rd := r.Ready()
		r.Advance()
		for _, e := range rd.Events {
			if e.Kind == rollout.EventNode && e.To == string(rollout.NodeSoaking) && firstConfirm.IsZero() {
				firstConfirm = e.At
			}
			if scenario == "leak" && e.Kind == rollout.EventNode && e.To == string(rollout.NodeFailed) && res.CaughtAfterS == 0 {
				res.CaughtAfterS, res.CaughtWave = e.At.Sub(firstConfirm).Seconds(), e.Wave
			}
		}
		changed := false
		for _, a := range rd.Actions {
			for _, id := range a.Nodes {
				switch a.Kind {
				case rollout.ActionUpdate:
					updating[id] = true
					res.Started++
				case rollout.ActionCancel:
					delete(updating, id)
				case rollout.ActionRollback:
					delete(updating, id)
					back[id] = true
				}
			}
			changed = true
		}
		if !changed {
			return nil
		}
		// One campaign at a time per role and hardware: rollbacks first.
		if len(back) > 0 {
			return g.startCampaign(g.oldImg, "1.0", slices.Collect(maps.Keys(back)), true)
		}
		if len(updating) > 0 {
			return g.startCampaign(g.newImg, "2.0", slices.Collect(maps.Keys(updating)), false)
		}
		return nil
	}
	feed := func(o rollout.Outcome) {
		wasBack := back[o.Node]
		if o.MD5 == g.newMD5 {
			delete(updating, o.Node)
		} else {
			delete(back, o.Node)
		}
		r.Outcome(net.Now(), o)
		if wasBack && len(back) == 0 && len(updating) > 0 {
			// Rollbacks are through; the updates go on.
			_ = g.startCampaign(g.newImg, "2.0", slices.Collect(maps.Keys(updating)), false)
		}
	}
	if err := apply(); err != nil {
		return res, err
	}
	lastSample := time.Time{}
	for {
		net.RunFor(time.Second)
		now := net.Now()
		g.fw.Poll(g.fleet.Devices, now, g.start)
		g.poll(feed)
		if now.Sub(lastSample) >= 10*time.Second {
			lastSample = now
			seen := g.reachable()
			r.SetTopology(now, g.topology())
			for _, d := range g.fleet.Devices {
				switch {
				case seen[d.ID] && !online[d.ID]:
					md5, _ := running(d)
					r.Joined(now, rollout.NodeInfo{ID: d.ID, Role: "bench", Hardware: "ESP32", MD5: md5})
				case !seen[d.ID] && online[d.ID]:
					r.Left(now, d.ID)
				}
				if seen[d.ID] {
					md5, confirmed := running(d)
					if !confirmed {
						md5 = ""
					}
					r.Observe(now, rollout.Sample{Node: d.ID, Online: true, Uptime: g.fw.Uptime(d, now, g.start),
						FreeMemory: g.fw.FreeMemory(d, now, g.start), MD5: md5})
				}
			}
			online = seen
		}
		r.Tick(now)
		if err := apply(); err != nil {
			return res, err
		}
		if s, _ := r.State(); s.Final() || now.Sub(g.start) >= cfg.Limit {
			break
		}
	}
	// The last rollbacks' reboots settle before the mesh is counted.
	net.RunFor(time.Minute)
	s, why := r.State()
	res.State, res.Reason = string(s), why
	res.RolloutS = net.Now().Add(-time.Minute).Sub(g.start).Seconds()
	seen := g.reachable()
	for _, d := range g.fleet.Devices {
		md5, confirmed := running(d)
		if md5 == g.newMD5 && confirmed {
			res.Confirmed++
		}
		if g.ranNew[d.ID] && md5 == g.oldMD5 {
			res.RolledBack++
		}
		if !seen[d.ID] {
			res.Unreachable++
		}
		if late[d.ID] && md5 == g.newMD5 && confirmed {
			res.LateUpdated++
		}
	}
	res.RanNew = len(g.ranNew)
	res.NestedReboots = g.nested
	res.WallS = time.Since(wall).Seconds()
	return res, nil
}

func childrenOf(parent map[uint32]uint32, id uint32) []uint32 {
	var out []uint32
	for c, p := range parent {
		if p == id {
			out = append(out, c)
		}
	}
	return out
}
