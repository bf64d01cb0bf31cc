package mesh

// Tests that walk docs/protocol.md §3–§4 (node identity, tree, node sync) the
// way etcd's raft_paper_test.go walks the Raft paper.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// §3.3: a node advertises root and hasTimeAuthority only when true, and
// its layout lists each synced neighbour's tree in connection order.
func TestTreeFlagsAndOrder(t *testing.T) {
	p := newProbe(t, Config{ID: 10, Root: true, TimeAuthority: true})
	rd := p.syncWith(1, true, `{"nodeId":30,"subs":[{"nodeId":31}],"type":5,"dest":10,"from":30}`)
	req := texts(rd, 1)[0]
	if want := `{"nodeId":10,"root":true,"hasTimeAuthority":true,"type":5,"dest":0,"from":10}`; req != want {
		t.Errorf("first request = %s, want %s", req, want)
	}
	p.syncWith(2, false, `{"nodeId":20,"root":true,"type":5,"dest":10,"from":20}`)
	got := p.n.Tree()
	want := `{"nodeId":10,"root":true,"hasTimeAuthority":true,"subs":[{"nodeId":30,"subs":[{"nodeId":31}]},{"nodeId":20,"root":true}]}`
	if got.String() != want {
		t.Errorf("Tree() = %s, want %s", got, want)
	}
	// Tree returns a copy: changing it does not change the node.
	got.Subs[0].NodeID = 99
	if p.n.Tree().String() != want {
		t.Error("Tree() shares memory with the node")
	}
	p.n.SetRoot(false)
	if s := p.n.Tree().String(); strings.Contains(s[:20], "root") {
		t.Errorf("after SetRoot(false) tree = %s", s)
	}
	if got := p.n.NodeList(false); !slices.Equal(got, []uint32{20, 30, 31}) {
		t.Errorf("NodeList(false) = %v", got)
	}
	if got := p.n.NodeList(true); !slices.Equal(got, []uint32{10, 20, 30, 31}) {
		t.Errorf("NodeList(true) = %v", got)
	}
}

// §4.1, §4.2: the STA side requests at once with dest 0; the AP side
// answers with a reply to the now known id; both learn each other.
func TestNodeSyncFirstSyncBothSides(t *testing.T) {
	tn := newTestNet(t)
	ap := tn.add(1, 0)
	sta := tn.add(2, 0)
	tn.connect(sta, ap)

	syncs := tn.messages(0, 0, protocol.TypeNodeSyncRequest)
	syncs = append(syncs, tn.messages(0, 0, protocol.TypeNodeSyncReply)...)
	want := []string{
		`{"nodeId":2,"type":5,"dest":0,"from":2}`,
		`{"nodeId":1,"type":6,"dest":2,"from":1}`,
	}
	if len(syncs) != 2 || syncs[0].msg != want[0] || syncs[1].msg != want[1] {
		t.Fatalf("node sync at connect = %v, want %v", syncs, want)
	}
	for _, n := range []*Node{ap, sta} {
		other := 3 - n.ID()
		if !n.IsConnected(other) || !slices.Equal(n.NodeList(false), []uint32{other}) {
			t.Errorf("node %d: NodeList = %v", n.ID(), n.NodeList(false))
		}
		nc := eventsOf[NewConnection](tn, n.ID())
		ch := eventsOf[ChangedConnections](tn, n.ID())
		if len(nc) != 1 || nc[0].NodeID != other || len(ch) != 1 || ch[0].NodeID != other {
			t.Errorf("node %d events: new %v changed %v", n.ID(), nc, ch)
		}
		ci := n.Connections()
		if len(ci) != 1 || ci[0].NodeID != other || !ci[0].Synced || ci[0].SubtreeSize != 1 || ci[0].Station != (n == sta) {
			t.Errorf("node %d Connections() = %+v", n.ID(), ci)
		}
		if s := n.Stats(); s.Connections != 1 || s.ConnectionChanges != 1 {
			t.Errorf("node %d stats %+v", n.ID(), s)
		}
	}
}

// §4.2: the AP side's first request comes 10 s after accept, then one
// every 60 s; each armed NODE_TIMEOUT is disarmed by the reply.
func TestNodeSyncTimers(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.n.Connect(p.now, 7, false)
	if rd := p.n.Ready(); len(rd.Messages) != 0 {
		t.Fatalf("AP side sent at accept: %v", ofType(rd, 7, protocol.TypeNodeSyncRequest))
	}
	if got, want := p.n.NextDeadline(), p.at(10*time.Second); !got.Equal(want) {
		t.Fatalf("NextDeadline = %v, want %v", got, want)
	}
	rd := p.advance(10 * time.Second)
	if got := ofType(rd, 7, protocol.TypeNodeSyncRequest); len(got) != 1 || got[0] != `{"nodeId":1,"type":5,"dest":0,"from":1}` {
		t.Fatalf("at 10 s sent %v", got)
	}
	// The peer answers 1 s later: synced, no timeout.
	p.advance(time.Second)
	p.recv(7, `{"nodeId":2,"type":6,"dest":1,"from":2}`)
	rd = p.advance(58 * time.Second)
	if len(ofType(rd, 7, protocol.TypeNodeSyncRequest)) != 0 || len(rd.Close) != 0 {
		t.Fatalf("before 60 s: %v close %v", ofType(rd, 7, protocol.TypeNodeSyncRequest), rd.Close)
	}
	// The reply at 11 s carried a change (first sync), so the 60 s period
	// still counts from the request at 10 s.
	rd = p.advance(time.Second)
	if got := ofType(rd, 7, protocol.TypeNodeSyncRequest); len(got) != 1 || got[0] != `{"nodeId":1,"type":5,"dest":2,"from":1}` {
		t.Fatalf("at 70 s sent %v", got)
	}
	p.recv(7, `{"nodeId":2,"type":6,"dest":1,"from":2}`)
	// An unchanged reply pushes the next request to +60 s from receipt.
	p.advance(30 * time.Second)
	p.recv(7, `{"nodeId":2,"type":6,"dest":1,"from":2}`)
	rd = p.advance(59 * time.Second)
	if n := len(ofType(rd, 7, protocol.TypeNodeSyncRequest)); n != 0 {
		t.Fatalf("unchanged sync did not delay the next request: %v", ofType(rd, 7, protocol.TypeNodeSyncRequest))
	}
	rd = p.advance(time.Second)
	if n := len(ofType(rd, 7, protocol.TypeNodeSyncRequest)); n != 1 {
		t.Fatalf("request not sent 60 s after the unchanged sync: %v", ofType(rd, 7, protocol.TypeNodeSyncRequest))
	}
}

// §4.2, Q-16: without a NODE_SYNC_REPLY within 10 s the connection is
// closed; requests and other traffic from the peer do not count.
func TestNodeSyncTimeoutCloses(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.n.Connect(p.now, 3, true)
	if got := texts(p.n.Ready(), 3); len(got) != 1 {
		t.Fatalf("STA did not request at once: %v", got)
	}
	p.advance(5 * time.Second)
	rd := p.recv(3, `{"nodeId":2,"type":5,"dest":1,"from":2}`)
	if got := ofType(rd, 3, protocol.TypeNodeSyncReply); len(got) != 1 {
		t.Fatalf("request not answered with a reply: %v", got)
	}
	p.recv(3, `{"type":8,"dest":0,"from":2,"msg":"hi"}`)
	rd = p.advance(5*time.Second - time.Microsecond)
	if len(rd.Close) != 0 {
		t.Fatalf("closed before NODE_TIMEOUT")
	}
	rd = p.advance(time.Microsecond)
	if !slices.Equal(rd.Close, []ConnID{3}) {
		t.Fatalf("Close = %v, want [3] at 10 s", rd.Close)
	}
	var dropped []DroppedConnection
	for _, ev := range rd.Events {
		if d, ok := ev.(DroppedConnection); ok {
			dropped = append(dropped, d)
		}
	}
	if len(dropped) != 1 || dropped[0].Reason != "timeout" || dropped[0].NodeID != 2 {
		t.Errorf("events = %v", rd.Events)
	}
	if p.n.IsConnected(2) || len(p.n.Connections()) != 0 {
		t.Error("timed-out connection still known")
	}
	// The driver's Disconnect for the closed connection is ignored.
	p.n.Disconnect(p.now, 3)
	if rd := p.n.Ready(); len(rd.Events) != 0 {
		t.Errorf("second drop reported: %v", rd.Events)
	}
}

// §4.2: a peer that only answers keeps the link forever; requests flow
// every 60 s in each direction.
func TestNodeSyncPeriodic(t *testing.T) {
	tn := newTestNet(t)
	a, b := tn.add(1, 0), tn.add(2, 0)
	tn.connect(b, a)
	tn.run(10 * time.Minute)
	reqAB := tn.messages(1, 2, protocol.TypeNodeSyncRequest)
	reqBA := tn.messages(2, 1, protocol.TypeNodeSyncRequest)
	// As in capture a_two_nodes_idle: the STA asks at 0 s, the AP at 10 s;
	// each answer is unchanged and pushes the receiver's own request to
	// +60 s, so from then on both ask at 70 s, 130 s, ...
	wantAt := func(first time.Duration) []time.Duration {
		out := []time.Duration{first}
		for d := 70 * time.Second; d < 10*time.Minute; d += time.Minute {
			out = append(out, d)
		}
		return out
	}
	at := func(ws []wire) []time.Duration {
		var out []time.Duration
		for _, w := range ws {
			out = append(out, w.at.Sub(tn.epoch))
		}
		return out
	}
	if got, want := at(reqBA), wantAt(0); !slices.Equal(got, want) {
		t.Errorf("STA requests at %v, want %v", got, want)
	}
	if got, want := at(reqAB), wantAt(10*time.Second); !slices.Equal(got, want) {
		t.Errorf("AP requests at %v, want %v", got, want)
	}
	total := len(reqAB) + len(reqBA)
	if len(tn.messages(0, 0, protocol.TypeNodeSyncReply)) != total {
		t.Error("not every request answered")
	}
	if len(a.Connections()) != 1 || len(b.Connections()) != 1 {
		t.Error("link dropped")
	}
}

// §4.2: a change on one link makes the node send requests on every other
// synced link at once, so a new node is known everywhere immediately.
func TestNodeSyncChangePropagation(t *testing.T) {
	tn := newTestNet(t)
	ns := tn.chain(1, 2, 3, 4)
	for _, n := range ns {
		if got := n.NodeList(true); !slices.Equal(got, []uint32{1, 2, 3, 4}) {
			t.Fatalf("node %d NodeList = %v", n.ID(), got)
		}
	}
	leaf := tn.add(5, 0)
	start := len(tn.log)
	tn.connect(leaf, ns[1]) // 5 joins at 2; no time passes
	if got := ns[3].NodeList(false); !slices.Equal(got, []uint32{1, 2, 3, 5}) {
		t.Errorf("node 4 does not know node 5 at once: %v", got)
	}
	if got := ns[3].Tree().String(); got != `{"nodeId":4,"subs":[{"nodeId":3,"subs":[{"nodeId":2,"subs":[{"nodeId":1},{"nodeId":5}]}]}]}` {
		t.Errorf("node 4 tree %s", got)
	}
	// The change travelled as requests 2→1, 2→3, 3→4, each answered.
	var reqs []string
	for _, w := range tn.log[start:] {
		if headerOf(w.msg).Type == protocol.TypeNodeSyncRequest && w.from != 5 {
			reqs = append(reqs, w.msg)
		}
	}
	want := []string{
		`{"nodeId":2,"subs":[{"nodeId":3,"subs":[{"nodeId":4}]},{"nodeId":5}],"type":5,"dest":1,"from":2}`,
		`{"nodeId":2,"subs":[{"nodeId":1},{"nodeId":5}],"type":5,"dest":3,"from":2}`,
		`{"nodeId":3,"subs":[{"nodeId":2,"subs":[{"nodeId":1},{"nodeId":5}]}],"type":5,"dest":4,"from":3}`,
	}
	if !slices.Equal(reqs, want) {
		t.Errorf("propagation requests:\n%s\nwant\n%s", strings.Join(reqs, "\n"), strings.Join(want, "\n"))
	}
}

// §4.4: a dropped link changes the layout; the neighbours are told at once
// and the loss ripples through the mesh.
func TestNodeSyncDropPropagation(t *testing.T) {
	tn := newTestNet(t)
	ns := tn.chain(1, 2, 3, 4)
	c := ns[3].Connections()[0].Conn // 4's link to 3
	tn.cut(c)
	for _, n := range ns[:3] {
		if got := n.NodeList(true); !slices.Equal(got, []uint32{1, 2, 3}) {
			t.Errorf("node %d NodeList after drop = %v", n.ID(), got)
		}
	}
	if ns[0].IsConnected(4) {
		t.Error("node 1 still routes to 4")
	}
	d := eventsOf[DroppedConnection](tn, 3)
	if len(d) != 1 || d[0].NodeID != 4 || d[0].Reason != "closed" {
		t.Errorf("node 3 dropped events %v", d)
	}
	if got := ns[3].NodeList(false); len(got) != 0 {
		t.Errorf("isolated node 4 NodeList = %v", got)
	}
}

// §4.3 step 1: a neighbour whose id changes, or whose subs contain its own
// id, is closed as "invalid sync" (both request and reply).
func TestNodeSyncInvalid(t *testing.T) {
	for _, tc := range []struct{ name, msg string }{
		{"id change", `{"nodeId":3,"type":5,"dest":1,"from":3}`},
		{"id change in reply", `{"nodeId":3,"type":6,"dest":1,"from":3}`},
		{"own id in subs", `{"nodeId":2,"subs":[{"nodeId":5,"subs":[{"nodeId":2}]}],"type":5,"dest":1,"from":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProbe(t, Config{ID: 1})
			p.syncWith(4, true, `{"nodeId":2,"type":5,"dest":1,"from":2}`)
			rd := p.recv(4, tc.msg)
			if !slices.Equal(rd.Close, []ConnID{4}) || len(texts(rd, 4)) != 0 {
				t.Fatalf("Close = %v, sent %v", rd.Close, texts(rd, 4))
			}
			d := eventsOf[DroppedConnection](&testNet{events: map[uint32][]Event{1: rd.Events}}, 1)
			if len(d) != 1 || d[0].Reason != "invalid sync" {
				t.Errorf("events %v", rd.Events)
			}
			if p.n.IsConnected(2) {
				t.Error("node 2 still in layout")
			}
		})
	}
}

// §4.3 step 2, Q-15: a second link into the same mesh is refused by
// closing the new connection at its first sync; the tree stays a tree and
// broadcasts are still delivered exactly once.
func TestNodeSyncDuplicateLinkRefused(t *testing.T) {
	tn := newTestNet(t)
	ns := tn.chain(1, 2, 3)
	// 3 also connects to 1: a loop.
	tn.connect(ns[2], ns[0])
	for _, n := range ns {
		if len(n.Connections()) > 2 || (n.ID() != 2 && len(n.Connections()) != 1) {
			t.Errorf("node %d connections %+v", n.ID(), n.Connections())
		}
	}
	var reasons []string
	for _, id := range []uint32{1, 3} {
		for _, d := range eventsOf[DroppedConnection](tn, id) {
			reasons = append(reasons, d.Reason)
		}
	}
	if !slices.Contains(reasons, "already connected") {
		t.Errorf("drop reasons %v, want already connected", reasons)
	}
	tn.run(time.Second)
	ns[0].SendBroadcast(tn.now, "once", false)
	tn.run(time.Second)
	for _, id := range []uint32{2, 3} {
		if got := tn.received(id); len(got) != 1 {
			t.Errorf("node %d got %d copies", id, len(got))
		}
	}
}

// Not stock (see handleNodeSync): a peer claiming our own id or id 0 is
// refused at the first sync.
func TestNodeSyncRefusesOwnAndZeroID(t *testing.T) {
	for _, msg := range []string{
		`{"nodeId":1,"type":5,"dest":0,"from":1}`,
		`{"nodeId":0,"type":5,"dest":0,"from":0}`,
		`{"type":5,"dest":0}`,
	} {
		p := newProbe(t, Config{ID: 1})
		rd := p.syncWith(4, false, msg)
		if !slices.Equal(rd.Close, []ConnID{4}) {
			t.Errorf("%s: Close = %v", msg, rd.Close)
		}
	}
}

// §4.2: every request is answered, with our layout minus the requester's
// branch; replies are priority high.
func TestNodeSyncReplyExcludesRequester(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.syncWith(1, true, `{"nodeId":2,"subs":[{"nodeId":21}],"type":5,"dest":1,"from":2}`)
	rd := p.syncWith(2, false, `{"nodeId":3,"type":5,"dest":0,"from":3}`)
	var reply Outgoing
	for _, o := range rd.Messages {
		if o.Conn == 2 {
			reply = o
		}
	}
	if want := `{"nodeId":1,"subs":[{"nodeId":2,"subs":[{"nodeId":21}]}],"type":6,"dest":3,"from":1}`; string(reply.Data) != want {
		t.Errorf("reply %s, want %s", reply.Data, want)
	}
	if reply.Priority != PriorityHigh {
		t.Errorf("reply priority %d", reply.Priority)
	}
	// The change (node 3 is new) is announced on the other link at once.
	if got := texts(rd, 1); len(got) != 1 || got[0] != `{"nodeId":1,"subs":[{"nodeId":3}],"type":5,"dest":2,"from":1}` {
		t.Errorf("on link 1: %v", got)
	}
}

// subs keep connection creation order; a peer reordering its subs is
// a change and is propagated.
func TestNodeSyncSubsOrderMatters(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.syncWith(1, true, `{"nodeId":2,"subs":[{"nodeId":3},{"nodeId":4}],"type":5,"dest":1,"from":2}`)
	p.syncWith(2, true, `{"nodeId":9,"type":5,"dest":1,"from":9}`)
	p.n.Ready()
	rd := p.recv(1, `{"nodeId":2,"subs":[{"nodeId":4},{"nodeId":3}],"type":5,"dest":1,"from":2}`)
	if got := texts(rd, 2); len(got) != 1 {
		t.Errorf("reordered subs not propagated: %v", got)
	}
	rd = p.recv(1, `{"nodeId":2,"subs":[{"nodeId":4},{"nodeId":3}],"type":5,"dest":1,"from":2}`)
	if got := texts(rd, 2); len(got) != 0 {
		t.Errorf("unchanged subs propagated: %v", got)
	}
}

// the top-level hasTimeAuthority is read from requests only, so a
// stock authority, whose replies omit it, does not flip it.
func TestNodeSyncTimeAuthorityFromRequestsOnly(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.syncWith(1, true, `{"nodeId":2,"hasTimeAuthority":true,"type":5,"dest":1,"from":2}`)
	p.syncWith(2, true, `{"nodeId":9,"type":5,"dest":1,"from":9}`)
	p.n.Ready()
	rd := p.recv(1, `{"nodeId":2,"type":6,"dest":1,"from":2}`)
	if got := texts(rd, 2); len(got) != 0 {
		t.Errorf("reply without the flag counted as a change: %v", got)
	}
	if !p.n.Tree().Subs[0].HasTimeAuthority {
		t.Error("flag lost")
	}
	rd = p.recv(1, `{"nodeId":2,"type":5,"dest":1,"from":2}`)
	if got := texts(rd, 2); len(got) != 1 || p.n.Tree().Subs[0].HasTimeAuthority {
		t.Errorf("request without the flag: sent %v, tree %s", got, p.n.Tree())
	}
}

// Timing.NodeSyncRetry (not stock): a lost NODE_SYNC_REPLY is made good by
// repeating the request, byte for byte, before NODE_TIMEOUT, so the link
// survives; with repeats off (StockTiming) the same loss closes it at
// 10 s, as on a C++ node.
func TestNodeSyncRetrySurvivesLostReply(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timing  Timing
		survive bool
		retries uint64
	}{
		{"default", Timing{}, true, 1},
		{"stock", StockTiming(), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNet(t)
			// The AP is a stock node: it never repeats, it only answers.
			ap := New(Config{ID: 1, Timing: StockTiming()}, tn.now)
			sta := New(Config{ID: 2, Timing: tc.timing}, tn.now)
			tn.nodes = append(tn.nodes, ap, sta)
			lost := 0
			tn.block = func(from, to uint32, msg []byte) bool {
				if from == 1 && headerOf(string(msg)).Type == protocol.TypeNodeSyncReply && lost == 0 {
					lost++
					return true
				}
				return false
			}
			tn.connect(sta, ap)
			if lost != 1 || sta.IsConnected(1) {
				t.Fatalf("first reply not lost (lost %d, connected %v)", lost, sta.IsConnected(1))
			}
			tn.run(15 * time.Second)
			dropped := eventsOf[DroppedConnection](tn, 2)
			if tc.survive {
				if len(dropped) != 0 || !sta.IsConnected(1) || !ap.IsConnected(2) {
					t.Fatalf("link lost: dropped %v, connected %v/%v", dropped, sta.IsConnected(1), ap.IsConnected(2))
				}
			} else if len(dropped) != 1 || dropped[0].Reason != "timeout" || sta.IsConnected(1) {
				t.Fatalf("without repeats: dropped %v, connected %v", dropped, sta.IsConnected(1))
			}
			reqs := tn.messages(2, 1, protocol.TypeNodeSyncRequest)
			if want := 1 + int(tc.retries); len(reqs) != want {
				t.Fatalf("%d requests in 15 s, want %d: %v", len(reqs), want, reqs)
			}
			if tc.retries > 0 {
				if reqs[1].msg != reqs[0].msg {
					t.Errorf("repeat %s differs from the request %s", reqs[1].msg, reqs[0].msg)
				}
				if d := reqs[1].at.Sub(reqs[0].at); d != DefaultNodeSyncRetry {
					t.Errorf("repeat after %v, want %v", d, DefaultNodeSyncRetry)
				}
			}
			if got := sta.Stats().NodeSyncRetries; got != tc.retries {
				t.Errorf("NodeSyncRetries = %d, want %d", got, tc.retries)
			}
		})
	}
}

// A peer that never answers still times out at NODE_TIMEOUT with repeats
// on: they do not re-arm it, and stop before it.
func TestNodeSyncRetryKeepsTimeout(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.n.Connect(p.now, 3, true)
	p.n.Ready()
	rd := p.advance(10*time.Second - time.Microsecond)
	if got := ofType(rd, 3, protocol.TypeNodeSyncRequest); len(got) != 3 || len(rd.Close) != 0 {
		t.Fatalf("before NODE_TIMEOUT: repeats %v, close %v; want 3 repeats (3, 6, 9 s), no close", got, rd.Close)
	}
	rd = p.advance(time.Microsecond)
	if !slices.Equal(rd.Close, []ConnID{3}) {
		t.Fatalf("Close = %v, want [3] at 10 s", rd.Close)
	}
}
