package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/registry"
	"github.com/meshfleet/meshfleet/status"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// The gateway's capacity: how many nodes reporting at 1 Hz one gateway
// process keeps up with on one core. Real telemetry packages go through
// the gateway's own path (the mesh node's framing and routing, the status
// collector's decode, model and alerts, the history recorder and its
// SQLite writer, the MQTT bridge publishing to the embedded broker and one
// subscriber, the device registry and the state saved every second) as
// fast as the process takes them, on a virtual clock so nothing sleeps,
// and the figure is CPU time per package: the sustainable rate on one
// core whatever else the machine runs. The baseline is the
// collector's decode alone (status.Decode and the telemetry frame
// decoder) of the same packages, in the same process.

// IngestBenchConfig sizes the capacity benchmark.
type IngestBenchConfig struct {
	Nodes   int           // reporting nodes
	Seconds int           // virtual seconds of 1 Hz telemetry from each
	Dir     string        // state and firmware (a temporary directory)
	Publish time.Duration // MQTT status interval (virtual), default the gateway's 30 s
	Logger  *slog.Logger
}

// IngestBenchResult is one run's figures.
type IngestBenchResult struct {
	Nodes        int     `json:"nodes"`
	Seconds      int     `json:"virtual_s"`
	Packages     int     `json:"packages"`
	PackageBytes int     `json:"package_bytes"`
	GOMAXPROCS   int     `json:"gomaxprocs"`
	DecodeRate   float64 `json:"decode_packages_per_cpu_s"`
	FullRate     float64 `json:"full_packages_per_cpu_s"`
	// CostRatio is the full path's CPU per package over the decode's.
	CostRatio float64 `json:"full_over_decode_cpu"`
	// NodesAt1Hz is FullRate: nodes one core keeps up with at 1 Hz.
	NodesAt1Hz int `json:"nodes_at_1hz_one_core"`
	// RegistryLimit is the most nodes besides the gateway the device
	// registry holds (registry.DefaultLimits); beyond it unnamed nodes
	// take each other's place in it every second.
	RegistryLimit  int     `json:"registry_limit_nodes"`
	WallS          float64 `json:"wall_s"`
	Online         int     `json:"nodes_online_at_end"`
	SamplesWritten uint64  `json:"history_samples_written"`
	SamplesDropped uint64  `json:"history_samples_dropped"`
	MQTTMessages   int64   `json:"mqtt_messages_received"`
	MQTTCycles     int     `json:"mqtt_status_cycles"`
	EventsDropped  int64   `json:"events_dropped"`
}

// benchEpoch is the virtual start of the benchmark.
var benchEpoch = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// ingestPackages are every node's telemetry packages, second by second,
// as the nodes' encoders write them (keyframes and deltas).
func ingestPackages(nodes, seconds int) [][][]byte {
	encs := make([]*telemetry.Encoder, nodes)
	for i := range encs {
		encs[i] = telemetry.NewEncoder(telemetry.EncoderConfig{})
	}
	out := make([][][]byte, seconds)
	for s := range seconds {
		out[s] = make([][]byte, nodes)
		for i, e := range encs {
			now := benchEpoch.Add(time.Duration(s) * time.Second)
			p := status.TelemetryPackage{From: benchNodeID(i), Dest: benchGatewayID, Frame: e.Encode(now, uint32(s*1000), benchTelemetry(i, s), false)}
			out[s][i] = p.AppendJSON(nil)
		}
	}
	return out
}

const benchGatewayID, benchRelayID = 1, 2

func benchNodeID(i int) uint32 { return uint32(1000 + i) }

// benchTelemetry is node i's reading at second s: every field moving as a
// real node's do, all within the alert thresholds.
func benchTelemetry(i, s int) telemetry.Values {
	return telemetry.Values{
		Uptime:          uint32(s + i*37),
		FreeMemory:      uint32(40000 + 3000*math.Sin(float64(s+i)/60)),
		MessagesRx:      uint32(s * 3),
		MessagesTx:      uint32(s * 2),
		MessagesDropped: uint32(s / 500),
		Latency:         uint32(2000 + (i%7)*300 + (s%13)*50),
		LossPermille:    uint16(s % 20),
		Interval:        1,
		Connections:     uint8(1 + i%4),
		RSSI:            int8(-50 - i%25),
		WiFi:            uint8(100 - i%25),
	}
}

// decodeRate is packages per CPU second for the collector's decode alone.
func decodeRate(pkgs [][][]byte) (float64, error) {
	dec := telemetry.NewDecoder()
	n := 0
	runtime.GC()
	cpu0 := processCPU()
	for _, second := range pkgs {
		for _, raw := range second {
			p, err := status.Decode(raw)
			if err != nil {
				return 0, err
			}
			tp, ok := p.(*status.TelemetryPackage)
			if !ok {
				return 0, fmt.Errorf("decoded %T, want a telemetry package", p)
			}
			if _, err := dec.Decode(tp.From, tp.Frame); err != nil {
				return 0, err
			}
			n++
		}
	}
	return float64(n) / (processCPU() - cpu0).Seconds(), nil
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchIngest measures the gateway's capacity (see above). Run it with
// GOMAXPROCS=1 for the one-core figure.
func BenchIngest(ctx context.Context, bc IngestBenchConfig) (IngestBenchResult, error) {
	res := IngestBenchResult{Nodes: bc.Nodes, Seconds: bc.Seconds, GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if bc.Nodes < 1 || bc.Seconds < 2 {
		return res, fmt.Errorf("bench gateway: want at least 1 node and 2 seconds, got %d and %d", bc.Nodes, bc.Seconds)
	}
	if bc.Publish <= 0 {
		bc.Publish = 30 * time.Second
	}
	pkgs := ingestPackages(bc.Nodes, bc.Seconds)
	res.Packages = bc.Nodes * bc.Seconds
	res.PackageBytes = len(pkgs[bc.Seconds-1][bc.Nodes-1])
	before, err := decodeRate(pkgs)
	if err != nil {
		return res, err
	}

	cfg := DefaultConfig()
	cfg.Node.ID = benchGatewayID
	cfg.MQTT.Embedded.Listen = "127.0.0.1:0"
	cfg.MQTT.Topics.PerNode = true
	// The bench publishes the status cycles itself, on the virtual clock.
	cfg.MQTT.PublishInterval = Duration(24 * time.Hour)
	cfg.HTTP.Listen = ""
	cfg.Firmware.Dir = filepath.Join(bc.Dir, "firmware")
	cfg.StateDir = filepath.Join(bc.Dir, "state")
	// Room for every sample, the gateway's own included, so none is
	// dropped while the writer waits for its turn on the one core: the
	// writer's cost is counted in full.
	cfg.History.QueueSize = min(res.Packages+4*bc.Seconds+1024, 1<<24)
	g, err := New(cfg, bc.Logger)
	if err != nil {
		return res, err
	}
	d := newIngestDriver(g)
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(runCtx, d) }()
	running := true
	// On an early return the gateway still stops before the caller
	// removes its directory.
	defer func() {
		if running {
			stop()
			<-runErr
		}
	}()
	select {
	case <-g.Ready():
	case err := <-runErr:
		running = false
		return res, fmt.Errorf("gateway did not start: %w", err)
	}
	var received atomic.Int64
	sub, err := mqttbridge.Dial(ctx, mqttbridge.ClientConfig{URL: "mqtt://" + g.MQTTAddr, ClientID: "bench-subscriber"})
	if err != nil {
		return res, err
	}
	defer sub.Close(context.Background())
	sub.Subscribe(ctx, cfg.TopicRoot()+"/#", func(mqttbridge.Message) { received.Add(1) })
	if err := sub.AwaitConnection(ctx); err != nil {
		return res, err
	}
	if err := d.do(ctx, d.sync); err != nil {
		return res, err
	}
	bridge := g.mqttBridge.Load()
	if bridge == nil {
		return res, errors.New("bench gateway: the MQTT bridge did not start")
	}
	<-bridge.Subscribed()

	runtime.GC()
	cpu0, wall0 := processCPU(), time.Now()
	every := max(1, int(bc.Publish/time.Second))
	for s := range bc.Seconds {
		if err := d.do(ctx, func() { d.feed(s, pkgs[s]) }); err != nil {
			return res, err
		}
		// What the gateway does every second besides (its own ticker
		// runs on the wall clock, far slower than this one).
		g.persistTick(ctx)
		if (s+1)%every == 0 {
			bridge.PublishAll(ctx)
			res.MQTTCycles++
		}
	}
	nodes, err := g.Nodes(ctx)
	if err != nil {
		return res, err
	}
	for _, n := range nodes {
		if n.Status == "online" && !n.Gateway {
			res.Online++
		}
	}
	hist := g.hist.store.Load()
	stop()
	running = false
	if err := <-runErr; err != nil {
		return res, err
	}
	cpu := processCPU() - cpu0
	res.WallS = time.Since(wall0).Seconds()
	if hist != nil {
		st := hist.Stats()
		res.SamplesWritten, res.SamplesDropped = st.SamplesWritten, st.SamplesDropped
	}
	res.MQTTMessages = received.Load()
	res.EventsDropped = d.eventsDropped.Load()
	after, err := decodeRate(pkgs)
	if err != nil {
		return res, err
	}
	// The machine's load may change during the run: the baseline is the
	// mean of the decode before and after it.
	res.DecodeRate = (before + after) / 2
	res.FullRate = float64(res.Packages) / cpu.Seconds()
	res.CostRatio = res.DecodeRate / res.FullRate
	res.NodesAt1Hz = int(res.FullRate)
	res.RegistryLimit = registry.DefaultLimits.MaxNodes - 1
	return res, nil
}

// ingestDriver runs the gateway's node for the benchmark: a relay node
// (id 2) is its one neighbour, synced over an in-memory link, and every
// reporting node's packages arrive through the relay's connection, as
// they would from the mesh. Everything runs in the driver's loop on the
// virtual clock.
type ingestDriver struct {
	gw, relay *mesh.Node
	now       time.Time
	jobs      chan func()
	events    chan mesh.Event

	eventsDropped atomic.Int64
}

const (
	gwSide    mesh.ConnID = 1 // the gateway's connection to the relay
	relaySide mesh.ConnID = 1 // the relay's connection to the gateway
)

func newIngestDriver(g *Gateway) *ingestDriver {
	now := benchEpoch
	d := &ingestDriver{now: now, jobs: make(chan func()), events: make(chan mesh.Event, 1<<16)}
	d.gw = mesh.New(mesh.Config{ID: benchGatewayID, Root: true, ContainsRoot: true}, now)
	for _, p := range g.Plugins(now) {
		d.gw.Use(p)
	}
	d.relay = mesh.New(mesh.Config{ID: benchRelayID}, now)
	return d
}

// Do implements Driver.
func (d *ingestDriver) Do(ctx context.Context, fn func(now time.Time, n *mesh.Node)) error {
	return d.do(ctx, func() { fn(d.now, d.gw); d.pump() })
}

// do runs fn in the loop and waits for it.
func (d *ingestDriver) do(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case d.jobs <- func() { fn(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Events implements Driver.
func (d *ingestDriver) Events() <-chan mesh.Event { return d.events }

// Run implements Driver.
func (d *ingestDriver) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case job := <-d.jobs:
			job()
		}
	}
}

// sync connects the relay and runs node sync until both know each other.
func (d *ingestDriver) sync() {
	d.gw.Connect(d.now, gwSide, false)
	d.relay.Connect(d.now, relaySide, true)
	for range 20 {
		d.now = d.now.Add(100 * time.Millisecond)
		d.gw.Tick(d.now)
		d.relay.Tick(d.now)
		d.pump()
	}
}

// feed delivers second s's packages, spread over that second, then lets
// both nodes' timers run.
func (d *ingestDriver) feed(s int, pkgs [][]byte) {
	start := benchEpoch.Add(time.Duration(s+1) * time.Second)
	step := time.Second / time.Duration(len(pkgs))
	for i, p := range pkgs {
		d.now = start.Add(time.Duration(i) * step)
		d.gw.Receive(d.now, gwSide, p)
		if i%64 == 63 {
			d.pump()
		}
	}
	d.now = start.Add(time.Second - time.Millisecond)
	d.gw.Tick(d.now)
	d.relay.Tick(d.now)
	d.pump()
}

// pump moves the two nodes' messages across the link until it is quiet,
// does the gateway's disk work inline and hands its events on.
func (d *ingestDriver) pump() {
	for range 8 {
		moved := false
		rd := d.gw.Ready()
		for _, w := range rd.Work {
			d.gw.WorkDone(d.now, w, w.Do())
		}
		for _, ev := range rd.Events {
			select {
			case d.events <- ev:
			default:
				d.eventsDropped.Add(1)
			}
		}
		for _, m := range rd.Messages {
			if m.Conn == gwSide {
				d.relay.Receive(d.now, relaySide, m.Data)
				moved = true
			}
		}
		for _, m := range d.relay.Ready().Messages {
			if m.Conn == relaySide {
				d.gw.Receive(d.now, gwSide, m.Data)
				moved = true
			}
		}
		if !moved && len(rd.Work) == 0 {
			return
		}
	}
}
