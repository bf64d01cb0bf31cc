package status

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/status/telemetry"
)

// relayMesh is root 1 (collector) – relay 2 – {3, 4, 5}, and 6 under 3:
// 2 and 3 aggregate, every node but the root reports.
type relayMesh struct {
	*fakeMesh
	col    *Collector
	aggs   map[uint32]*Aggregator
	reps   map[uint32]*Reporter
	mem    map[uint32]*memory
	arrive map[uint32][]arrival // the frames of each node that reached the root
}

// arrival is a frame reaching the root: when, and the node time its node
// wrote into it.
type arrival struct {
	at time.Time
	ts uint32
}

func newRelayMesh(t *testing.T, rcfg ReporterConfig, aggregating ...uint32) *relayMesh {
	m := newFakeMesh(t)
	rm := &relayMesh{fakeMesh: m, aggs: map[uint32]*Aggregator{}, reps: map[uint32]*Reporter{},
		mem: map[uint32]*memory{}, arrive: map[uint32][]arrival{}}
	rm.col = NewCollector(CollectorConfig{}, m.now)
	m.add(1, true, rm.col)
	for _, id := range []uint32{2, 3, 4, 5, 6} {
		rm.addNode(id, rcfg, aggregating)
	}
	m.drop = func(from, to uint32, msg []byte) bool {
		if to != 1 {
			return false
		}
		p, _ := Decode(msg)
		switch p := p.(type) {
		case *TelemetryPackage:
			fh, _ := telemetry.ParseHeader(p.Frame)
			rm.arrive[p.From] = append(rm.arrive[p.From], arrival{m.now, fh.Timestamp})
		case *TelemetryBundle:
			for _, e := range p.Entries {
				fh, _ := telemetry.ParseHeader(e.Frame)
				rm.arrive[e.Node] = append(rm.arrive[e.Node], arrival{m.now, fh.Timestamp})
			}
		}
		return false
	}
	m.link(1, 2)
	m.link(2, 3)
	m.link(2, 4)
	m.link(2, 5)
	m.link(3, 6)
	return rm
}

func (rm *relayMesh) addNode(id uint32, rcfg ReporterConfig, aggregating []uint32) {
	rm.mem[id] = &memory{free: 30_000 + id*1000}
	cfg := rcfg
	cfg.Providers = reporterProviders(rm.mem[id])
	var plugins []any
	for _, a := range aggregating {
		if a == id {
			agg := NewAggregator(AggregatorConfig{})
			rm.aggs[id] = agg
			cfg.Aggregator = agg
			plugins = append(plugins, agg)
		}
	}
	r := NewReporter(cfg, rm.now)
	rm.reps[id] = r
	h := rm.nodes[id]
	if h == nil {
		h = rm.add(id, false)
	} else {
		h.plugins = nil
	}
	for _, p := range plugins {
		h.use(p.(*Aggregator))
	}
	h.use(r)
}

// The root hears every node of an aggregating subtree through bundles
// from the relay below it, and holds exactly the values each node sent.
func TestAggregatorBundlesSubtree(t *testing.T) {
	rm := newRelayMesh(t, ReporterConfig{Interval: time.Second}, 2, 3)
	rm.runFor(2 * time.Minute)
	var fromLeaves int
	for _, msg := range rm.nodes[2].sent {
		if hd, _ := protocol.ParseHeader(msg); hd.Type == TypeTelemetry && hd.From != 2 {
			fromLeaves++
		}
	}
	bundles := sentOfType[*TelemetryBundle](t, rm.nodes[2], TypeTelemetryBundle)
	if len(bundles) == 0 || fromLeaves != 0 {
		t.Fatalf("relay 2 sent %d bundles and passed on %d single frames", len(bundles), fromLeaves)
	}
	st := rm.col.Stats()
	if st.Bundles == 0 || st.FramesRefused != 0 || st.FramesMissed != 0 || st.FramesBad != 0 {
		t.Fatalf("collector %+v", st)
	}
	var sent uint64
	for _, id := range []uint32{2, 3, 4, 5, 6} {
		sent += framesSent(rm.reps[id])
		ns, ok := rm.col.Model().Node(id)
		if !ok || !ns.Online {
			t.Fatalf("node %d not online at the root", id)
		}
		// The model holds what the node measured for its last frame.
		if want := rm.mem[id].free; ns.Metrics.FreeMemory != want || ns.Metrics.FirmwareVersion != "2.1.0" {
			t.Errorf("node %d: root has %d bytes free, %q", id, ns.Metrics.FreeMemory, ns.Metrics.FirmwareVersion)
		}
	}
	waiting := uint64(len(rm.aggs[2].pending) + len(rm.aggs[3].pending))
	if st.Frames+waiting != sent {
		t.Errorf("root accepted %d frames and %d wait at relays; the nodes sent %d", st.Frames, waiting, sent)
	}
	if a := rm.aggs[3].Stats(); a.BundlesOut+a.SinglesOut == 0 || a.Dropped != 0 {
		t.Errorf("relay 3: %+v", a)
	}
	if a := rm.aggs[2].Stats(); a.BundlesIn == 0 && rm.aggs[3].Stats().BundlesOut > 0 {
		t.Errorf("relay 2 took none of relay 3's bundles: %+v", a)
	}
}

// A frame waits at most its hold in all relays together: an urgent frame
// from node 6 (two aggregating relays up) reaches the root within
// UrgentHold, a regular one within RegularHold.
func TestAggregatorHoldDoesNotGrowWithDepth(t *testing.T) {
	rm := newRelayMesh(t, ReporterConfig{Interval: 10 * time.Second}, 2, 3)
	rm.runFor(time.Minute)
	before := len(rm.arrive[6])
	sentAt := rm.now
	rm.mem[6].free = 1000 // LOW_MEMORY: a priority frame at the next check
	rm.runFor(1500 * time.Millisecond)
	arr := rm.arrive[6][before:]
	if len(arr) == 0 {
		t.Fatal("no frame of node 6 after its memory fell")
	}
	if d := arr[0].at.Sub(sentAt); d > time.Second+DefaultUrgentHold {
		t.Errorf("priority frame reached the root %v after the fall (check 1 s + hold %v)", d, DefaultUrgentHold)
	}
	// Regular frames: every 10 s from node 6, each at the root within
	// RegularHold of its sending.
	rm.mem[6].free = 36_000
	rm.runFor(time.Minute)
	frames := framesSent(rm.reps[6])
	if got := uint64(len(rm.arrive[6])); got != frames {
		t.Fatalf("node 6 sent %d frames, root took %d", frames, got)
	}
	for _, a := range rm.arrive[6][len(rm.arrive[6])-4:] {
		if held := a.at.Sub(epoch) - time.Duration(a.ts)*time.Microsecond; held > DefaultRegularHold || held < 0 {
			t.Errorf("regular frame held %v on its way", held)
		}
	}
}

// A child that leaves while its frame waits at the relay: the frame is
// dropped, so the root never hears the departed node after it left.
func TestAggregatorDropsFramesOfNodesThatLeft(t *testing.T) {
	rm := newRelayMesh(t, ReporterConfig{Interval: 5 * time.Second}, 2)
	rm.runFor(30 * time.Second)
	agg := rm.aggs[2]
	// Node 4's next frame reaches relay 2 and waits; then 4 goes away.
	rm.runUntil(func() bool { return len(agg.pending) == 1 && agg.pending[0].entry.Node == 4 })
	if len(agg.pending) == 0 {
		t.Fatal("nothing waiting at the relay")
	}
	heard := len(rm.arrive[4])
	rm.setUp(4, false)
	rm.runFor(30 * time.Second)
	if got := len(rm.arrive[4]); got != heard {
		t.Errorf("root heard node 4 %d more times after it left", got-heard)
	}
	if agg.Stats().Dropped == 0 {
		t.Error("relay dropped nothing")
	}
	if ns, _ := rm.col.Model().Node(4); ns.Online {
		t.Error("node 4 still online at the root 30 s after it left")
	}
}

// A relay that restarts loses what it held and sends nothing old again:
// every frame the root takes after the restart was written after the
// relay went off (a relay holds frames, never values), and
// the relay's subtree keeps reporting through the new relay.
func TestAggregatorRestartSendsNothingOld(t *testing.T) {
	rm := newRelayMesh(t, ReporterConfig{Interval: 2 * time.Second}, 2)
	rm.runFor(30 * time.Second)
	rm.runUntil(func() bool { return len(rm.aggs[2].pending) > 0 })
	if len(rm.aggs[2].pending) == 0 {
		t.Fatal("nothing waiting at the relay")
	}
	off := rm.now
	rm.setUp(2, false)
	rm.runFor(time.Second)
	rm.addNode(2, ReporterConfig{Interval: 2 * time.Second}, []uint32{2})
	rm.setUp(2, true)
	seen := map[uint32]int{}
	for id, at := range rm.arrive {
		seen[id] = len(at)
	}
	rm.runFor(30 * time.Second)
	for _, id := range []uint32{3, 4, 5, 6} {
		for _, a := range rm.arrive[id][seen[id]:] {
			if a.ts < rm.nodes[id].NodeTime(off) {
				t.Errorf("node %d: a frame written at %d µs, before the relay went off (%d µs), came after", id, a.ts, rm.nodes[id].NodeTime(off))
			}
		}
		if ns, _ := rm.col.Model().Node(id); !ns.Online || ns.LastSeen.Before(off.Add(time.Second)) {
			t.Errorf("node %d not heard through the new relay: %+v", id, ns.LastSeen)
		}
	}
}

// Mixed subtree: relay 2 bundles, relay 3 does not (a stock or esp/ node):
// node 6's frames pass 3 untouched, 2 bundles them, the root hears all.
func TestAggregatorMixedRelays(t *testing.T) {
	rm := newRelayMesh(t, ReporterConfig{Interval: time.Second}, 2)
	rm.runFor(time.Minute)
	for _, msg := range rm.nodes[3].sent {
		if hd, _ := protocol.ParseHeader(msg); hd.Type == TypeTelemetryBundle {
			t.Fatal("a relay without an aggregator sent a bundle")
		}
	}
	for _, id := range []uint32{2, 3, 4, 5, 6} {
		if ns, ok := rm.col.Model().Node(id); !ok || !ns.Online {
			t.Errorf("node %d not online", id)
		}
	}
	if rm.col.Stats().FramesMissed != 0 || rm.col.Stats().Bundles == 0 {
		t.Errorf("collector %+v", rm.col.Stats())
	}
}

// Change-driven reporting: with nothing changing the interval doubles up
// to MaxInterval, each frame stating it; a step of free memory goes out
// at the next check with the priority flag, a smaller move does not.
func TestReporterChangeDriven(t *testing.T) {
	rm := newRelayMesh(t, ReporterConfig{Interval: time.Second, MaxInterval: 30 * time.Second})
	rm.runFor(2*time.Minute + 3*time.Second) // just after a regular frame (at 122 s)
	dec := telemetry.NewDecoder()
	var stated []uint16
	for _, p := range sentOfType[*TelemetryPackage](t, rm.nodes[4], TypeTelemetry) {
		f, err := dec.Decode(4, p.Frame)
		if err != nil {
			t.Fatal(err)
		}
		stated = append(stated, f.Values.Interval)
	}
	want := []uint16{1, 2, 4, 8, 16, 30, 30}
	if len(stated) < len(want) {
		t.Fatalf("stated intervals %v", stated)
	}
	for i, w := range want {
		if stated[i] != w {
			t.Fatalf("stated intervals %v, want %v...", stated, want)
		}
	}
	n := len(rm.nodes[4].sent)
	rm.mem[4].free -= DefaultChangeSteps.FreeMemory - 1
	rm.runFor(5 * time.Second)
	if len(rm.nodes[4].sent) != n {
		t.Fatalf("a move under the step sent %d frames", len(rm.nodes[4].sent)-n)
	}
	rm.mem[4].free -= 1
	changedAt := rm.now
	rm.runFor(1100 * time.Millisecond)
	frames := sentOfType[*TelemetryPackage](t, rm.nodes[4], TypeTelemetry)
	last := frames[len(frames)-1]
	h, _ := telemetry.ParseHeader(last.Frame)
	if len(rm.nodes[4].sent) != n+1 || !h.Priority {
		t.Fatalf("after a step: %d frames, priority %v", len(rm.nodes[4].sent)-n, h.Priority)
	}
	if ns, _ := rm.col.Model().Node(4); ns.Metrics.FreeMemory != rm.mem[4].free || ns.LastSeen.Sub(changedAt) > time.Second {
		t.Errorf("root has %d free at %v, node %d since %v", ns.Metrics.FreeMemory, ns.LastSeen, rm.mem[4].free, changedAt)
	}
	// Then a frame one Interval later to confirm the change, stating a
	// quarter of the interval it interrupted (30 s / 4, whole seconds);
	// the next regular frame comes then.
	rm.runFor(time.Second)
	dec = telemetry.NewDecoder()
	var f telemetry.Frame
	for _, p := range sentOfType[*TelemetryPackage](t, rm.nodes[4], TypeTelemetry) {
		f, _ = dec.Decode(4, p.Frame)
	}
	if len(rm.nodes[4].sent) != n+2 || f.Values.Interval != 7 {
		t.Fatalf("%d frames after the change, the last states %d s", len(rm.nodes[4].sent)-n, f.Values.Interval)
	}
	rm.runFor(6 * time.Second)
	if len(rm.nodes[4].sent) != n+2 {
		t.Errorf("a frame before the stated interval")
	}
	rm.runFor(1100 * time.Millisecond)
	if len(rm.nodes[4].sent) != n+3 {
		t.Errorf("no regular frame the stated interval after the change")
	}
}

// framesSent counts the frames a reporter sent, alone or into bundles.
func framesSent(r *Reporter) uint64 {
	var n uint64
	tr := r.Traffic()
	for _, e := range tr.perType() {
		if e.Type == TypeTelemetry || e.Type == TypeTelemetryBundle {
			n += e.Packages
		}
	}
	return n
}

// runUntil moves the clock in 10 ms steps until cond holds (at most 10 s).
func (rm *relayMesh) runUntil(cond func() bool) {
	for range 1000 {
		if cond() {
			return
		}
		rm.runFor(10 * time.Millisecond)
	}
}

// Property, at the collector: the same frames, sent alone to one
// collector and in bundles of any grouping to another, leave both with the
// same model of every node, the same counts of accepted, missed, stale
// and refused frames — whatever the losses and keyframe requests.
func TestCollectorBundledEqualsSingle(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 704))
		now := epoch
		single := NewCollector(CollectorConfig{}, now)
		bundled := NewCollector(CollectorConfig{}, now)
		// Each on a host of its own, alone: its queries and keyframe
		// requests go nowhere.
		newFakeMesh(t).add(rootID, true, single)
		newFakeMesh(t).add(rootID, true, bundled)
		nodes := []uint32{11, 12, 13, 14, 15}
		enc := map[uint32]*telemetry.Encoder{}
		vals := map[uint32]telemetry.Values{}
		for _, n := range nodes {
			enc[n] = telemetry.NewEncoder(telemetry.EncoderConfig{KeyframeEvery: 1 + rng.IntN(10)})
			vals[n] = telemetry.Values{Uptime: 1, FreeMemory: 30_000 + uint32(rng.IntN(9000)), Nodes: 5, Interval: 2, FirmwareHash: 7}
		}
		var pending []telemetry.BundleEntry
		flush := func() {
			if len(pending) == 0 {
				return
			}
			b := TelemetryBundle{From: 99, Dest: rootID, Entries: pending}
			bundled.handle(now, TypeTelemetryBundle, b.AppendJSON(nil))
			pending = nil
		}
		for i := range 300 {
			now = now.Add(time.Duration(rng.IntN(800)) * time.Millisecond)
			n := nodes[rng.IntN(len(nodes))]
			v := vals[n]
			v.Uptime += uint32(rng.IntN(3))
			v.MessagesTx += uint32(rng.IntN(40))
			if rng.IntN(5) == 0 {
				v.FreeMemory = uint32(int64(v.FreeMemory) + int64(rng.IntN(2000)) - 1000)
				v.Alerts = uint8(rng.IntN(4))
			}
			vals[n] = v
			if rng.IntN(40) == 0 {
				enc[n].RequestKeyframe()
			}
			frame := enc[n].Encode(now, uint32(i), v, rng.IntN(6) == 0)
			if rng.IntN(12) == 0 {
				continue // lost on the way, for both
			}
			single.handle(now, TypeTelemetry, (&TelemetryPackage{From: n, Dest: rootID, Frame: frame}).AppendJSON(nil))
			pending = append(pending, telemetry.BundleEntry{Node: n, Frame: frame})
			if rng.IntN(4) == 0 {
				flush()
			}
		}
		flush()
		ss, bs := single.Stats(), bundled.Stats()
		ss.Bundles, ss.KeyframeRequests, bs.KeyframeRequests = bs.Bundles, 0, 0
		if seed == 0 {
			t.Logf("alone and bundled: %+v", ss)
		}
		if ss != bs || ss.Frames == 0 || ss.FramesMissed == 0 {
			t.Fatalf("seed %d: stats alone %+v, bundled %+v", seed, ss, bs)
		}
		for _, n := range nodes {
			a, okA := single.Model().Node(n)
			b, okB := bundled.Model().Node(n)
			if okA != okB || a.Metrics.Values() != b.Metrics.Values() {
				t.Fatalf("seed %d node %d: alone %+v, bundled %+v", seed, n, a.Metrics.Values(), b.Metrics.Values())
			}
		}
	}
}
