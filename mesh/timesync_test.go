package mesh

// Tests that walk docs/protocol.md §6 (time synchronisation), including the
// conformance vectors computed by the C++ code.

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// readJSONL calls fn with every line of a JSON-lines file.
func readJSONL(t *testing.T, path string, fn func(line []byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		n++
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("%s is empty", path)
	}
}

// §6.4: every offset and delay the C++ ntp::clockOffset and tripDelay
// computed, wrap-arounds included.
func TestClockOffsetConformance(t *testing.T) {
	readJSONL(t, "../testdata/conformance/time_sync.jsonl", func(line []byte) {
		var v struct {
			T0, T1, T2, T3 uint32
			Offset, Delay  int32
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatal(err)
		}
		if got := ClockOffset(v.T0, v.T1, v.T2, v.T3); got != v.Offset {
			t.Errorf("ClockOffset(%d,%d,%d,%d) = %d, want %d", v.T0, v.T1, v.T2, v.T3, got, v.Offset)
		}
		if got := TripDelay(v.T0, v.T1, v.T2, v.T3); got != v.Delay {
			t.Errorf("TripDelay(%d,%d,%d,%d) = %d, want %d", v.T0, v.T1, v.T2, v.T3, got, v.Delay)
		}
	})
}

// treeFromJSON reads a subConnectionJson tree with the protocol decoder
// (as the "nodeId…subs" part of a NODE_SYNC_REQUEST).
func treeFromJSON(t *testing.T, raw []byte) protocol.NodeTree {
	t.Helper()
	msg := append([]byte(`{"type":5,`), raw[1:]...)
	p, err := protocol.Decode(msg)
	if err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return p.(*protocol.NodeSync).NodeTree
}

// §6.5: every adopt decision the C++ ntp::adopt made, both through the
// pure function and through a node whose links hold those trees.
func TestAdoptConformance(t *testing.T) {
	nodeChecked := 0
	readJSONL(t, "../testdata/conformance/time_adopt.jsonl", func(line []byte) {
		var v struct {
			Mine, Theirs json.RawMessage
			Adopt        bool
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatal(err)
		}
		mine, theirs := treeFromJSON(t, v.Mine), treeFromJSON(t, v.Theirs)
		if got := Adopt(mine, theirs); got != v.Adopt {
			t.Errorf("Adopt(%s, %s) = %v, want %v", mine, theirs, got, v.Adopt)
		}
		// The node computes the same from its cached subtree sizes.
		p := newProbe(t, Config{ID: mine.NodeID, TimeAuthority: mine.HasTimeAuthority})
		var link *conn
		for i, s := range mine.Subs {
			c := ConnID(i + 1)
			ns := protocol.NodeSync{NodeTree: s, Type: protocol.TypeNodeSyncRequest, Dest: mine.NodeID, From: s.NodeID}
			p.syncWith(c, true, string(ns.AppendJSON(nil)))
			if s.NodeID == theirs.NodeID && link == nil {
				link = p.n.byConn[c]
			}
		}
		if link == nil || len(p.n.conns) != len(mine.Subs) {
			return // overlapping subtrees: the node refuses some links
		}
		nodeChecked++
		if got := p.n.adopts(link); got != v.Adopt {
			t.Errorf("node %d adopts from %d = %v, want %v (%s)", mine.NodeID, theirs.NodeID, got, v.Adopt, line)
		}
	})
	if nodeChecked < 200 {
		t.Errorf("only %d vectors checked through a node", nodeChecked)
	}
}

// §6.4, Q-6: an instant responder (t2 == t1) makes every offset 0 for the
// adopter, whatever the clocks are; a responder that takes our processing
// time is accepted for round trips up to 85 times that.
func TestOutlierRule(t *testing.T) {
	const trueOffset = 3000 // responder ahead by 3 ms
	for _, rtt := range []uint32{200, 2000, 20000} {
		t0 := uint32(1_000_000)
		t1 := t0 + rtt/2 + trueOffset
		if got := ClockOffset(t0, t1, t1, t0+rtt); got != 0 {
			t.Errorf("instant responder, rtt %d µs: offset %d, want 0", rtt, got)
		}
		proc := uint32(StockTiming().TimeReplyProcessing.Microseconds())
		if got := ClockOffset(t0, t1, t1+proc, t0+rtt+proc); got != trueOffset {
			t.Errorf("responder taking %d µs, rtt %d µs: offset %d, want %d", proc, rtt, got, trueOffset)
		}
	}
}

// §6.3, Q-6: our TIME_REQUEST responder answers after the processing time
// with t1 = node time at receipt and t2 = node time at sending, and then
// postpones its own time sync on that link by 60 s.
func TestTimeReplyProcessing(t *testing.T) {
	p := newProbe(t, Config{ID: 1, ClockStart: 500})
	p.syncWith(1, false, `{"nodeId":2,"type":5,"dest":1,"from":2}`)
	p.advance(time.Second)
	t1 := p.n.NodeTime(p.now)
	rd := p.recv(1, `{"type":4,"dest":1,"from":2,"msg":{"type":1,"t0":12345}}`)
	if got := ofType(rd, 1, protocol.TypeTimeSync); len(got) != 0 {
		t.Fatalf("answered instantly: %v", got)
	}
	proc := StockTiming().TimeReplyProcessing
	if got := p.n.NextDeadline(); !got.Equal(p.now.Add(proc)) {
		t.Fatalf("NextDeadline %v, want receipt + %v", got, proc)
	}
	rd = p.advance(proc)
	want := protocol.TimeSync{Type: protocol.TypeTimeSync, Dest: 2, From: 1,
		Msg: protocol.TimeMsg{Type: protocol.TimeReply, T0: 12345, T1: t1, T2: t1 + uint32(proc.Microseconds())}}
	got := ofType(rd, 1, protocol.TypeTimeSync)
	if len(got) != 1 || got[0] != string(want.AppendJSON(nil)) {
		t.Fatalf("reply %v, want %s", got, want.AppendJSON(nil))
	}
	if rd.Messages[0].Priority != PriorityHigh {
		t.Errorf("reply priority %d", rd.Messages[0].Priority)
	}
	// Our own time sync on this link (AP side: first at 10 s) is postponed
	// to 60 s after the request.
	rd = p.advance(61 * time.Second)
	if n := len(ofType(rd, 1, protocol.TypeTimeSync)); n != 1 {
		t.Errorf("%d time syncs in the 61 s after answering, want 1 (at 61 s)", n)
	}
	// A connection dropped while a reply waits loses the reply.
	p.recv(1, `{"type":4,"dest":1,"from":2,"msg":{"type":1,"t0":1}}`)
	p.n.Disconnect(p.now, 1)
	if rd := p.advance(time.Second); len(rd.Messages) != 0 {
		t.Errorf("reply sent on a dropped connection: %v", rd.Messages)
	}
}

// §6.3: TIME_SYNC_REQUEST is answered at once with a TIME_REQUEST (we
// always agree to adopt); the initiator's choice follows adopt().
func TestTimeSyncInitiator(t *testing.T) {
	p := newProbe(t, Config{ID: 5, ClockStart: 1000})
	// Neighbour 2 has a bigger subtree: as STA we ask for its time at once,
	// right after the node sync.
	rd := p.syncWith(1, true, `{"nodeId":2,"subs":[{"nodeId":3}],"type":6,"dest":5,"from":2}`)
	now := p.n.NodeTime(p.now)
	got := ofType(rd, 1, protocol.TypeTimeSync)
	want := protocol.TimeSync{Type: 4, Dest: 2, From: 5, Msg: protocol.TimeMsg{Type: protocol.TimeRequest, T0: now}}
	if len(got) != 1 || got[0] != string(want.AppendJSON(nil)) {
		t.Errorf("initiator sent %v, want %s", got, want.AppendJSON(nil))
	}
	// Neighbour 9 alone, smaller id than ours: tie goes to the higher id,
	// so we ask it to take our time.
	rd = p.syncWith(2, true, `{"nodeId":9,"type":6,"dest":5,"from":9}`)
	if got := ofType(rd, 2, protocol.TypeTimeSync); len(got) != 1 || got[0] != `{"type":4,"dest":9,"from":5,"msg":{"type":0}}` {
		t.Errorf("to 9: %v", got)
	}
	rd = p.recv(2, `{"type":4,"dest":5,"from":9,"msg":{"type":0}}`)
	want = protocol.TimeSync{Type: 4, Dest: 9, From: 5, Msg: protocol.TimeMsg{Type: protocol.TimeRequest, T0: p.n.NodeTime(p.now)}}
	if got := ofType(rd, 2, protocol.TypeTimeSync); len(got) != 1 || got[0] != string(want.AppendJSON(nil)) {
		t.Errorf("answer to TIME_SYNC_REQUEST %v, want %s", got, want.AppendJSON(nil))
	}
}

// §6.3: after a TIME_REPLY the adopter adds the offset; a small non-zero
// offset is success (link postponed 60 s, every other link synced at
// once), anything else retries the link after 200 ms.
func TestTimeSyncOutcome(t *testing.T) {
	setup := func() *probe {
		p := newProbe(t, Config{ID: 1, ClockStart: 0})
		// Two bigger neighbours, both AP side (first time sync at 10 s).
		p.syncWith(1, false, `{"nodeId":2,"subs":[{"nodeId":21}],"type":5,"dest":1,"from":2}`)
		p.syncWith(2, false, `{"nodeId":3,"subs":[{"nodeId":31}],"type":5,"dest":1,"from":3}`)
		p.n.Ready()
		return p
	}
	reply := func(p *probe, c ConnID, t0, t1, t2 uint32) Ready {
		ts := protocol.TimeSync{Type: 4, Dest: 1, From: uint32(c) + 1, Msg: protocol.TimeMsg{Type: 2, T0: t0, T1: t1, T2: t2}}
		return p.recv(c, string(ts.AppendJSON(nil)))
	}
	timeSyncs := func(rd Ready, c ConnID) int { return len(ofType(rd, c, protocol.TypeTimeSync)) }

	t.Run("success", func(t *testing.T) {
		p := setup()
		p.advance(time.Second)
		t3 := p.n.NodeTime(p.now)
		// Neighbour 2 is 2000 µs ahead: t0 = t3 - 1000, t1 = t0 + 500 + 2000.
		t0 := t3 - 1000
		reply(p, 1, t0, t0+2500, t0+2500)
		if got := p.n.NodeTime(p.now) - t3; got != 0 {
			t.Fatalf("instant responder moved the clock by %d", got)
		}
		rd := reply(p, 1, t0, t0+2500, t0+2700)
		// offset = 2500/2 + (t0+2700-t3)/2 = 1250 + 850 = 2100.
		if got := p.n.NodeTime(p.now) - t3; got != 2100 {
			t.Errorf("clock moved by %d, want 2100", got)
		}
		if timeSyncs(rd, 2) != 1 || timeSyncs(rd, 1) != 0 {
			t.Errorf("after success sent %d on the other link, %d on this one", timeSyncs(rd, 2), timeSyncs(rd, 1))
		}
		var adj []TimeAdjusted
		for _, ev := range rd.Events {
			if a, ok := ev.(TimeAdjusted); ok {
				adj = append(adj, a)
			}
		}
		if len(adj) != 1 || adj[0] != (TimeAdjusted{NodeID: 2, Offset: 2100}) {
			t.Errorf("events %v", rd.Events)
		}
		// Link 1 is quiet for 60 s, then syncs again.
		rd = p.advance(60*time.Second - time.Millisecond)
		if timeSyncs(rd, 1) != 0 {
			t.Errorf("link 1 synced within 60 s of success")
		}
		if rd = p.advance(time.Millisecond); timeSyncs(rd, 1) != 1 {
			t.Errorf("link 1 did not sync 60 s after success")
		}
		if s := p.n.Stats(); s.TimeSyncs != 2 || s.TimeSyncAdopts != 1 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("zero and large offsets retry after 200 ms", func(t *testing.T) {
		for _, off := range []uint32{0, 6000} {
			p := setup()
			p.advance(time.Second)
			t3 := p.n.NodeTime(p.now)
			t0 := t3 - 1000
			// Symmetric 400 µs each way, responder ahead by off.
			rd := reply(p, 1, t0, t0+400+off, t0+600+off)
			if timeSyncs(rd, 2) != 0 {
				t.Errorf("offset %d: other link forced", off)
			}
			rd = p.advance(200*time.Millisecond - time.Microsecond)
			if timeSyncs(rd, 1) != 0 {
				t.Errorf("offset %d: retried early", off)
			}
			rd = p.advance(time.Microsecond)
			if got := ofType(rd, 1, protocol.TypeTimeSync); len(got) != 1 || headerOf(got[0]).Dest != 2 {
				t.Errorf("offset %d: no retry after 200 ms: %v", off, got)
			}
		}
	})
}

// §6.3–6.5: a mesh whose clocks start seconds apart converges on one time
// within TIME_SYNC_ACCURACY; a lone node joining a bigger mesh takes the
// mesh's time and the mesh keeps it. Asymmetric latency gives the small
// non-zero offsets real links give.
func TestTimeSyncConvergence(t *testing.T) {
	tn := newTestNet(t)
	var ns []*Node
	for i, id := range []uint32{1, 2, 3, 4} {
		n := tn.add(id, uint32(i)*1_000_000_000)
		if i > 0 {
			tn.latency[[2]uint32{id, id - 1}] = 300 * time.Microsecond
			tn.latency[[2]uint32{id - 1, id}] = 320 * time.Microsecond
			tn.connect(n, ns[i-1])
		}
		ns = append(ns, n)
	}
	tn.run(30 * time.Second)
	spread := func(ns []*Node) int64 {
		lo, hi := int64(1<<62), int64(-1<<62)
		ref := ns[0].NodeTime(tn.now)
		for _, n := range ns {
			d := int64(int32(n.NodeTime(tn.now) - ref))
			lo, hi = min(lo, d), max(hi, d)
		}
		return hi - lo
	}
	if s := spread(ns); s >= TimeSyncAccuracy {
		t.Errorf("clocks spread %d µs after 30 s", s)
	}
	before := make([]uint32, len(ns))
	for i, n := range ns {
		before[i] = n.offset
	}
	lone := tn.add(99, 3_500_000_000)
	tn.latency[[2]uint32{99, 4}] = 300 * time.Microsecond
	tn.latency[[2]uint32{4, 99}] = 320 * time.Microsecond
	tn.connect(lone, ns[3])
	tn.run(5 * time.Second)
	if s := spread(append(ns, lone)); s >= TimeSyncAccuracy {
		t.Errorf("clocks spread %d µs after the lone node joined", s)
	}
	for i, n := range ns {
		if d := int32(n.offset - before[i]); d > 1000 || d < -1000 {
			t.Errorf("mesh node %d moved by %d µs for the lone node", n.ID(), d)
		}
	}
}

// Timing.AcceptZeroOffset ([G] behaviour): once clocks agree exactly, links
// sync once a minute instead of retrying every 200 ms.
func TestTimeSyncAcceptZeroOffset(t *testing.T) {
	for _, accept := range []bool{false, true} {
		tn := newTestNet(t)
		a := New(Config{ID: 1, Timing: Timing{AcceptZeroOffset: accept}}, tn.now)
		b := New(Config{ID: 2, ClockStart: 123456789, Timing: Timing{AcceptZeroOffset: accept}}, tn.now)
		tn.nodes = append(tn.nodes, a, b)
		tn.connect(b, a)
		tn.run(5 * time.Second)
		start := len(tn.log)
		tn.run(2 * time.Minute)
		n := 0
		for _, w := range tn.log[start:] {
			if headerOf(w.msg).Type == protocol.TypeTimeSync {
				n++
			}
		}
		if accept && (n == 0 || n > 12) {
			t.Errorf("AcceptZeroOffset: %d time-sync messages in 2 min, want a few", n)
		}
		if !accept && n < 1000 {
			t.Errorf("stock: %d time-sync messages in 2 min, want retries every 200 ms", n)
		}
		if d := int32(a.NodeTime(tn.now) - b.NodeTime(tn.now)); d < -1 || d > 1 {
			t.Errorf("accept=%v: clocks differ by %d µs", accept, d)
		}
	}
}

// Q-6 in a mesh of perfect clocks and links: the adopter computes offset 0
// after the first correction and, like stock, retries every 200 ms.
func TestTimeSyncZeroOffsetRetries(t *testing.T) {
	tn := newTestNet(t)
	tn.chain(1, 2)
	tn.run(10 * time.Second)
	req := tn.messages(1, 2, protocol.TypeTimeSync)
	var at []time.Duration
	for _, w := range req {
		if m, _ := protocol.Decode([]byte(w.msg)); m.(*protocol.TimeSync).Msg.Type == protocol.TimeRequest {
			at = append(at, w.at.Sub(tn.epoch))
		}
	}
	if len(at) < 45 {
		t.Fatalf("%d TIME_REQUESTs in 10 s", len(at))
	}
	for i := 1; i < len(at); i++ {
		if d := at[i] - at[i-1]; d != 200*time.Millisecond+StockTiming().TimeReplyProcessing {
			t.Errorf("request %d after %v, want 200 ms after the previous reply", i, d)
			break
		}
	}
	if d := int32(tn.node(1).NodeTime(tn.now) - tn.node(2).NodeTime(tn.now)); d < -1 || d > 1 {
		t.Errorf("clocks differ by %d µs", d)
	}
}

// §6.6: TIME_DELAY travels as a SINGLE; the target answers on the link it
// came in on; the originator reports the one-way delay.
func TestTimeDelay(t *testing.T) {
	tn := newTestNet(t)
	ns := tn.chain(1, 2, 3)
	for _, l := range [][3]uint32{{1, 2, 300}, {2, 1, 300}, {2, 3, 200}, {3, 2, 200}} {
		tn.latency[[2]uint32{l[0], l[1]}] = time.Duration(l[2]) * time.Microsecond
	}
	tn.run(5 * time.Second)
	start := len(tn.log)
	if !ns[0].StartDelayMeasurement(tn.now, 3) {
		t.Fatal("StartDelayMeasurement = false")
	}
	tn.run(10 * time.Millisecond)
	var hops [][2]uint32
	for _, w := range tn.log[start:] {
		if headerOf(w.msg).Type == protocol.TypeTimeDelay {
			hops = append(hops, [2]uint32{w.from, w.to})
		}
	}
	if want := [][2]uint32{{1, 2}, {2, 3}, {3, 2}, {2, 1}}; !slices.Equal(hops, want) {
		t.Errorf("TIME_DELAY hops %v, want %v", hops, want)
	}
	d := eventsOf[DelayMeasured](tn, 1)
	if len(d) != 1 || d[0].NodeID != 3 || d[0].Delay < 498 || d[0].Delay > 502 {
		t.Errorf("DelayMeasured %v, want about 500 µs from 3", d)
	}
	if len(eventsOf[DelayMeasured](tn, 3)) != 0 || len(eventsOf[DelayMeasured](tn, 2)) != 0 {
		t.Error("relay or target reported a delay")
	}
}

// §6.5: a time authority's clock wins over a bigger mesh; setting it
// forces a time sync on every link and is advertised in node sync.
func TestTimeAuthority(t *testing.T) {
	tn := newTestNet(t)
	ns := tn.chain(1, 2, 3)
	for _, l := range [][2]uint32{{1, 2}, {2, 3}, {3, 9}} {
		tn.latency[l] = 300 * time.Microsecond
		tn.latency[[2]uint32{l[1], l[0]}] = 320 * time.Microsecond
	}
	tn.run(5 * time.Second)
	auth := New(Config{ID: 9, ClockStart: 4_000_000_000, TimeAuthority: true}, tn.now)
	tn.nodes = append(tn.nodes, auth)
	tn.connect(auth, ns[2])
	tn.run(60 * time.Second)
	if auth.offset != 0 {
		t.Errorf("the authority moved its clock by %d", int32(auth.offset))
	}
	for _, n := range ns {
		if d := int32(n.NodeTime(tn.now) - auth.NodeTime(tn.now)); d < -50 || d > 50 {
			t.Errorf("node %d is %d µs from the authority", n.ID(), d)
		}
	}
	if got := ns[2].Tree().Subs[1]; got.NodeID != 9 || !got.HasTimeAuthority {
		t.Errorf("node 3 sees 9 as %s", got)
	}

	p := newProbe(t, Config{ID: 1})
	p.syncWith(1, false, `{"nodeId":2,"subs":[{"nodeId":21}],"type":5,"dest":1,"from":2}`)
	p.syncWith(2, false, `{"nodeId":3,"type":5,"dest":1,"from":3}`)
	p.n.Ready()
	p.n.SetTimeAuthority(p.now, true)
	rd := p.n.Ready()
	for _, c := range []ConnID{1, 2} {
		if got := ofType(rd, c, protocol.TypeTimeSync); len(got) != 1 || headerOf(got[0]).Dest != uint32(c)+1 ||
			!strings.HasSuffix(got[0], `"msg":{"type":0}}`) {
			t.Errorf("link %d after SetTimeAuthority: %v", c, got)
		}
	}
	rd = p.advance(60 * time.Second)
	for _, m := range ofType(rd, 1, protocol.TypeNodeSyncRequest) {
		if want := `{"nodeId":1,"hasTimeAuthority":true,"subs":[{"nodeId":3}],"type":5,"dest":2,"from":1}`; m != want {
			t.Errorf("request %s, want %s", m, want)
		}
	}
	if !p.n.Config().TimeAuthority {
		t.Error("Config().TimeAuthority = false")
	}
}

// ShiftTime moves the mesh time either way, reports it, and starts time
// sync on every synced link at once, as after an adoption: here the node's side is the
// bigger on each link, so it asks both neighbours to take its time.
func TestShiftTime(t *testing.T) {
	for _, d := range []time.Duration{10 * time.Minute, -30 * time.Minute} {
		p := newProbe(t, Config{ID: 1, ClockStart: 0})
		p.syncWith(1, false, `{"nodeId":2,"subs":[{"nodeId":21}],"type":5,"dest":1,"from":2}`)
		p.syncWith(2, false, `{"nodeId":3,"subs":[{"nodeId":31}],"type":5,"dest":1,"from":3}`)
		p.n.Ready()
		p.advance(time.Second)
		before := p.n.NodeTime(p.now)
		p.n.ShiftTime(p.now, d)
		if got := int64(int32(p.n.NodeTime(p.now) - before)); got != d.Microseconds() {
			t.Errorf("shift %s moved node time by %d µs", d, got)
		}
		rd := p.n.Ready()
		if len(rd.Events) != 1 || rd.Events[0] != (TimeAdjusted{Offset: int32(d.Microseconds())}) {
			t.Errorf("shift %s: events %v, want one TimeAdjusted", d, rd.Events)
		}
		for _, c := range []ConnID{1, 2} {
			got := ofType(rd, c, protocol.TypeTimeSync)
			want := protocol.TimeSync{Type: 4, Dest: uint32(c) + 1, From: 1, Msg: protocol.TimeMsg{Type: protocol.TimeSyncRequest}}
			if len(got) != 1 || got[0] != string(want.AppendJSON(nil)) {
				t.Errorf("shift %s: link %d sent %v, want %s", d, c, got, want.AppendJSON(nil))
			}
		}
	}
}
