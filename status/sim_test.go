package status_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/alert"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
	"github.com/meshfleet/meshfleet/status"
)

// simMesh is a simulated mesh of real mesh.Nodes: a root with a collector
// and its own reporter, and reporting nodes in a random tree.
type simMesh struct {
	net       *sim.Network
	nodes     []*sim.Node
	collector *status.Collector
	reporters map[uint32]*status.Reporter
	// lastFrame is when the collector last took a telemetry frame from
	// each node; offline the time each node went offline.
	lastFrame map[uint32]time.Time
	offline   map[uint32]time.Time
}

const interval = 30 * time.Second

func newSimMesh(t *testing.T, seed uint64, count int) *simMesh {
	t.Helper()
	sm := &simMesh{
		reporters: map[uint32]*status.Reporter{},
		lastFrame: map[uint32]time.Time{},
		offline:   map[uint32]time.Time{},
	}
	providers := func(id uint32, now time.Time) status.Providers {
		mem := status.MemoryModel{Boot: now, Start: 38_000, Floor: 12_000, LeakPerHour: id % 3000,
			Ripple: 500, RipplePeriod: 7 * time.Minute}
		return status.Providers{
			Firmware:   func() (string, string) { return "3.0.1", "9e107d9d372bb6826bd81d3542a419d6" },
			FreeMemory: mem.Free,
		}
	}
	fleet, err := scenario.Build(scenario.Spec{
		Devices: count - 1, Seed: seed, Model: sim.ESP8266(),
		Layout: scenario.Layout{Topology: sim.TopologyRandom, FanOut: 4},
		Root: scenario.Root{ID: 1, Plugins: func(now time.Time, id uint32) []mesh.Plugin {
			local := status.NewReporter(status.ReporterConfig{Interval: interval, Providers: providers(id, now)}, now)
			sm.reporters[id] = local
			sm.collector = status.NewCollector(status.CollectorConfig{Local: local}, now)
			return []mesh.Plugin{local, sm.collector}
		}},
		FirstID:      101,
		RandomClocks: true,
		Reporter: &scenario.Reporter{Interval: interval, Providers: func(d *scenario.Device, now time.Time) status.Providers {
			return providers(d.ID, now)
		}},
		Plugins: func(d *scenario.Device, _ time.Time) []mesh.Plugin {
			sm.reporters[d.ID] = d.Reporter
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sm.net, sm.nodes = fleet.Net, fleet.Nodes()
	sm.net.OnEvent(func(nd *sim.Node, at time.Time, ev mesh.Event) {
		if nd.ID() != 1 {
			return
		}
		switch e := ev.(type) {
		case status.NodeUpdated:
			if e.Source == status.SourceTelemetry {
				sm.lastFrame[e.Node] = at
			}
		case status.NodeOnline:
			if !e.Online {
				sm.offline[e.Node] = e.At
			}
		}
	})
	return sm
}

func TestStatusOnSimulatedMesh(t *testing.T) {
	const count = 25
	sm := newSimMesh(t, 1, count)
	start := sm.net.Now()
	sm.net.RunFor(3 * time.Minute)

	col := sm.collector
	model := col.Model()
	h := col.Health()
	if h.NodeCount != count || h.Online != count || h.Reported != count {
		t.Fatalf("health %+v", h)
	}
	// The topology is the root's real layout, not a star.
	var tree protocol.NodeTree
	sm.nodes[0].Do(func(_ time.Time, n *mesh.Node) { tree = n.Tree() })
	if top := model.Topology(); !top.Equal(tree) || model.MaxHops() < 2 {
		t.Fatalf("topology %v\nlayout %v", top, tree)
	}
	for _, nd := range sm.nodes[1:] {
		st, ok := model.Node(nd.ID())
		if !ok || !st.Online || st.Metrics.FirmwareVersion != "3.0.1" || st.Metrics.Uptime < 150 {
			t.Fatalf("node %d: %+v", nd.ID(), st)
		}
		if st.Metrics.LatencyUs == 0 || st.Metrics.Nodes != count-1 {
			t.Errorf("node %d: latency %d µs, nodes %d", nd.ID(), st.Metrics.LatencyUs, st.Metrics.Nodes)
		}
	}
	if st := col.Stats(); st.FramesRefused != 0 || st.FramesBad != 0 || st.Frames < uint64(4*(count-1)) {
		t.Errorf("collector stats %+v", st)
	}

	// A query for every node: all answer.
	id, err := col.Query(sm.net.Now(), nil, status.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var done *status.QueryDone
	sm.net.OnEvent(func(nd *sim.Node, _ time.Time, ev mesh.Event) {
		if q, ok := ev.(status.QueryDone); ok && q.ID == id {
			done = &q
		}
	})
	sm.net.RunFor(15 * time.Second)
	if done == nil || len(done.Answered) != count || len(done.Missing) != 0 {
		t.Fatalf("query %+v", done)
	}

	// Status traffic as a share of one ESP8266 radio (7.6 µs/byte), all
	// of it counted as if it crossed the root's radio: well under 2 %.
	var sum status.Traffic
	for _, r := range sm.reporters {
		sum = sum.Add(r.Traffic())
	}
	sum = sum.Add(col.Traffic())
	elapsed := sm.net.Now().Sub(start)
	share := status.LinkShare(sum.Bytes, elapsed, 8/7.6e-6)
	t.Logf("status traffic: %d packages, %d bytes in %v: %.3f%% of one radio", sum.Packages, sum.Bytes, elapsed, 100*share)
	if share <= 0 || share > 0.02 {
		t.Errorf("status traffic share %.4f", share)
	}
}

func TestStatusSimOfflineWithinFiveSeconds(t *testing.T) {
	sm := newSimMesh(t, 2, 12)
	sm.net.RunFor(2 * time.Minute)
	// A leaf crashes silently: its links stay up in its peers' eyes, so
	// only the missing telemetry tells.
	var leaf *sim.Node
	for _, nd := range sm.nodes[1:] {
		var subs int
		nd.Do(func(_ time.Time, n *mesh.Node) { subs = len(n.Tree().Subs) })
		if subs == 1 {
			leaf = nd
		}
	}
	if leaf == nil {
		t.Fatal("no leaf")
	}
	sm.net.CrashSilent(leaf)
	crashed := sm.net.Now()
	sm.net.RunFor(2 * time.Minute)
	last := sm.lastFrame[leaf.ID()]
	off, ok := sm.offline[leaf.ID()]
	if !ok {
		t.Fatalf("node %d never went offline", leaf.ID())
	}
	expected := last.Add(interval) // the frame that never came
	if off.Before(expected) || off.Sub(expected) > 5*time.Second {
		t.Fatalf("relative to the crash: last frame %v, offline %v; %v after the expected frame",
			last.Sub(crashed), off.Sub(crashed), off.Sub(expected))
	}
	active := sm.collector.Alerts().Active()
	found := false
	for _, a := range active {
		found = found || (a.Kind == alert.KindNodeOffline && a.Node == leaf.ID())
	}
	if !found {
		t.Fatalf("no node_offline alert: %+v", active)
	}

	// It comes back (a reboot): online again, and the model counts the
	// restart.
	sm.net.Restart(leaf)
	sm.net.RunFor(time.Minute)
	st, _ := sm.collector.Model().Node(leaf.ID())
	if !st.Online || st.Reboots != 1 {
		t.Fatalf("after restart %+v", st)
	}
}

func TestStatusSimDeterministic(t *testing.T) {
	run := func() ([32]byte, string) {
		sm := newSimMesh(t, 7, 10)
		sm.net.RunFor(90 * time.Second)
		sm.net.CrashSilent(sm.nodes[3])
		sm.net.RunFor(90 * time.Second)
		state, err := json.Marshal([]any{sm.collector.Model().Nodes(), sm.collector.Health(), sm.collector.Alerts()})
		if err != nil {
			t.Fatal(err)
		}
		return sm.net.TraceDigest(), string(state)
	}
	d1, s1 := run()
	d2, s2 := run()
	if d1 != d2 || s1 != s2 {
		t.Fatalf("two runs with the same seed differ:\n%s\n%s", s1, s2)
	}
}
