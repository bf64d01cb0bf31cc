package scenario

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/sim"
)

// StragglerResult is one run of BenchStragglers.
type StragglerResult struct {
	Mode string `json:"mode"`
	// RelaysReboot: a switched image boots with a restart (a real device);
	// otherwise in place, and relays keep the completed transfer in memory.
	RelaysReboot bool `json:"relays_reboot"`
	// ServeConfirmed: relays serve their children from the image they
	// confirmed, after the reboot too (peer-to-peer).
	ServeConfirmed bool `json:"serve_confirmed"`
	// PeerToPeer: every updated device serves any node the image it
	// verified and offers it to a neighbour that connects; stragglers
	// fetch from the nearest holder.
	PeerToPeer bool `json:"peer_to_peer"`
	Stragglers int  `json:"stragglers"`
	// MainS is the main push until every other device confirmed.
	MainS float64 `json:"main_s"`
	// RootTxBytes is what the root's radio sent while the stragglers
	// caught up; StragglerS the time until the last of them confirmed.
	RootTxBytes uint64 `json:"root_tx_bytes"`
	// RootChunks is the chunks the root's distributor sent meanwhile
	// (answers, pushes, rebroadcasts): RootTxBytes also counts the mesh's
	// own node syncs as the stragglers join, which no serving changes.
	RootChunks int     `json:"root_chunks"`
	StragglerS float64 `json:"straggler_s"`
	Completed  int     `json:"completed"`
}

// BenchStragglers measures stragglers: n leaves are away during the main
// push of an image to every other device and come back together after it.
// It runs four ways on copies of the same mesh: a broadcast push whose
// relays keep the transfer in memory (they serve their children's repair
// asks from it), the same with relays that reboot into the image (as
// devices do; the copy is gone) without and with ServeConfirmed (they
// serve from the running slot), and a pipelined transfer (every chunk from
// the root).
func BenchStragglers(cfg RolloutBenchConfig, n int) ([]StragglerResult, error) {
	if cfg.Nodes < 2 || n < 1 || n >= cfg.Nodes {
		return nil, errors.New("scenario: the straggler bench needs devices and fewer stragglers than devices")
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
	if cfg.Limit <= 0 {
		cfg.Limit = time.Hour
	}
	var out []StragglerResult
	for _, run := range []struct {
		mode   ota.Mode
		reboot bool
		serve  serving
	}{{ota.ModeBroadcast, false, serveNone}, {ota.ModeBroadcast, true, serveNone}, {ota.ModeBroadcast, true, serveSlot},
		{ota.ModeBroadcast, true, servePeers}, {ota.ModePipelined, true, serveNone}, {ota.ModePipelined, true, servePeers}} {
		res, err := stragglerRun(cfg, n, run.mode, run.reboot, run.serve)
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}

// serving is how updated devices serve others in a bench.
type serving int

const (
	serveNone  serving = iota
	serveSlot          // their children's repairs, from the running slot
	servePeers         // peer-to-peer: anyone, from the nearest holder
)

func stragglerRun(cfg RolloutBenchConfig, n int, mode ota.Mode, reboot bool, serve serving) (StragglerResult, error) {
	res := StragglerResult{Mode: string(mode), RelaysReboot: reboot, ServeConfirmed: serve == serveSlot, PeerToPeer: serve == servePeers}
	g, err := newRig(cfg, ImageBehaviour{}, !reboot, serve)
	if err != nil {
		return res, err
	}
	net := g.fleet.Net
	var leaves []*Device
	for _, d := range g.fleet.Devices {
		if len(childrenOf(g.parent, d.ID)) == 0 {
			leaves = append(leaves, d)
		}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x73747261))
	rng.Shuffle(len(leaves), func(i, j int) { leaves[i], leaves[j] = leaves[j], leaves[i] })
	away := leaves[:min(n, len(leaves))]
	res.Stragglers = len(away)
	isAway := map[uint32]bool{}
	for _, d := range away {
		isAway[d.ID] = true
		net.Crash(d.Node)
	}
	if err := g.startMode(mode, g.newImg, "2.0", nil, false); err != nil {
		return res, err
	}
	confirmed := func(want bool) int {
		k := 0
		for _, d := range g.fleet.Devices {
			if isAway[d.ID] == want && d.Runs(g.newMD5) {
				k++
			}
		}
		return k
	}
	start := net.Now()
	net.RunUntil(func() bool { return confirmed(false) == len(g.fleet.Devices)-len(away) }, cfg.Limit)
	res.MainS = net.Now().Sub(start).Seconds()
	// Let the last reboots and reports settle.
	net.RunFor(30 * time.Second)
	before := g.fleet.Root.Stats().TxBytes
	chunks := func() int {
		s := g.dist.Stats()
		return s.ChunksServed + s.ChunksPushed + s.StockServed
	}
	beforeChunks := chunks()
	back := net.Now()
	for _, d := range away {
		g.fw.PowerOn(d)
	}
	net.RunUntil(func() bool { return confirmed(true) == len(away) }, cfg.Limit)
	res.StragglerS = net.Now().Sub(back).Seconds()
	res.RootTxBytes = g.fleet.Root.Stats().TxBytes - before
	res.RootChunks = chunks() - beforeChunks
	res.Completed = confirmed(true)
	return res, nil
}
