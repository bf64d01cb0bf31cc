package sim

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// ScenarioConfig describes one standard simulation run: build a mesh, wait
// for it to converge, send application traffic, measure.
type ScenarioConfig struct {
	Nodes    int
	Topology Topology // default random
	Seed     uint64
	// Duration is the whole run in virtual time, convergence included
	// (default 10 minutes).
	Duration time.Duration
	// Link is the link model; a zero Model means ESP8266().
	Link Model
	// Loss, if positive, replaces Link.Link.Loss.
	Loss float64
	// Broadcasts and Singles are how many application messages are sent
	// once the mesh converged, spread over the first half of the remaining
	// time (defaults 20 each). Senders and destinations are random.
	Broadcasts, Singles int
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// Report is the outcome of RunScenario. The JSON names are part of the
// meshfleet sim command's output.
type Report struct {
	// ConvergedAtS is the virtual time (s) at which every node first knew
	// every other node; null if that never happened within the duration.
	ConvergedAtS *float64 `json:"converged_at_s"`
	// BroadcastDeliveredOnce is the fraction of (broadcast, other node)
	// pairs in which the node received the broadcast exactly once.
	BroadcastDeliveredOnce float64 `json:"broadcast_delivered_once"`
	// SingleDelivered is the fraction of single messages that reached
	// their destination exactly once.
	SingleDelivered float64 `json:"single_delivered"`
	// MaxTimeOffsetUS is the largest difference between node times at the
	// end of the run (wrapping-aware), in µs.
	MaxTimeOffsetUS int64 `json:"max_time_offset_us"`
	// VirtualS is the simulated time, WallS the real time it took.
	VirtualS float64 `json:"virtual_s"`
	WallS    float64 `json:"wall_s"`
	// HeapPerNodeBytes is the Go heap the simulated mesh holds once
	// converged, after a garbage collection, over its nodes: what one
	// simulated node (its mesh state, links and queues) costs in memory.
	// Like WallS it describes this process, not the simulated mesh.
	HeapPerNodeBytes float64 `json:"heap_bytes_per_node,omitempty"`

	Nodes        int    `json:"nodes"`
	Topology     string `json:"topology"`
	Link         string `json:"link"`
	Seed         uint64 `json:"seed"`
	Broadcasts   int    `json:"broadcasts"`
	Singles      int    `json:"singles"`
	LinkMessages uint64 `json:"link_messages"` // transmissions on all links
	LinkBytes    uint64 `json:"link_bytes"`
	Lost         uint64 `json:"lost"`        // dropped by the loss model
	QueueDrops   uint64 `json:"queue_drops"` // dropped by full radio queues
}

// ErrNotConverged is returned (with the partial Report) when the mesh did
// not converge within the scenario's duration.
var ErrNotConverged = errors.New("sim: mesh did not converge")

// Scenario limits, to turn absurd requests into errors rather than hours.
const (
	MaxScenarioNodes    = 10000
	DefaultScenarioTime = 10 * time.Minute
)

func (c *ScenarioConfig) normalise() error {
	if c.Nodes < 2 || c.Nodes > MaxScenarioNodes {
		return fmt.Errorf("sim: scenario needs 2..%d nodes, got %d", MaxScenarioNodes, c.Nodes)
	}
	if c.Topology == "" {
		c.Topology = TopologyRandom
	}
	if _, err := ParseTopology(string(c.Topology)); err != nil {
		return err
	}
	if c.Duration == 0 {
		c.Duration = DefaultScenarioTime
	}
	if c.Duration < 0 {
		return fmt.Errorf("sim: negative scenario duration %v", c.Duration)
	}
	if c.Link == (Model{}) {
		c.Link = ESP8266()
	}
	if c.Loss != 0 {
		if !(c.Loss > 0 && c.Loss <= 1) {
			return fmt.Errorf("sim: loss %v outside [0,1]", c.Loss)
		}
		c.Link.Link.Loss = c.Loss
	}
	if c.Broadcasts == 0 {
		c.Broadcasts = 20
	}
	if c.Singles == 0 {
		c.Singles = 20
	}
	if c.Broadcasts < 0 || c.Singles < 0 {
		return fmt.Errorf("sim: negative message count")
	}
	return c.Link.Validate()
}

// RunScenario builds the mesh of cfg, runs it for cfg.Duration of virtual
// time and reports. It stops early with ctx's error if ctx ends (checked
// every virtual second). If the mesh never converges the Report is still
// filled in (no traffic is sent) and ErrNotConverged is returned.
func RunScenario(ctx context.Context, cfg ScenarioConfig) (Report, error) {
	wallStart := time.Now() // wall clock only for the report's wall_s
	if err := cfg.normalise(); err != nil {
		return Report{}, err
	}
	heapBefore := liveHeap()
	n := New(Config{Seed: cfg.Seed, Model: cfg.Link})
	nodes, err := n.AddMeshNodes(cfg.Nodes, nil)
	if err != nil {
		return Report{}, err
	}
	if err := n.Build(cfg.Topology, nodes, 0); err != nil {
		return Report{}, err
	}
	rep := Report{
		Nodes: cfg.Nodes, Topology: string(cfg.Topology), Link: cfg.Link.Name, Seed: cfg.Seed,
	}
	finish := func() Report {
		st := n.Stats()
		rep.MaxTimeOffsetUS = n.MaxTimeOffset().Microseconds()
		rep.VirtualS = n.Elapsed().Seconds()
		rep.WallS = time.Since(wallStart).Seconds()
		rep.LinkMessages, rep.LinkBytes = st.Messages, st.Bytes
		rep.Lost, rep.QueueDrops = st.Lost, st.QueueDrops
		return rep
	}
	end := n.Now().Add(cfg.Duration)

	converged := false
	for !converged && n.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return finish(), err
		}
		converged = n.RunUntil(n.Converged, min(time.Second, end.Sub(n.Now())))
	}
	if !converged {
		err := fmt.Errorf("%w within %v (%d nodes, %s, %s link)",
			ErrNotConverged, cfg.Duration, cfg.Nodes, cfg.Topology, cfg.Link.Name)
		if why := n.nestingReason(cfg.Topology); why != "" {
			err = fmt.Errorf("%w: %s", err, why)
		}
		return finish(), err
	}
	at := n.Elapsed().Seconds()
	rep.ConvergedAtS = &at
	rep.HeapPerNodeBytes = float64(liveHeap()-heapBefore) / float64(cfg.Nodes)
	runtime.KeepAlive(n)

	// Application traffic: payloads are unique, so deliveries can be
	// counted per (payload, node).
	got := map[string]map[uint32]int{}
	n.OnEvent(func(nd *Node, _ time.Time, ev mesh.Event) {
		if m, ok := ev.(mesh.MessageReceived); ok {
			if got[m.Msg] == nil {
				got[m.Msg] = map[uint32]int{}
			}
			got[m.Msg][nd.ID()]++
		}
	})
	type sent struct {
		msg  string
		peer uint32 // sender of a broadcast, destination of a single
	}
	var broadcasts, singles []sent
	window := end.Sub(n.Now()) / 2
	total := cfg.Broadcasts + cfg.Singles
	rng := n.Rand()
	for k := range total {
		offset := window * time.Duration(k) / time.Duration(total)
		src := nodes[rng.IntN(len(nodes))]
		if k%2 == 0 && len(broadcasts) < cfg.Broadcasts || len(singles) >= cfg.Singles {
			b := sent{fmt.Sprintf("scenario broadcast %d", len(broadcasts)), src.ID()}
			broadcasts = append(broadcasts, b)
			n.After(offset, func() { _ = src.SendBroadcast(b.msg, false) })
			continue
		}
		dst := nodes[rng.IntN(len(nodes)-1)]
		if dst == src {
			dst = nodes[len(nodes)-1]
		}
		s := sent{fmt.Sprintf("scenario single %d", len(singles)), dst.ID()}
		singles = append(singles, s)
		// A send that finds no route counts as not delivered.
		n.After(offset, func() { _ = src.SendSingle(s.peer, s.msg) })
	}
	for n.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return finish(), err
		}
		n.Run(minTime(n.Now().Add(time.Minute), end))
	}

	once := 0
	for _, b := range broadcasts {
		for id, c := range got[b.msg] {
			if c == 1 && id != b.peer {
				once++
			}
		}
	}
	if len(broadcasts) > 0 {
		rep.BroadcastDeliveredOnce = float64(once) / float64(len(broadcasts)*(cfg.Nodes-1))
	}
	delivered := 0
	for _, s := range singles {
		if got[s.msg][s.peer] == 1 {
			delivered++
		}
	}
	if len(singles) > 0 {
		rep.SingleDelivered = float64(delivered) / float64(len(singles))
	}
	rep.Broadcasts, rep.Singles = len(broadcasts), len(singles)
	return finish(), nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
