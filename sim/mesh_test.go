package sim

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// meshNet builds count mesh nodes wired in topology t.
func meshNet(t testing.TB, cfg Config, count int, topo Topology) (*Network, []*Node) {
	t.Helper()
	n := New(cfg)
	nodes, err := n.AddMeshNodes(count, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Build(topo, nodes, 0); err != nil {
		t.Fatal(err)
	}
	return n, nodes
}

// convergeLimit is generous: stock node sync converges in a few message
// round trips per hop, and the 60 s periodic sync repairs anything lost.
const convergeLimit = 5 * time.Minute

// longTests reports whether the slow variants (tens of seconds each) run:
// set MESHFLEET_SIM_LONG=1. They are skipped under -short as well.
func longTests() bool { return !testing.Short() && os.Getenv("MESHFLEET_SIM_LONG") != "" }

func TestConvergence(t *testing.T) {
	type tc struct {
		nodes int
		topo  Topology
		model Model
	}
	var cases []tc
	for _, size := range []int{2, 10} {
		for _, topo := range []Topology{TopologyRandom, TopologyChain, TopologyStar, TopologyTree} {
			cases = append(cases, tc{size, topo, ESP8266()})
		}
	}
	// A star beyond MAX_CONN overflows an ESP hub with node syncs (each
	// layout change sends one to every child), so big stars run on Ideal.
	cases = append(cases,
		tc{100, TopologyRandom, ESP8266()}, tc{100, TopologyChain, ESP8266()},
		tc{100, TopologyTree, ESP8266()}, tc{100, TopologyStar, Ideal()},
		tc{100, TopologyRandom, Ideal()})
	if !testing.Short() {
		// Stock node sync moves O(nodes²) bytes per layout change; on
		// ESP32 links the joins coalesce and 500 nodes take seconds.
		cases = append(cases, tc{500, TopologyRandom, ESP32()}, tc{500, TopologyTree, ESP32()})
	}
	if longTests() {
		// On Ideal links every join ripples separately: ~1 GB of node
		// sync JSON, ~20 s each.
		cases = append(cases, tc{500, TopologyRandom, Ideal()}, tc{500, TopologyStar, Ideal()})
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%d/%s", c.model.Name, c.nodes, c.topo), func(t *testing.T) {
			n, nodes := meshNet(t, Config{Seed: uint64(c.nodes), Model: c.model}, c.nodes, c.topo)
			if !n.RunUntil(n.Converged, convergeLimit) {
				missing := 0
				for _, nd := range nodes {
					missing += c.nodes - 1 - len(nd.NodeList(false))
				}
				t.Fatalf("not converged after %v: %d node-list entries missing", convergeLimit, missing)
			}
			// Converged means every list is exactly the other nodes.
			want := make([]uint32, 0, c.nodes)
			for _, nd := range nodes {
				want = append(want, nd.ID())
			}
			slices.Sort(want)
			for _, nd := range nodes {
				if got := nd.NodeList(true); !slices.Equal(got, want) {
					t.Fatalf("node %d lists %d nodes, want %d", nd.ID(), len(got), len(want))
				}
			}
			t.Logf("converged at %v, %d messages, %d bytes, %d queue drops",
				n.Elapsed(), n.Stats().Messages, n.Stats().Bytes, n.Stats().QueueDrops)
		})
	}
}

// delivery counts application messages per (payload, receiving node).
type delivery struct {
	got map[string]map[uint32]int
}

func watchDeliveries(n *Network) *delivery {
	d := &delivery{got: map[string]map[uint32]int{}}
	n.OnEvent(func(nd *Node, at time.Time, ev mesh.Event) {
		if m, ok := ev.(mesh.MessageReceived); ok {
			if d.got[m.Msg] == nil {
				d.got[m.Msg] = map[uint32]int{}
			}
			d.got[m.Msg][nd.ID()]++
		}
	})
	return d
}

func TestBroadcastAndSingleDelivery(t *testing.T) {
	// A star beyond MAX_CONN overflows an ESP hub's queue with node syncs
	// (a real ESP would not accept the stations), so the star has MAX_CONN
	// children of an ESP32.
	for _, c := range []struct {
		topo  Topology
		size  int
		model Model
	}{{TopologyRandom, 40, ESP8266()}, {TopologyChain, 40, ESP8266()}, {TopologyStar, 11, ESP32()}} {
		t.Run(string(c.topo), func(t *testing.T) {
			n, nodes := meshNet(t, Config{Seed: 42, Model: c.model}, c.size, c.topo)
			d := watchDeliveries(n)
			if !n.RunUntil(n.Converged, convergeLimit) {
				t.Fatal("not converged")
			}
			rng := n.Rand()
			type sent struct {
				msg      string
				from, to *Node // to is nil for a broadcast
			}
			var all []sent
			for k := range 30 {
				src := nodes[rng.IntN(len(nodes))]
				b := sent{fmt.Sprintf("bcast %d", k), src, nil}
				if err := src.SendBroadcast(b.msg, false); err != nil {
					t.Fatal(err)
				}
				all = append(all, b)
				s := sent{fmt.Sprintf("single %d", k), nodes[rng.IntN(len(nodes))], nodes[rng.IntN(len(nodes))]}
				if s.from != s.to {
					if err := s.from.SendSingle(s.to.ID(), s.msg); err != nil {
						t.Fatal(err)
					}
					all = append(all, s)
				}
				n.RunFor(100 * time.Millisecond)
			}
			n.RunFor(time.Minute)
			for _, s := range all {
				for _, nd := range nodes {
					want := 0
					if (s.to == nil && nd != s.from) || nd == s.to {
						want = 1 // broadcasts skip the sender (includeSelf false)
					}
					if got := d.got[s.msg][nd.ID()]; got != want {
						t.Errorf("%q from %d reached node %d %d times, want %d", s.msg, s.from.ID(), nd.ID(), got, want)
					}
				}
			}
			if err := nodes[0].SendSingle(12345, "nowhere"); err == nil {
				t.Error("single to an unknown node reported sent")
			}
		})
	}
}

func TestTimeSyncConverges(t *testing.T) {
	n, _ := meshNet(t, Config{Seed: 9, Model: Ideal()}, 30, TopologyRandom)
	initial := n.MaxTimeOffset()
	if initial < time.Second {
		t.Fatalf("random clock starts only %v apart; the test needs unsynchronised clocks", initial)
	}
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Fatal("not converged")
	}
	// Time sync runs every 10 s per link and ripples one hop per exchange.
	if !n.RunUntil(func() bool { return n.MaxTimeOffset() < time.Millisecond }, 10*time.Minute) {
		t.Fatalf("time offsets still %v apart after 10 minutes", n.MaxTimeOffset())
	}
	// And they stay together.
	for range 10 {
		n.RunFor(time.Minute)
		if off := n.MaxTimeOffset(); off >= time.Millisecond {
			t.Fatalf("time offsets drifted to %v at %v", off, n.Elapsed())
		}
	}
}

// nodesKnowing lists, for each node in nodes, whether its list has any of
// the ids of others.
func knowsAny(nd *Node, others []*Node) bool {
	list := nd.NodeList(false)
	for _, o := range others {
		if slices.Contains(list, o.ID()) {
			return true
		}
	}
	return false
}

func TestPartitionHealsMesh(t *testing.T) {
	n, nodes := meshNet(t, Config{Seed: 21, Model: ESP8266()}, 30, TopologyRandom)
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Fatal("not converged")
	}
	// A random tree is built in order, so nodes[:12] is a connected subtree.
	a, b := nodes[:12], nodes[12:]
	n.Partition(a, b)
	split := func() bool {
		for _, nd := range a {
			if knowsAny(nd, b) {
				return false
			}
		}
		for _, nd := range b {
			if knowsAny(nd, a) {
				return false
			}
		}
		return true
	}
	if !n.RunUntil(split, 10*time.Second) {
		t.Fatal("node lists did not shrink to the partitions")
	}
	for _, nd := range a {
		if len(nd.NodeList(false)) != len(a)-1 {
			t.Errorf("node %d in the connected half knows %d nodes, want %d", nd.ID(), len(nd.NodeList(false)), len(a)-1)
		}
	}
	n.RunFor(5 * time.Minute)
	if !split() {
		t.Fatal("nodes learnt of each other across the partition")
	}
	n.Heal()
	start := n.Now()
	if !n.RunUntil(n.Converged, time.Minute) {
		t.Fatal("mesh did not recover after heal")
	}
	// Stations wait DefaultRedial before dialling again.
	if d := n.Now().Sub(start); d < DefaultRedial {
		t.Errorf("recovered %v after heal, before the %v redial", d, DefaultRedial)
	}
}

// leafOf returns a node of nodes that has no children (only its uplink).
func leafOf(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	for i := len(nodes) - 1; i > 0; i-- {
		if len(nodes[i].Neighbours()) == 1 {
			return nodes[i]
		}
	}
	t.Fatal("no leaf")
	return nil
}

func TestSilentCrashDroppedWithinStockTimeouts(t *testing.T) {
	n, nodes := meshNet(t, Config{Seed: 5, Model: ESP8266()}, 30, TopologyRandom)
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Fatal("not converged")
	}
	n.RunFor(90 * time.Second) // some way into the node-sync cycle
	victim := leafOf(t, nodes)
	n.CrashSilent(victim)
	crashed := n.Now()
	// The parent notices at its next node sync (≤ 60 s) plus NODE_TIMEOUT
	// (10 s); the news then ripples through the tree in milliseconds.
	const limit = 60*time.Second + 10*time.Second + 5*time.Second
	if !n.RunUntil(func() bool { return n.CountKnowing(victim.ID()) == 0 }, limit) {
		t.Fatalf("%d nodes still list the crashed node after %v", n.CountKnowing(victim.ID()), limit)
	}
	if d := n.Now().Sub(crashed); d < 10*time.Second {
		t.Errorf("crash noticed after %v, before any NODE_TIMEOUT could expire", d)
	}
	if !n.Converged() {
		t.Error("the rest of the mesh is not one mesh")
	}
	n.Restart(victim)
	if !n.RunUntil(n.Converged, time.Minute) {
		t.Fatal("restarted node did not rejoin")
	}
}

func TestCrashOfRelaySplitsAndRejoins(t *testing.T) {
	n, nodes := meshNet(t, Config{Seed: 8, Model: ESP8266()}, 20, TopologyChain)
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Fatal("not converged")
	}
	relay := nodes[10]
	n.Crash(relay)
	// Its neighbours see the connections close; no one waits for a timeout.
	if !n.RunUntil(func() bool { return n.CountKnowing(relay.ID()) == 0 }, time.Second) {
		t.Fatalf("%d nodes still list the crashed relay after 1s", n.CountKnowing(relay.ID()))
	}
	if knowsAny(nodes[0], nodes[11:]) || knowsAny(nodes[19], nodes[:10]) {
		t.Error("the two halves still know each other")
	}
	n.Restart(relay)
	if !n.RunUntil(n.Converged, time.Minute) {
		t.Fatal("mesh did not re-form after the relay restarted")
	}
	if relay.Restarts() != 1 || len(relay.Neighbours()) != 2 {
		t.Errorf("relay: %d restarts, %d neighbours", relay.Restarts(), len(relay.Neighbours()))
	}
}

// A station connecting into a mesh it is already part of is refused at
// the first node sync (docs/protocol.md §4.3, "already connected"), so no loop
// forms.
func TestLoopsAndDuplicateLinksRefused(t *testing.T) {
	for _, model := range []Model{Ideal(), ESP8266()} {
		t.Run(model.Name, func(t *testing.T) {
			n, nodes := meshNet(t, Config{Seed: 3, Model: model}, 4, TopologyChain)
			reasons := map[string]int{}
			n.OnEvent(func(nd *Node, at time.Time, ev mesh.Event) {
				if d, ok := ev.(mesh.DroppedConnection); ok {
					reasons[d.Reason]++
				}
			})
			d := watchDeliveries(n)
			if !n.RunUntil(n.Converged, convergeLimit) {
				t.Fatal("not converged")
			}
			// Close the chain into a ring: 3 → 0.
			if err := n.Connect(nodes[3], nodes[0]); err != nil {
				t.Fatal(err)
			}
			// A new node joining two mesh nodes: the second link must go.
			extra, err := n.AddMeshNodes(1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Connect(extra[0], nodes[1]); err != nil {
				t.Fatal(err)
			}
			n.RunFor(time.Second)
			if err := n.Connect(extra[0], nodes[2]); err != nil {
				t.Fatal(err)
			}
			n.RunFor(2 * time.Minute)
			if reasons["already connected"] < 2 {
				t.Errorf("drop reasons %v, want two refused links", reasons)
			}
			if got := len(nodes[0].Neighbours()); got != 1 {
				t.Errorf("chain end has %d neighbours, want 1: the ring link survived", got)
			}
			if got := len(extra[0].Neighbours()); got != 1 {
				t.Errorf("new node has %d neighbours, want 1", got)
			}
			if !n.Converged() {
				t.Error("mesh not converged with the new node")
			}
			if err := nodes[0].SendBroadcast("once", false); err != nil {
				t.Fatal(err)
			}
			n.RunFor(10 * time.Second)
			for _, nd := range append(nodes[1:], extra[0]) {
				if c := d.got["once"][nd.ID()]; c != 1 {
					t.Errorf("node %d got the broadcast %d times", nd.ID(), c)
				}
			}
		})
	}
}

func meshTrace(t *testing.T, seed uint64) ([32]byte, Stats) {
	m := ESP8266()
	m.Link.Loss = 0.01
	m.Link.FlapInterval = 5 * time.Minute
	n, nodes := meshNet(t, Config{Seed: seed, Model: m}, 40, TopologyRandom)
	for k := range 60 {
		n.After(time.Duration(k)*5*time.Second, func() {
			src := nodes[n.Rand().IntN(len(nodes))]
			_ = src.SendBroadcast(fmt.Sprint("tick ", k), false)
		})
	}
	n.CrashSilent(nodes[7])
	n.After(2*time.Minute, func() { n.Restart(nodes[7]) })
	n.RunFor(10 * time.Minute)
	return n.TraceDigest(), n.Stats()
}

func TestSameSeedSameRun(t *testing.T) {
	a, sa := meshTrace(t, 1)
	b, sb := meshTrace(t, 1)
	c, _ := meshTrace(t, 2)
	if a != b {
		t.Errorf("same seed, different traces (%d vs %d messages)", sa.Messages, sb.Messages)
	}
	if a == c {
		t.Error("different seeds, same trace")
	}
	if sa.Lost == 0 || sa.Flaps == 0 {
		t.Errorf("stats %+v: loss and flaps should have happened", sa)
	}
}

// A node tree deeper than the JSON nesting limit (255 levels, two per hop:
// docs/protocol.md §1.3) cannot be parsed, so a chain converges up to 129 nodes
// (the longest node sync then carries 128 nodes, 255 levels) and never
// beyond: the ends of a 130-chain cannot learn of each other.
func TestChainDepthLimit(t *testing.T) {
	n, _ := meshNet(t, Config{Seed: 129, Model: Ideal()}, 129, TopologyChain)
	if !n.RunUntil(n.Converged, convergeLimit) {
		t.Error("129-node chain did not converge")
	}
	n, nodes := meshNet(t, Config{Seed: 130, Model: Ideal()}, 130, TopologyChain)
	if n.RunUntil(n.Converged, 2*time.Minute) {
		t.Fatal("130-node chain converged past the nesting limit")
	}
	if knowsAny(nodes[0], nodes[129:]) || knowsAny(nodes[129], nodes[:1]) {
		t.Error("the ends of a 130-chain know each other")
	}
}

// SetRadio shrinks one node's radio queue: what does not fit is dropped
// from then on, and the old radio back ends the drops.
func TestSetRadioOverflowsTheQueue(t *testing.T) {
	net := New(Config{Seed: 3, Model: ESP8266()})
	nodes, err := net.AddMeshNodes(3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.Chain(nodes); err != nil {
		t.Fatal(err)
	}
	if !net.RunUntil(net.Converged, time.Minute) {
		t.Fatal("no convergence")
	}
	hub := nodes[1]
	old := hub.Radio()
	small := old
	small.QueueBytes = 64
	net.SetRadio(hub, small)
	before := hub.Stats().QueueDrops
	big := strings.Repeat("x", 200)
	if err := hub.SendBroadcast(big, false); err != nil {
		t.Fatal(err)
	}
	net.RunFor(time.Second)
	if hub.Stats().QueueDrops == before {
		t.Fatal("a 200-byte broadcast fit a 64-byte queue")
	}
	net.SetRadio(hub, old)
	before = hub.Stats().QueueDrops
	if err := hub.SendBroadcast(big, false); err != nil {
		t.Fatal(err)
	}
	net.RunFor(time.Second)
	if hub.Stats().QueueDrops != before || hub.Radio() != old {
		t.Fatalf("drops with the old radio back: %d → %d", before, hub.Stats().QueueDrops)
	}
}

// A node whose mesh time jumps either way is pulled back by time sync: a
// leaf adopts its parent's time, and a relay its uplink's, which it then
// passes on to the children that took the jump from it.
func TestMeshTimeJumpPulledBack(t *testing.T) {
	for _, leaf := range []bool{true, false} {
		n, nodes := meshNet(t, Config{Seed: 5, Model: ESP8266()}, 20, TopologyTree)
		if !n.RunUntil(func() bool { return n.Converged() && n.MaxTimeOffset() < 5*time.Millisecond }, 10*time.Minute) {
			t.Fatalf("not converged with synced clocks: offsets %v apart", n.MaxTimeOffset())
		}
		nd := leafOf(t, nodes)
		if !leaf {
			nd = relayOf(t, nodes)
		}
		for _, d := range []time.Duration{7 * time.Minute, -7 * time.Minute} {
			if err := nd.Do(func(now time.Time, m *mesh.Node) { m.ShiftTime(now, d) }); err != nil {
				t.Fatal(err)
			}
			if off := n.MaxTimeOffset(); off < 6*time.Minute {
				t.Fatalf("leaf %v: a jump of %s leaves offsets %v apart", leaf, d, off)
			}
			start := n.Elapsed()
			if !n.RunUntil(func() bool { return n.MaxTimeOffset() < 5*time.Millisecond }, 30*time.Second) {
				t.Errorf("leaf %v: %s after a jump of %s, offsets still %v apart", leaf, 30*time.Second, d, n.MaxTimeOffset())
			}
			t.Logf("leaf %v: a jump of %s pulled back in %s", leaf, d, n.Elapsed()-start)
		}
	}
}

// relayOf returns a node of nodes, not the first, with children.
func relayOf(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	for _, nd := range nodes[1:] {
		if len(nd.Neighbours()) > 1 {
			return nd
		}
	}
	t.Fatal("no relay")
	return nil
}
