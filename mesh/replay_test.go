package mesh

// Replays of traffic captured from real painlessMesh C++ nodes
// (../testdata/painlessmesh): our node takes the place of one of them, is
// fed what its peer sent at the captured times, and must send what the
// real node sent.

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// captured is one line of a capture file.
type captured struct {
	T     float64 `json:"t"`
	Conn  int     `json:"conn"`
	Dir   string  `json:"dir"`
	Msg   string  `json:"msg"`
	Event string  `json:"event"`
}

func loadCapture(t *testing.T, name string) []captured {
	var out []captured
	readJSONL(t, "../testdata/painlessmesh/"+name, func(line []byte) {
		var c captured
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, c)
	})
	return out
}

// feedDelay is how much later than the proxy our node sees a message: the
// captures show the real nodes answering 0.7–3 ms after the proxy saw the
// question, so the proxy's timestamps lead the nodes by about this much.
const feedDelay = time.Millisecond

// replayer steps one node through a capture's timeline.
type replayer struct {
	t      *testing.T
	n      *Node
	epoch  time.Time
	now    time.Time
	sent   []sentMsg
	events []timedEvent
	// auto answers messages the node sends on connections that are not in
	// the capture (neighbours we play ourselves).
	auto map[ConnID]func(msg string) string
}

type sentMsg struct {
	at   time.Duration // since the capture's start
	conn ConnID
	msg  string
}

type timedEvent struct {
	at    time.Duration
	ev    Event
	nodes []uint32 // NodeList(false) right after the event
}

func newReplayer(t *testing.T, cfg Config) *replayer {
	r := &replayer{t: t, n: New(cfg, testEpoch), epoch: testEpoch, now: testEpoch, auto: map[ConnID]func(string) string{}}
	// Real nodes send nothing that needs coercion or fails to parse.
	t.Cleanup(func() {
		if s := r.n.Stats(); s.InvalidPackages != (InvalidCounts{}) || s.ParseErrors != 0 {
			t.Errorf("invalid packages in a real capture: %+v, parse errors %d", s.InvalidPackages, s.ParseErrors)
		}
	})
	return r
}

func (r *replayer) at(sec float64) time.Time {
	return r.epoch.Add(time.Duration(sec * float64(time.Second)))
}

// until runs the node's timers up to t.
func (r *replayer) until(t time.Time) {
	for {
		dl := r.n.NextDeadline()
		if dl.IsZero() || dl.After(t) {
			break
		}
		r.now = dl
		r.n.Tick(r.now)
		r.collect()
	}
	r.now = t
}

// collect drains the node's output, answering auto connections.
func (r *replayer) collect() {
	rd := r.n.Ready()
	for _, ev := range rd.Events {
		r.events = append(r.events, timedEvent{at: r.now.Sub(r.epoch), ev: ev, nodes: r.n.NodeList(false)})
	}
	for _, o := range rd.Messages {
		r.sent = append(r.sent, sentMsg{at: r.now.Sub(r.epoch), conn: o.Conn, msg: string(o.Data)})
		if f := r.auto[o.Conn]; f != nil {
			if a := f(string(o.Data)); a != "" {
				r.n.Receive(r.now, o.Conn, []byte(a))
				r.collect()
			}
		}
	}
	if len(rd.Close) > 0 {
		r.t.Errorf("at %v the node closed %v", r.now.Sub(r.epoch), rd.Close)
	}
}

func (r *replayer) receive(c ConnID, msg string) {
	r.n.Receive(r.now, c, []byte(msg))
	r.collect()
}

// sentOfTypes returns what the node sent on c with one of the types.
func (r *replayer) sentOfTypes(c ConnID, types ...int) []sentMsg {
	var out []sentMsg
	for _, s := range r.sent {
		if s.conn == c && slices.Contains(types, headerOf(s.msg).Type) {
			out = append(out, s)
		}
	}
	return out
}

// expectSame checks that got and want hold the same messages, byte for
// byte, each sent within 5 ms of the captured time.
func expectSame(t *testing.T, what string, got []sentMsg, want []captured) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("%s %d: missing %s (at %.3f s)", what, i, want[i].Msg, want[i].T)
		case i >= len(want):
			t.Errorf("%s %d: extra %s (at %v)", what, i, got[i].msg, got[i].at)
		default:
			wantAt := time.Duration(want[i].T * float64(time.Second))
			if got[i].msg != want[i].Msg {
				t.Errorf("%s %d:\n got %s\nwant %s", what, i, got[i].msg, want[i].Msg)
			}
			if d := got[i].at - wantAt; d < -5*time.Millisecond || d > 5*time.Millisecond {
				t.Errorf("%s %d sent at %v, captured at %v", what, i, got[i].at, wantAt)
			}
		}
	}
}

// capturedOfTypes selects the capture's messages in direction dir whose
// type is one of types.
func capturedOfTypes(lines []captured, dir string, types ...int) []captured {
	var out []captured
	for _, l := range lines {
		if l.Dir == dir && l.Msg != "" && slices.Contains(types, headerOf(l.Msg).Type) {
			out = append(out, l)
		}
	}
	return out
}

// play feeds the capture's messages in direction peerDir to connection c,
// feedDelay after their captured time, until the capture's "closed".
func (r *replayer) play(lines []captured, peerDir string, c ConnID, hooks map[float64]func()) {
	var hookTimes []float64
	for at := range hooks {
		hookTimes = append(hookTimes, at)
	}
	slices.Sort(hookTimes)
	runHooks := func(upTo time.Time) {
		for len(hookTimes) > 0 && !r.at(hookTimes[0]).After(upTo) {
			r.until(r.at(hookTimes[0]))
			hooks[hookTimes[0]]()
			hookTimes = hookTimes[1:]
		}
	}
	for _, l := range lines {
		at := r.at(l.T).Add(feedDelay)
		runHooks(at)
		r.until(at)
		if l.Event == "closed" {
			break
		}
		if l.Dir == peerDir {
			r.receive(c, l.Msg)
		}
	}
}

// Scenario a, our node as the root 2428398258 (AP side): every node-sync
// message byte-identical and on time; time sync accepted at the same
// exchange as the real root; the layout is the captured one.
func TestReplayTwoNodesAsRoot(t *testing.T) {
	lines := loadCapture(t, "a_two_nodes_idle.jsonl")
	// Our clock runs like the real root's: it sent t0 1165963221 when the
	// proxy saw its first TIME_REQUEST (line 4).
	r := newReplayer(t, Config{ID: 2428398258, Root: true, ClockStart: 1165963221 - uint32(lines[3].T*1e6)})
	// The client connected just before its first request.
	r.until(r.at(lines[0].T).Add(-time.Millisecond))
	r.n.Connect(r.now, 1, false)
	r.collect()
	r.play(lines, "client->server", 1, map[float64]func(){
		40: func() {
			if got, want := r.n.Tree().String(), `{"nodeId":2428398258,"root":true,"subs":[{"nodeId":3907768579}]}`; got != want {
				t.Errorf("tree %s, want %s (a_node1_events status)", got, want)
			}
		},
	})
	// At 70.37 s both nodes' 60 s timers expire within a millisecond; the
	// real root's fired before it read the client's request, ours after,
	// so from 60 s on we only require a subset that answers the request.
	sync := r.sentOfTypes(1, protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply)
	capSync := capturedOfTypes(lines, "server->client", protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply)
	cut := func(s []sentMsg) int { return slices.IndexFunc(s, func(m sentMsg) bool { return m.at > time.Minute }) }
	capCut := slices.IndexFunc(capSync, func(c captured) bool { return c.T > 60 })
	expectSame(t, "node sync", sync[:cut(sync)], capSync[:capCut])
	late := sync[cut(sync):]
	if len(late) == 0 || headerOf(late[len(late)-1].msg).Type != protocol.TypeNodeSyncReply {
		t.Errorf("request at 70.37 s not answered: %v", late)
	}
	for _, m := range late {
		if !slices.ContainsFunc(capSync[capCut:], func(c captured) bool { return c.Msg == m.msg }) {
			t.Errorf("after 60 s sent %s, not in the capture", m.msg)
		}
	}

	// The client asked us to take its time (TIME_SYNC_REQUEST); like the
	// real root we answer with TIME_REQUEST and retry every 200 ms while
	// the client's instant answers fail the outlier rule. The first one
	// that passes is the one the real root accepted (time_adjusted in
	// a_node1_events, 8.7 s after the connection); then the link is quiet
	// for 60 s.
	var reqs []sentMsg
	for _, s := range r.sentOfTypes(1, protocol.TypeTimeSync) {
		if !strings.HasPrefix(s.msg, `{"type":4,"dest":3907768579,"from":2428398258,"msg":{"type":1,"t0":`) {
			t.Errorf("unexpected time sync %s", s.msg)
		}
		reqs = append(reqs, s)
	}
	capReqs := capturedOfTypes(lines, "server->client", protocol.TypeTimeSync)
	before := func(sec float64) int {
		return len(slices.DeleteFunc(slices.Clone(reqs), func(m sentMsg) bool { return m.at > time.Duration(sec*1e9) }))
	}
	capBefore := func(sec float64) int {
		return len(slices.DeleteFunc(slices.Clone(capReqs), func(c captured) bool { return c.T > sec }))
	}
	if got, want := before(9.1), capBefore(9.1); got != want {
		t.Errorf("%d TIME_REQUESTs before 9.1 s, the real root %d", got, want)
	}
	if got, want := before(69), capBefore(69); got != want {
		t.Errorf("%d TIME_REQUESTs before 69 s, the real root %d", got, want)
	}
	var adjusted []timedEvent
	for _, e := range r.events {
		if a, ok := e.ev.(TimeAdjusted); ok && a.Offset != 0 {
			adjusted = append(adjusted, e)
		}
	}
	if len(adjusted) == 0 || adjusted[0].at < 9049*time.Millisecond || adjusted[0].at > 9056*time.Millisecond {
		t.Errorf("first accepted exchange %v, want the one answered at 9.0498 s", adjusted)
	}
	var nc, ch []uint32
	for _, e := range r.events {
		switch ev := e.ev.(type) {
		case NewConnection:
			nc = append(nc, ev.NodeID)
		case ChangedConnections:
			ch = append(ch, ev.NodeID)
		}
	}
	if !slices.Equal(nc, []uint32{3907768579}) || !slices.Equal(ch, []uint32{3907768579}) {
		t.Errorf("new %v changed %v, want one each for 3907768579 (a_node1_events)", nc, ch)
	}
}

// Scenario a, our node as the client 3907768579 (STA side).
func TestReplayTwoNodesAsClient(t *testing.T) {
	lines := loadCapture(t, "a_two_nodes_idle.jsonl")
	r := newReplayer(t, Config{ID: 3907768579})
	r.until(r.at(lines[0].T))
	r.n.Connect(r.now, 1, true)
	r.collect()
	r.play(lines, "server->client", 1, nil)
	expectSame(t, "node sync", r.sentOfTypes(1, protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply),
		capturedOfTypes(lines, "client->server", protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply))

	ts := r.sentOfTypes(1, protocol.TypeTimeSync)
	capTS := capturedOfTypes(lines, "client->server", protocol.TypeTimeSync)
	// Equal sizes: the higher id asks the other to adopt, at once and again
	// when its task, postponed 60 s by the last TIME_REQUEST, runs out.
	isKind := func(kind int) func(string) bool {
		return func(msg string) bool {
			p, _ := protocol.Decode([]byte(msg))
			return p.(*protocol.TimeSync).Msg.Type == kind
		}
	}
	var asks []sentMsg
	var replies []*protocol.TimeSync
	for _, s := range ts {
		if isKind(protocol.TimeSyncRequest)(s.msg) {
			asks = append(asks, s)
		} else {
			p, _ := protocol.Decode([]byte(s.msg))
			replies = append(replies, p.(*protocol.TimeSync))
		}
	}
	var capAsks, capReplies []captured
	for _, c := range capTS {
		if isKind(protocol.TimeSyncRequest)(c.Msg) {
			capAsks = append(capAsks, c)
		} else {
			capReplies = append(capReplies, c)
		}
	}
	expectSame(t, "TIME_SYNC_REQUEST", asks, capAsks)
	// Every TIME_REQUEST fed got one TIME_REPLY echoing t0, answered after
	// our processing time, unlike the real client's ~10 µs.
	if len(replies) != len(capReplies) {
		t.Fatalf("%d TIME_REPLYs, captured %d", len(replies), len(capReplies))
	}
	proc := uint32(StockTiming().TimeReplyProcessing.Microseconds())
	for i, m := range replies {
		p, _ := protocol.Decode([]byte(capReplies[i].Msg))
		want := p.(*protocol.TimeSync)
		if m.Msg.T0 != want.Msg.T0 || m.Dest != want.Dest || m.From != want.From || m.Msg.T2-m.Msg.T1 != proc {
			t.Errorf("reply %d: %+v, captured %+v", i, m, want)
		}
	}
}

// Scenario e, our node as 1004 on the 1002–1004 link of a five-node tree:
// 1005 joins us at 0.29 s and leaves at 12.29 s, 1001 leaves 1002 at
// 29.68 s. Node sync byte-identical; layout and events as the real 1004's.
func TestReplayTreeAs1004(t *testing.T) {
	lines := loadCapture(t, "e_tree_link_2_4.jsonl")
	// Our clock runs like the real 1004's: it sent t0 1538359731 when the
	// proxy saw its first TIME_REQUEST.
	firstT0 := 1538359731 - uint32(lines[2].T*1e6)
	r := newReplayer(t, Config{ID: 1004, ClockStart: firstT0})
	r.until(r.at(lines[0].T))
	r.n.Connect(r.now, 1, true)
	r.collect()
	// We play 1005 on connection 2 (it connected to us: we are AP side).
	r.auto[2] = func(msg string) string {
		if headerOf(msg).Type == protocol.TypeNodeSyncRequest {
			return `{"nodeId":1005,"type":6,"dest":1004,"from":1005}`
		}
		return ""
	}
	r.play(lines, "server->client", 1, map[float64]func(){
		0.289: func() {
			r.n.Connect(r.now, 2, false)
			r.collect()
			r.receive(2, `{"nodeId":1005,"type":5,"dest":0,"from":1005}`)
		},
		5: func() {
			want := `{"nodeId":1004,"subs":[{"nodeId":1002,"subs":[{"nodeId":1001,"subs":[{"nodeId":1003}]}]},{"nodeId":1005}]}`
			if got := r.n.Tree().String(); got != want {
				t.Errorf("tree at 5 s %s, want %s (e_node4_events)", got, want)
			}
		},
		12.2893: func() {
			r.n.Disconnect(r.now, 2)
			r.collect()
		},
		20: func() {
			want := `{"nodeId":1004,"subs":[{"nodeId":1002,"subs":[{"nodeId":1001,"subs":[{"nodeId":1003}]}]}]}`
			if got := r.n.Tree().String(); got != want {
				t.Errorf("tree at 20 s %s, want %s (e_node4_events)", got, want)
			}
		},
	})
	expectSame(t, "node sync to 1002", r.sentOfTypes(1, protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply),
		capturedOfTypes(lines, "client->server", protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply))
	if got := r.n.NodeList(false); !slices.Equal(got, []uint32{1002}) {
		t.Errorf("final NodeList %v, want [1002]", got)
	}
	r.n.Disconnect(r.now, 1)
	r.collect()

	// Time sync: we adopt (1 node against 3); the first six exchanges fail
	// the outlier rule (the real 1002 answered within ~10 µs), the seventh
	// (109 µs) passes, and then the link is quiet, as in the capture.
	var reqs []sentMsg
	for _, s := range r.sentOfTypes(1, protocol.TypeTimeSync) {
		if !strings.Contains(s.msg, `"msg":{"type":1,`) {
			t.Errorf("unexpected time sync %s", s.msg)
		}
		reqs = append(reqs, s)
	}
	capReqs := capturedOfTypes(lines, "client->server", protocol.TypeTimeSync)
	if len(reqs) != len(capReqs) {
		t.Errorf("%d TIME_REQUESTs, captured %d", len(reqs), len(capReqs))
	}
	for i := range min(len(reqs), len(capReqs)) {
		wantAt := time.Duration(capReqs[i].T * float64(time.Second))
		if d := reqs[i].at - wantAt; d < -5*time.Millisecond || d > 5*time.Millisecond {
			t.Errorf("TIME_REQUEST %d at %v, captured at %v", i, reqs[i].at, wantAt)
		}
	}
	var offsets []int32
	var timeline []string
	for _, e := range r.events {
		switch ev := e.ev.(type) {
		case TimeAdjusted:
			offsets = append(offsets, ev.Offset)
		case NewConnection:
			timeline = append(timeline, fmt.Sprintf("new %d", ev.NodeID))
		case ChangedConnections:
			timeline = append(timeline, fmt.Sprintf("changed %v", e.nodes))
		case DroppedConnection:
			timeline = append(timeline, fmt.Sprintf("dropped %d", ev.NodeID))
		}
	}
	if len(offsets) != 7 || slices.ContainsFunc(offsets[:6], func(o int32) bool { return o != 0 }) ||
		offsets[6] == 0 || abs32(offsets[6]) >= TimeSyncAccuracy {
		t.Errorf("offsets %v, want six 0 and then a small non-zero one (e_node4_events)", offsets)
	}
	// e_node4_events, with new/changed of one sync in our order (the C++
	// code runs the new-connection callback as a later task).
	want := []string{
		"new 1002", "changed [1001 1002 1003]",
		"new 1005", "changed [1001 1002 1003 1005]",
		"changed [1001 1002 1003]", "dropped 1005",
		"changed [1002]",
		"changed []", "dropped 1002",
	}
	if !slices.Equal(timeline, want) {
		t.Errorf("events\n%s\nwant\n%s", strings.Join(timeline, "\n"), strings.Join(want, "\n"))
	}
}

// Scenario e from the other end: our node as 1002 answers 1004 with the
// captured bytes, given 1001 (with 1003 behind it) on another link.
func TestReplayTreeAs1002(t *testing.T) {
	lines := loadCapture(t, "e_tree_link_2_4.jsonl")
	r := newReplayer(t, Config{ID: 1002})
	// 1002 connected to 1001 earlier; we play 1001 on connection 2.
	r.auto[2] = func(msg string) string {
		if headerOf(msg).Type == protocol.TypeNodeSyncRequest {
			return `{"nodeId":1001,"subs":[{"nodeId":1003}],"type":6,"dest":1002,"from":1001}`
		}
		return ""
	}
	r.n.Connect(r.now, 2, true)
	r.collect()
	r.until(r.at(lines[0].T).Add(-time.Millisecond))
	r.n.Connect(r.now, 1, false)
	r.collect()
	r.play(lines, "client->server", 1, map[float64]func(){
		// 1001 leaves: its link drops and 1002 tells 1004.
		29.6793: func() {
			r.n.Disconnect(r.now, 2)
			r.collect()
		},
	})
	got := r.sentOfTypes(1, protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply)
	want := capturedOfTypes(lines, "server->client", protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply)
	expectSame(t, "node sync to 1004", got, want)
	// The time-sync replies have the captured form (t1/t2 are our clock).
	for _, s := range r.sentOfTypes(1, protocol.TypeTimeSync) {
		if !strings.HasPrefix(s.msg, `{"type":4,"dest":1004,"from":1002,"msg":{"type":2,"t0":`) {
			t.Errorf("time sync %s", s.msg)
		}
	}
}
