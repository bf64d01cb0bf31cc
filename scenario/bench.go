package scenario

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// BenchConfig configures Bench, the OTA benchmark: one simulated mesh, one
// image, every distribution mode in turn.
type BenchConfig struct {
	Nodes    int     // receivers (the distributor is one more node, the root)
	Loss     float64 // per-message loss on every link
	Seed     uint64
	Model    sim.Model // zero: sim.ESP8266 with Loss
	MaxDepth int       // tree depth limit, 6
	Image    []byte
	Compress func(method string, img []byte) ([]byte, error)
	Decode   func(method string, r io.Reader) (io.Reader, error) // nil: ota.Decode
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
	Mode     string // stock-unicast | stock-broadcast | stock-turbo | pipelined | broadcast
	Compress string // none | deflate | heatshrink
}

// DefaultBenchRows is every mode with and without deflate.
var DefaultBenchRows = []BenchRow{
	{"stock-unicast", "none"}, {"stock-unicast", "deflate"},
	{"stock-broadcast", "none"}, {"stock-broadcast", "deflate"},
	{"pipelined", "none"}, {"pipelined", "deflate"},
	{"broadcast", "none"}, {"broadcast", "deflate"},
	{"stock-turbo", "none"},
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
	// NodeS is each node's completion time (seconds from the start), by
	// node id.
	NodeS map[uint32]float64 `json:"-"`
	// WorstNodeRatio is, for a stock-turbo row run after the
	// stock-unicast row, the largest ratio of a node's completion time to
	// its stock-unicast time (a node that did not complete in this row
	// counts with the row's time).
	WorstNodeRatio float64 `json:"worst_node_ratio,omitempty"`
	Note           string  `json:"note,omitempty"`
}

// FloorDefinition states how FloorS is computed.
const FloorDefinition = "floor = max over transmitting nodes of (children × transfer bytes × byte time of its radio) " +
	"+ one pipeline fill per hop along the deepest path (one-hop time of a 1024-byte chunk per hop); " +
	"a node has one shared radio, so a relay with k children sends every byte k times"

// Bench runs every row on the same simulated mesh shape and image.
func Bench(cfg BenchConfig) ([]BenchResult, error) {
	if cfg.Nodes < 1 || len(cfg.Image) == 0 {
		return nil, errors.New("scenario: the OTA bench needs nodes and an image")
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
		if err == nil && row.Mode == "stock-turbo" {
			res.WorstNodeRatio = worstNodeRatio(out, res)
		}
		if err != nil {
			return out, fmt.Errorf("scenario: OTA bench %s/%s: %w", row.Mode, row.Compress, err)
		}
		if cfg.Report != nil {
			cfg.Report(res)
		}
		out = append(out, res)
	}
	return out, nil
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
	stockRx := row.Mode == "stock-unicast" || row.Mode == "stock-broadcast" || row.Mode == "stock-turbo"
	if (row.Mode == "stock-broadcast" || row.Mode == "stock-turbo") && row.Compress != "none" {
		res.Note = "stock receivers cannot decompress (docs/protocol.md Q-19 g); not run"
		return res, nil
	}
	stockRx = stockRx && row.Compress == "none"
	dcfg := ota.DistributorConfig{
		Compress: cfg.Compress,
		Radio:    ota.Radio{Overhead: cfg.Model.Radio.TxOverhead + cfg.Model.Link.Latency, ByteTime: cfg.Model.Radio.ByteTime},
	}
	spec := Spec{
		Devices: cfg.Nodes, Seed: cfg.Seed, Model: cfg.Model,
		Layout:  Layout{Topology: sim.TopologyTree, MaxDepth: cfg.MaxDepth},
		FirstID: 1000,
		OTA:     OTA{Receiver: OurReceiver, Role: "bench", Hardware: "ESP32", Radio: dcfg.Radio, Decode: cfg.Decode},
	}
	if stockRx {
		dcfg.Unpaced = true   // the C++ distributor answers at once
		dcfg.StockOnly = true // and sends no offers
		// The stock rows model C++ nodes throughout, mesh timers included
		// (no NODE_SYNC_REQUEST repeats, mesh.Timing.NodeSyncRetry).
		spec.Timing = mesh.StockTiming()
		spec.OTA.Receiver = StockReceiver
	}
	dist := ota.NewDistributor(dcfg)
	spec.Root = Root{ID: 1, Plugins: func(time.Time, uint32) []mesh.Plugin { return []mesh.Plugin{dist} }}
	fleet, err := Build(spec)
	if err != nil {
		return res, err
	}
	net, root := fleet.Net, fleet.Root
	if err := fleet.Converge(10 * time.Minute); err != nil {
		return res, err
	}
	res.FloorS = floor(net, root, len(payload)).Seconds()

	md5 := md5hex(cfg.Image)
	done := func() int {
		n := 0
		for _, d := range fleet.Devices {
			if d.Runs(md5) {
				n++
			}
		}
		return n
	}
	campaign := ota.CampaignSpec{ID: "bench", Image: ota.Image{Role: "bench", Hardware: "ESP32", Data: cfg.Image}, Method: row.Compress}
	limit := cfg.FastLimit
	switch row.Mode {
	case "stock-unicast":
		campaign.Mode = ota.ModeStock
		limit = cfg.StockLimit
	case "stock-broadcast":
		campaign.Mode, campaign.StockBroadcast = ota.ModeStock, true
		// Stock announces for an hour; a transfer nobody started by then
		// never starts.
		limit = min(cfg.StockLimit, time.Hour+5*time.Minute)
	case "stock-turbo":
		campaign.Mode = ota.ModeStockTurbo
		limit = cfg.StockLimit
	case "pipelined":
		campaign.Mode = ota.ModePipelined
	case "broadcast":
		campaign.Mode = ota.ModeBroadcast
	default:
		return res, fmt.Errorf("unknown mode %q", row.Mode)
	}
	before := net.Stats()
	start := net.Now()
	if err := root.Step(func(now time.Time, _ sim.Machine) { _, err = dist.Start(now, campaign) }); err != nil {
		return res, err
	}
	if err != nil {
		return res, err
	}
	// Progress per node is only known at completion for stock receivers;
	// count partial chunks for the extrapolation of capped runs.
	partial := func() float64 {
		total := 0.0
		for _, d := range fleet.Devices {
			switch {
			case d.Runs(md5):
				total++
			case d.Stock != nil:
				// Parts are 1 KiB for stock unicast, larger for stock-turbo.
				total += float64(d.Stock.BytesReceived()) / float64(len(cfg.Image))
			case d.Store != nil:
				if written, chunks := d.Store.StagedChunks(); chunks > 0 {
					total += float64(written) / float64(chunks)
				}
			}
		}
		return total / float64(len(fleet.Devices))
	}
	ok := net.RunUntil(func() bool { return done() == len(fleet.Devices) }, limit)
	after := net.Stats()
	res.VirtualS = net.Now().Sub(start).Seconds()
	res.Completed = done()
	res.NodeS = map[uint32]float64{}
	for _, d := range fleet.Devices {
		if d.Stock != nil && d.Runs(md5) {
			res.NodeS[d.ID] = d.Stock.Done.Sub(start).Seconds()
		}
	}
	res.LinkMsgs = after.Messages - before.Messages
	res.LinkBytes = after.Bytes - before.Bytes
	if !ok {
		res.Capped = true
		if f := partial(); f > 0 && row.Mode != "stock-broadcast" {
			res.ExtrapolatedS = math.Round(res.VirtualS / f)
		}
		if row.Mode == "stock-broadcast" && res.Completed == 0 {
			res.Note = "no receiver is root, so nobody requests (docs/protocol.md Q-19 a): the transfer never starts"
		}
	}
	if !stockRx && row.Mode == "stock-unicast" {
		res.Note = "our receivers on the stock packages with compressed:true (stock receivers cannot decompress)"
	}
	res.WallS = time.Since(wall).Seconds()
	return res, nil
}

// worstNodeRatio compares r's per-node completion times with those of the
// stock-unicast row among earlier (same mesh, same seed): the largest
// ratio of a node's time here to its time there. Zero: no such row.
func worstNodeRatio(earlier []BenchResult, r BenchResult) float64 {
	for _, base := range earlier {
		if base.Mode != "stock-unicast" || base.Compress != "none" || len(base.NodeS) == 0 {
			continue
		}
		worst := 0.0
		for id, b := range base.NodeS {
			t, ok := r.NodeS[id]
			if !ok {
				t = r.VirtualS
			}
			worst = max(worst, t/b)
		}
		return worst
	}
	return 0
}

func md5hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
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
