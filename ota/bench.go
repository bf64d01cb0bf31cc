package ota

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/meshfleet/meshfleet/internal/stockota"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// BenchConfig configures Bench: one simulated mesh, one image, every
// distribution mode in turn.
type BenchConfig struct {
	Nodes    int     // receivers (the distributor is one more node, the root)
	Loss     float64 // per-message loss on every link
	Seed     uint64
	Model    sim.Model // zero: sim.ESP8266 with Loss
	MaxDepth int       // tree depth limit, 6
	Image    []byte
	Compress func(method string, img []byte) ([]byte, error)
	Decode   func(method string, r io.Reader) (io.Reader, error)
	// Rows to run; nil: DefaultBenchRows.
	Rows []BenchRow
	// StockLimit caps the virtual time of the stock rows (4 h); FastLimit
	// that of ours (1 h).
	StockLimit, FastLimit time.Duration
	// Report, if set, sees each result as soon as it is measured.
	Report func(BenchResult)
}

// BenchRow is one measured configuration.
type BenchRow struct {
	Mode     string // stock-unicast | stock-broadcast | pipelined | broadcast
	Compress string // none | deflate | heatshrink
}

// DefaultBenchRows is every mode with and without deflate.
var DefaultBenchRows = []BenchRow{
	{"stock-unicast", "none"}, {"stock-unicast", "deflate"},
	{"stock-broadcast", "none"}, {"stock-broadcast", "deflate"},
	{"pipelined", "none"}, {"pipelined", "deflate"},
	{"broadcast", "none"}, {"broadcast", "deflate"},
}

// BenchResult is one row of the benchmark.
type BenchResult struct {
	Mode      string  `json:"mode"`
	Compress  string  `json:"compress"`
	VirtualS  float64 `json:"virtual_s"` // until the last node confirmed (or the cap)
	Completed int     `json:"completed"`
	Nodes     int     `json:"nodes"`
	LinkMsgs  uint64  `json:"link_msgs"`  // transmissions on all links during the run
	LinkBytes uint64  `json:"link_bytes"` // their bytes
	FloorS    float64 `json:"floor_s"`
	// TransferBytes is what had to reach every node (compressed or raw).
	TransferBytes int `json:"transfer_bytes"`
	// Links is the number of links in the tree (nodes − 1).
	Links int `json:"links"`
	// Capped is set when the run hit its virtual-time cap; ExtrapolatedS
	// then estimates the completion time from the progress rate so far.
	Capped        bool    `json:"capped,omitempty"`
	ExtrapolatedS float64 `json:"extrapolated_s,omitempty"`
	WallS         float64 `json:"wall_s"`
	Note          string  `json:"note,omitempty"`
}

// FloorDefinition states how FloorS is computed.
const FloorDefinition = "floor = max over transmitting nodes of (children × transfer bytes × byte time of its radio) " +
	"+ one pipeline fill per hop along the deepest path (one-hop time of a 1024-byte chunk per hop); " +
	"a node has one shared radio, so a relay with k children sends every byte k times"

// Bench runs every row on the same simulated mesh shape and image.
func Bench(cfg BenchConfig) ([]BenchResult, error) {
	if cfg.Nodes < 1 || len(cfg.Image) == 0 {
		return nil, errors.New("ota: bench needs nodes and an image")
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 6
	}
	if cfg.Model.Name == "" {
		cfg.Model = sim.ESP8266()
		cfg.Model.Link.Loss = cfg.Loss
	}
	if cfg.StockLimit <= 0 {
		cfg.StockLimit = 4 * time.Hour
	}
	if cfg.FastLimit <= 0 {
		cfg.FastLimit = time.Hour
	}
	rows := cfg.Rows
	if rows == nil {
		rows = DefaultBenchRows
	}
	var out []BenchResult
	for _, row := range rows {
		res, err := benchRow(cfg, row)
		if err != nil {
			return out, fmt.Errorf("ota: bench %s/%s: %w", row.Mode, row.Compress, err)
		}
		if cfg.Report != nil {
			cfg.Report(res)
		}
		out = append(out, res)
	}
	return out, nil
}

type benchNode struct {
	stock *stockota.Receiver
	store *MemoryStore
}

func benchRow(cfg BenchConfig, row BenchRow) (BenchResult, error) {
	wall := time.Now()
	res := BenchResult{Mode: row.Mode, Compress: row.Compress, Nodes: cfg.Nodes, Links: cfg.Nodes}
	payload := cfg.Image
	if row.Compress != "none" {
		if cfg.Compress == nil {
			return res, errors.New("no compressor")
		}
		var err error
		if payload, err = cfg.Compress(row.Compress, cfg.Image); err != nil {
			return res, err
		}
	}
	res.TransferBytes = len(payload)
	stockRx := row.Mode == "stock-unicast" || row.Mode == "stock-broadcast"
	if row.Mode == "stock-broadcast" && row.Compress != "none" {
		res.Note = "stock receivers cannot decompress (PROTOCOL.md Q-19 g); not run"
		return res, nil
	}
	stockRx = stockRx && row.Compress == "none"
	net := sim.New(sim.Config{Seed: cfg.Seed, Model: cfg.Model})
	dcfg := DistributorConfig{
		Compress: cfg.Compress,
		Radio:    Radio{Overhead: cfg.Model.Radio.TxOverhead + cfg.Model.Link.Latency, ByteTime: cfg.Model.Radio.ByteTime},
	}
	if stockRx {
		dcfg.Unpaced = true   // the C++ distributor answers at once
		dcfg.StockOnly = true // and sends no offers
	}
	dist := NewDistributor(dcfg)
	// The stock rows model C++ nodes throughout, mesh timers included
	// (no NODE_SYNC_REQUEST repeats, mesh.Timing.NodeSyncRetry).
	var timing mesh.Timing
	if stockRx {
		timing = mesh.StockTiming()
	}
	root, err := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: 1, Root: true, ContainsRoot: true, Timing: timing},
		Plugins: func(*sim.Node) []mesh.Plugin { return []mesh.Plugin{dist} }})
	if err != nil {
		return res, err
	}
	all := []*sim.Node{root}
	nodes := make([]*benchNode, cfg.Nodes)
	for i := range nodes {
		bn := &benchNode{}
		nodes[i] = bn
		if stockRx {
			bn.stock = &stockota.Receiver{Role: "bench", Hardware: "ESP32"}
		} else {
			bn.store = NewMemoryStore("")
			bn.store.Decode = cfg.Decode
		}
		id := uint32(1000 + i)
		nd, err := net.AddNode(sim.NodeSpec{Config: mesh.Config{ID: id, Timing: timing}, Plugins: func(nd *sim.Node) []mesh.Plugin {
			if bn.stock != nil {
				return []mesh.Plugin{bn.stock}
			}
			rc, err := NewReceiver(ReceiverConfig{Role: "bench", Hardware: "ESP32", Store: bn.store, Seed: uint64(id),
				Radio: dcfg.Radio, SelfTest: func(string) bool { return true }}, nd.Network().Now())
			if err != nil {
				panic(err) // a fresh MemoryStore cannot fail to boot
			}
			return []mesh.Plugin{rc}
		}})
		if err != nil {
			return res, err
		}
		all = append(all, nd)
	}
	if err := net.Tree(all, 0, cfg.MaxDepth); err != nil {
		return res, err
	}
	if !net.RunUntil(net.Converged, 10*time.Minute) {
		return res, errors.New("mesh did not converge")
	}
	res.FloorS = floor(net, root, len(payload)).Seconds()

	md5 := md5hexOf(cfg.Image)
	done := func() int {
		n := 0
		for _, bn := range nodes {
			if bn.stock != nil && bn.stock.Installed == md5 {
				n++
			} else if bn.store != nil {
				if a, ok := bn.store.Active(); a == md5 && ok {
					n++
				}
			}
		}
		return n
	}
	spec := CampaignSpec{ID: "bench", Image: Image{Role: "bench", Hardware: "ESP32", Data: cfg.Image}, Method: row.Compress}
	limit := cfg.FastLimit
	switch row.Mode {
	case "stock-unicast":
		spec.Mode = ModeStock
		limit = cfg.StockLimit
	case "stock-broadcast":
		spec.Mode, spec.StockBroadcast = ModeStock, true
		// Stock announces for an hour; a transfer nobody started by then
		// never starts.
		limit = min(cfg.StockLimit, time.Hour+5*time.Minute)
	case "pipelined":
		spec.Mode = ModePipelined
	case "broadcast":
		spec.Mode = ModeBroadcast
	default:
		return res, fmt.Errorf("unknown mode %q", row.Mode)
	}
	before := net.Stats()
	start := net.Now()
	if err := root.Step(func(now time.Time, _ sim.Machine) { _, err = dist.Start(now, spec) }); err != nil {
		return res, err
	}
	if err != nil {
		return res, err
	}
	// Progress per node is only known at completion for stock receivers;
	// count partial chunks for the extrapolation of capped runs.
	partial := func() float64 {
		total := 0.0
		for _, bn := range nodes {
			switch {
			case bn.stock != nil && bn.stock.Installed == md5:
				total++
			case bn.stock != nil:
				total += float64(bn.stock.PartsReceived()) / float64((len(cfg.Image)+1023)/1024)
			case bn.store != nil:
				if a, ok := bn.store.Active(); a == md5 && ok {
					total++
				} else if bn.store.staged != nil && bn.store.staged.t.Chunks > 0 {
					total += float64(bn.store.staged.Count()) / float64(bn.store.staged.t.Chunks)
				}
			}
		}
		return total / float64(len(nodes))
	}
	ok := net.RunUntil(func() bool { return done() == len(nodes) }, limit)
	after := net.Stats()
	res.VirtualS = net.Now().Sub(start).Seconds()
	res.Completed = done()
	res.LinkMsgs = after.Messages - before.Messages
	res.LinkBytes = after.Bytes - before.Bytes
	if !ok {
		res.Capped = true
		if f := partial(); f > 0 && row.Mode != "stock-broadcast" {
			res.ExtrapolatedS = math.Round(res.VirtualS / f)
		}
		if row.Mode == "stock-broadcast" && res.Completed == 0 {
			res.Note = "no receiver is root, so nobody requests (PROTOCOL.md Q-19 a): the transfer never starts"
		}
	}
	if !stockRx && row.Mode == "stock-unicast" {
		res.Note = "our receivers on the stock packages with compressed:true (stock receivers cannot decompress)"
	}
	res.WallS = time.Since(wall).Seconds()
	return res, nil
}

// floor is FloorDefinition for the network's current tree.
func floor(net *sim.Network, root *sim.Node, bytes int) time.Duration {
	m := net.Model()
	var worst time.Duration
	depth := 0
	var walk func(t *protocol.NodeTree, d int)
	walk = func(t *protocol.NodeTree, d int) {
		if tx := time.Duration(len(t.Subs)*bytes) * m.Radio.ByteTime; tx > worst {
			worst = tx
		}
		depth = max(depth, d)
		for i := range t.Subs {
			walk(&t.Subs[i], d+1)
		}
	}
	tree := root.Mesh().Tree()
	walk(&tree, 0)
	return worst + time.Duration(depth)*m.OneHop(1024)
}
