package mesh

// Rules beyond stock painlessMesh for hostile or broken neighbours
// (docs/protocol.md, "Rules meshfleet enforces beyond stock painlessMesh").

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// attach gives tn a raw neighbour of node n on connection c (the other end,
// c+1, goes to a node outside the net that ignores what it gets): the test
// plays that neighbour by calling n.Receive itself.
func (tn *testNet) attach(n *Node, c ConnID, station bool) {
	sink := New(Config{ID: 0xdead}, tn.now)
	tn.ends[c] = &end{node: n, peer: c + 1}
	tn.ends[c+1] = &end{node: sink, peer: c}
	n.Connect(tn.now, c, station)
	tn.settle()
}

// say makes the raw neighbour on c send msg to its node.
func (tn *testNet) say(c ConnID, msg string) {
	tn.ends[c].node.Receive(tn.now, c, []byte(msg))
	tn.settle()
}

func dropReasons(tn *testNet, id uint32) []string {
	var out []string
	for _, d := range eventsOf[DroppedConnection](tn, id) {
		out = append(out, d.Reason)
	}
	return out
}

// A neighbour whose sync lists the receiver inside its own subtree claims
// a loop. Stock painlessMesh accepts it and relays it, and the next node
// closes its link to the receiver as invalid (Neighbour::validSubs), so
// one connection partitions the mesh. The receiver refuses it instead.
func TestNodeSyncLoopClaimRefused(t *testing.T) {
	tn := newTestNet(t)
	ns := tn.chain(1, 2)
	tn.attach(ns[1], 100, false)
	tn.say(100, `{"nodeId":66,"subs":[{"nodeId":67,"subs":[{"nodeId":2}]}],"type":5,"dest":0,"from":66}`)
	if got := dropReasons(tn, 2); !slices.Equal(got, []string{"invalid sync"}) {
		t.Fatalf("node 2 drops %v, want the loop claim refused as invalid sync", got)
	}
	tn.run(time.Minute)
	if got := dropReasons(tn, 1); len(got) != 0 {
		t.Errorf("node 1 dropped its link to node 2: %v", got)
	}
	if !ns[0].IsConnected(2) || ns[0].IsConnected(66) || ns[1].IsConnected(66) {
		t.Errorf("layouts: node 1 %s, node 2 %s", ns[0].Tree(), ns[1].Tree())
	}

	// The same claim from a neighbour already synced closes it too.
	tn.attach(ns[1], 200, false)
	tn.say(200, `{"nodeId":68,"type":5,"dest":0,"from":68}`)
	if !ns[0].IsConnected(68) {
		t.Fatal("node 68 not synced")
	}
	tn.say(200, `{"nodeId":68,"subs":[{"nodeId":69,"subs":[{"nodeId":2}]}],"type":5,"dest":2,"from":68}`)
	if got := dropReasons(tn, 2); !slices.Equal(got, []string{"invalid sync", "invalid sync"}) {
		t.Fatalf("node 2 drops %v", got)
	}
	tn.run(time.Minute)
	if got := dropReasons(tn, 1); len(got) != 0 || !ns[0].IsConnected(2) {
		t.Errorf("node 1 dropped its link to node 2: %v", got)
	}
}

// A neighbour that lists a victim's id as its child must not lock the
// real victim out: the victim's own connection is accepted and wins, the
// claim is dropped from the layout, and the victim's traffic goes to it.
func TestNodeSyncDirectConnectionWinsOverClaim(t *testing.T) {
	for _, order := range []string{"claim first", "victim first"} {
		t.Run(order, func(t *testing.T) {
			tn := newTestNet(t)
			gw := tn.add(1, 0)
			victim := tn.add(7, 0)
			claim := func() {
				tn.attach(gw, 100, false)
				tn.say(100, `{"nodeId":66,"subs":[{"nodeId":7,"subs":[{"nodeId":8}]},{"nodeId":9}],"type":5,"dest":0,"from":66}`)
			}
			if order == "claim first" {
				claim()
				if !gw.IsConnected(7) {
					t.Fatal("claim not taken")
				}
				tn.connect(victim, gw)
			} else {
				tn.connect(victim, gw)
				claim()
			}
			// Less than the AP side's first request (10 s): the raw
			// neighbour never answers one.
			tn.run(5 * time.Second)
			if got := dropReasons(tn, 1); len(got) != 0 {
				t.Fatalf("gateway drops %v", got)
			}
			if got := dropReasons(tn, 7); len(got) != 0 {
				t.Fatalf("victim drops %v", got)
			}
			if got := gw.NodeList(false); !slices.Equal(got, []uint32{7, 9, 66}) {
				t.Errorf("gateway node list %v, want [7 9 66]", got)
			}
			want := `{"nodeId":1,"subs":[{"nodeId":66,"subs":[{"nodeId":9}]},{"nodeId":7}]}`
			if order == "victim first" {
				want = `{"nodeId":1,"subs":[{"nodeId":7},{"nodeId":66,"subs":[{"nodeId":9}]}]}`
			}
			if got := gw.Tree().String(); got != want {
				t.Errorf("gateway tree %s, want %s", got, want)
			}
			if !gw.SendSingle(tn.now, 7, "to the victim") {
				t.Fatal("no route to 7")
			}
			tn.settle()
			if got := tn.received(7); len(got) != 1 || got[0].Msg != "to the victim" {
				t.Errorf("victim received %v", got)
			}
		})
	}
}

// A node sync over the layout limits (node count, bytes) is refused and
// the connection closed, for a new and for a synced neighbour; one at the
// limits is taken.
func TestNodeSyncLayoutLimits(t *testing.T) {
	// tree is a node sync from node from with n nodes: from and n-1 leaves.
	tree := func(from uint32, n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `{"nodeId":%d`, from)
		if n > 1 {
			b.WriteString(`,"subs":[`)
			for i := range n - 1 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"nodeId":%d}`, from*100000+uint32(i))
			}
			b.WriteByte(']')
		}
		fmt.Fprintf(&b, `,"type":5,"dest":0,"from":%d}`, from)
		return b.String()
	}
	t.Run("nodes", func(t *testing.T) {
		// The limit counts the whole layout, ourselves included.
		p := newProbe(t, Config{ID: 1, MaxLayoutNodes: 50})
		if rd := p.syncWith(4, false, tree(2, 49)); len(rd.Close) != 0 || !p.n.IsConnected(2) {
			t.Fatalf("49 nodes refused: close %v", rd.Close)
		}
		rd := p.recv(4, tree(2, 50))
		if !slices.Equal(rd.Close, []ConnID{4}) || p.n.IsConnected(2) {
			t.Fatalf("50 nodes: close %v", rd.Close)
		}
		if d := eventsOf[DroppedConnection](&testNet{events: map[uint32][]Event{1: rd.Events}}, 1); len(d) != 1 || d[0].Reason != "layout too large" {
			t.Errorf("events %v", rd.Events)
		}
		if rd := p.syncWith(5, false, tree(3, 50)); !slices.Equal(rd.Close, []ConnID{5}) {
			t.Errorf("50 nodes at first sync: close %v", rd.Close)
		}
		if got := p.n.Stats().NodeSyncsRefused; got != 2 {
			t.Errorf("NodeSyncsRefused = %d, want 2", got)
		}
	})
	t.Run("whole layout", func(t *testing.T) {
		// Several connections may not add up to more than one may announce.
		p := newProbe(t, Config{ID: 1, MaxLayoutNodes: 50})
		if rd := p.syncWith(4, false, tree(2, 30)); len(rd.Close) != 0 {
			t.Fatalf("30 nodes refused: close %v", rd.Close)
		}
		if rd := p.syncWith(5, false, tree(3, 19)); len(rd.Close) != 0 {
			t.Fatalf("1 + 30 + 19 nodes refused: close %v", rd.Close)
		}
		if rd := p.syncWith(6, false, tree(5, 1)); !slices.Equal(rd.Close, []ConnID{6}) {
			t.Errorf("a 51st node: close %v", rd.Close)
		}
		if got := len(p.n.NodeList(true)); got != 50 {
			t.Errorf("%d nodes in the layout, want 50", got)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		msg := tree(2, 40)
		p := newProbe(t, Config{ID: 1, MaxLayoutBytes: len(msg) - 1})
		if rd := p.syncWith(4, false, msg); !slices.Equal(rd.Close, []ConnID{4}) {
			t.Errorf("%d bytes over a %d-byte limit: close %v", len(msg), len(msg)-1, rd.Close)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		// The attack of issue 8: 800 KB listing 40,000 fake ids.
		p := newProbe(t, Config{ID: 1})
		if rd := p.syncWith(4, false, tree(2, 40000)); !slices.Equal(rd.Close, []ConnID{4}) || len(p.n.NodeList(false)) != 0 {
			t.Errorf("40,000 nodes: close %v", rd.Close)
		}
		// A realistic large mesh is far below the limits.
		if rd := p.syncWith(5, false, tree(3, 2000)); len(rd.Close) != 0 || len(p.n.NodeList(false)) != 2000 {
			t.Errorf("2,000 nodes: close %v", rd.Close)
		}
		if c := p.n.Config(); c.MaxLayoutNodes != DefaultMaxLayoutNodes || c.MaxLayoutBytes != DefaultMaxLayoutBytes {
			t.Errorf("effective limits %d nodes, %d bytes", c.MaxLayoutNodes, c.MaxLayoutBytes)
		}
	})
}

// NODE_TIMEOUT is per connection: a peer that never answers is closed 10 s
// after our first unanswered request even while another connection
// changes the layout every 5 s (stock painlessMesh restarts the timeout on
// every request, so such churn keeps a silent peer forever).
func TestNodeSyncSilentPeerTimesOutDespiteChurn(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	// The silent peer synced once (its request) and never answers ours.
	p.n.Connect(p.now, 3, true)
	p.recv(3, `{"nodeId":30,"type":5,"dest":0,"from":30}`)
	p.n.Ready()
	var closedAt time.Duration
	for k := range 12 {
		c := ConnID(10 + k)
		p.syncWith(c, false, fmt.Sprintf(`{"nodeId":%d,"type":5,"dest":0,"from":%d}`, 100+k, 100+k))
		rd := p.advance(5 * time.Second)
		if slices.Contains(rd.Close, 3) {
			closedAt = p.now.Sub(testEpoch)
			break
		}
		p.n.Disconnect(p.now, c)
		if rd := p.n.Ready(); slices.Contains(rd.Close, 3) {
			closedAt = p.now.Sub(testEpoch)
			break
		}
	}
	if closedAt == 0 || closedAt > 15*time.Second {
		t.Fatalf("silent peer closed at %v, want by 15 s (NODE_TIMEOUT after its first request)", closedAt)
	}
}

// A burst of connections that sync and then stop reading, then all close:
// each change is sent to a neighbour only when it has answered the request
// before, so the cost stays about N requests per burst, not N per change
// (which made it grow as N³ in bytes).
func TestNodeSyncBurstCostIsLinear(t *testing.T) {
	const peers = 200
	p := newProbe(t, Config{ID: 1})
	requests, bytes := 0, 0
	// The driver takes the outputs after every input.
	count := func() {
		for _, o := range p.n.Ready().Messages {
			bytes += len(o.Data)
			if headerOf(string(o.Data)).Type == protocol.TypeNodeSyncRequest {
				requests++
			}
		}
	}
	for i := range peers {
		id := 1000 + i
		p.n.Connect(p.now, ConnID(i+1), false)
		p.n.Receive(p.now, ConnID(i+1), fmt.Appendf(nil, `{"nodeId":%d,"type":5,"dest":0,"from":%d}`, id, id))
		count()
	}
	if got := len(p.n.NodeList(false)); got != peers {
		t.Fatalf("%d peers synced, want %d", got, peers)
	}
	for i := range peers {
		p.n.Disconnect(p.now, ConnID(i+1))
		count()
	}
	t.Logf("%d peers join and leave: %d node-sync requests, %d bytes queued", peers, requests, bytes)
	if requests > 2*peers || bytes > 4<<20 {
		t.Errorf("%d requests, %d bytes: want at most %d requests and 4 MiB", requests, bytes, 2*peers)
	}
}

func TestWithoutBranches(t *testing.T) {
	tr := protocol.NodeTree{NodeID: 1, Subs: []protocol.NodeTree{
		{NodeID: 2, Subs: []protocol.NodeTree{{NodeID: 7, Subs: []protocol.NodeTree{{NodeID: 8}}}, {NodeID: 3}}},
		{NodeID: 4},
	}}
	for _, tc := range []struct {
		drop []uint32
		want string
	}{
		{nil, `{"nodeId":1,"subs":[{"nodeId":2,"subs":[{"nodeId":7,"subs":[{"nodeId":8}]},{"nodeId":3}]},{"nodeId":4}]}`},
		{[]uint32{7}, `{"nodeId":1,"subs":[{"nodeId":2,"subs":[{"nodeId":3}]},{"nodeId":4}]}`},
		{[]uint32{8, 4}, `{"nodeId":1,"subs":[{"nodeId":2,"subs":[{"nodeId":7},{"nodeId":3}]}]}`},
		{[]uint32{2}, `{"nodeId":1,"subs":[{"nodeId":4}]}`},
	} {
		before := tr.String()
		got := withoutBranches(tr, func(id uint32) bool { return slices.Contains(tc.drop, id) }).String()
		if got != tc.want {
			t.Errorf("drop %v: %s, want %s", tc.drop, got, tc.want)
		}
		if tr.String() != before {
			t.Fatalf("drop %v changed the input: %s", tc.drop, tr)
		}
	}
}

// A change held back for an unanswered request goes out at most
// layoutHold after that request, so a lost reply does not hold the change
// until NODE_TIMEOUT closes the link (stock timing: no repeats).
func TestNodeSyncHeldChangeAfterLostReply(t *testing.T) {
	tn := newTestNet(t)
	a := New(Config{ID: 1, Timing: StockTiming()}, tn.now)
	b := New(Config{ID: 2, Timing: StockTiming()}, tn.now)
	tn.nodes = append(tn.nodes, a, b)
	tn.connect(b, a)
	tn.run(time.Minute)
	lost := false
	tn.block = func(from, to uint32, msg []byte) bool {
		if from == 1 && to == 2 && !lost && headerOf(string(msg)).Type == protocol.TypeNodeSyncReply {
			lost = true
			return true
		}
		return false
	}
	c := New(Config{ID: 3, Timing: StockTiming()}, tn.now)
	tn.nodes = append(tn.nodes, c)
	tn.connect(c, b) // b tells a; a's reply is lost
	if !lost {
		t.Fatal("no reply lost")
	}
	tn.run(100 * time.Millisecond)
	d := tn.add(4, 0)
	d.cfg.Timing = StockTiming()
	tn.connect(d, b) // held: b's request to a is unanswered
	if a.IsConnected(4) {
		t.Fatal("change not held")
	}
	tn.run(time.Second)
	if !a.IsConnected(4) {
		t.Errorf("node 1 does not know node 4 a second later")
	}
	tn.run(time.Minute)
	if got := dropReasons(tn, 2); len(got) != 0 {
		t.Errorf("node 2 drops %v", got)
	}
}
