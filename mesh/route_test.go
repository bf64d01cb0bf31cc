package mesh

// Tests that walk docs/protocol.md §5 (routing) and §7 (plugin packages).

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// tree5 builds   1
//
//	/ \
//	2   3
//	|\
//	4 5
func tree5(t *testing.T) (*testNet, map[uint32]*Node) {
	tn := newTestNet(t)
	ns := map[uint32]*Node{}
	for id := uint32(1); id <= 5; id++ {
		ns[id] = tn.add(id, id*1000)
	}
	tn.connect(ns[2], ns[1])
	tn.connect(ns[3], ns[1])
	tn.connect(ns[4], ns[2])
	tn.connect(ns[5], ns[2])
	return tn, ns
}

// §5.2, §5.3: a SINGLE travels only along the path to its destination;
// relays forward the bytes they received, unchanged; only the destination
// handles it.
func TestRouteSingleAlongPath(t *testing.T) {
	tn, ns := tree5(t)
	start := len(tn.log)
	if !ns[4].SendSingle(tn.now, 3, "to three") {
		t.Fatal("SendSingle(3) = false")
	}
	tn.settle()
	var hops [][2]uint32
	var msgs []string
	for _, w := range tn.log[start:] {
		if headerOf(w.msg).Type == protocol.TypeSingle {
			hops = append(hops, [2]uint32{w.from, w.to})
			msgs = append(msgs, w.msg)
		}
	}
	if want := [][2]uint32{{4, 2}, {2, 1}, {1, 3}}; !slices.Equal(hops, want) {
		t.Errorf("hops %v, want %v", hops, want)
	}
	want := `{"type":9,"dest":3,"from":4,"msg":"to three"}`
	for _, m := range msgs {
		if m != want {
			t.Errorf("relayed %s, want %s", m, want)
		}
	}
	for id, n := range ns {
		got := tn.received(id)
		if id == 3 {
			if len(got) != 1 || got[0] != (MessageReceived{Type: protocol.TypeSingle, From: 4, Msg: "to three"}) {
				t.Errorf("node 3 received %v", got)
			}
		} else if len(got) != 0 {
			t.Errorf("node %d handled a SINGLE for 3: %v", n.ID(), got)
		}
	}
}

// §5.2: a SINGLE for a node not in the layout is dropped and counted;
// SendSingle to an unknown id or to ourselves returns false.
func TestRouteSingleNoRoute(t *testing.T) {
	tn, ns := tree5(t)
	before := ns[2].Stats().MessagesDropped
	ns[2].Receive(tn.now, ns[2].Connections()[0].Conn, []byte(`{"type":9,"dest":77,"from":1,"msg":"x"}`))
	rd := ns[2].Ready()
	if len(rd.Messages) != 0 || len(rd.Events) != 0 {
		t.Errorf("unroutable SINGLE produced %v", rd)
	}
	if got := ns[2].Stats().MessagesDropped; got != before+1 {
		t.Errorf("dropped %d → %d", before, got)
	}
	if ns[2].SendSingle(tn.now, 77, "x") || ns[2].SendSingle(tn.now, 2, "x") {
		t.Error("SendSingle to unknown or own id = true")
	}
	if ns[1].StartDelayMeasurement(tn.now, 77) {
		t.Error("StartDelayMeasurement(unknown) = true")
	}
}

// §5.2: a BROADCAST reaches every other node exactly once; the sender does
// not handle its own unless includeSelf.
func TestRouteBroadcastExactlyOnce(t *testing.T) {
	for _, self := range []bool{false, true} {
		t.Run(fmt.Sprint("includeSelf=", self), func(t *testing.T) {
			tn, ns := tree5(t)
			start := len(tn.log)
			ns[4].SendBroadcast(tn.now, "all", self)
			tn.settle()
			for id := range ns {
				got := tn.received(id)
				want := 1
				if id == 4 && !self {
					want = 0
				}
				if len(got) != want {
					t.Errorf("node %d got %d copies, want %d", id, len(got), want)
				}
				for _, m := range got {
					if m != (MessageReceived{Type: protocol.TypeBroadcast, From: 4, Msg: "all"}) {
						t.Errorf("node %d got %+v", id, m)
					}
				}
			}
			// One transmission per link: 4 links in a 5-node tree.
			n := 0
			for _, w := range tn.log[start:] {
				if headerOf(w.msg).Type == protocol.TypeBroadcast {
					n++
					if w.msg != `{"type":8,"dest":0,"from":4,"msg":"all"}` {
						t.Errorf("relayed %s", w.msg)
					}
				}
			}
			if n != 4 {
				t.Errorf("%d transmissions, want 4", n)
			}
		})
	}
}

// Not stock: our own broadcast coming back through a loop is dropped, not
// forwarded again.
func TestRouteOwnBroadcastNotForwarded(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.syncWith(1, true, `{"nodeId":2,"type":5,"dest":1,"from":2}`)
	p.syncWith(2, true, `{"nodeId":3,"type":5,"dest":1,"from":3}`)
	p.n.Ready()
	rd := p.recv(1, `{"type":8,"dest":0,"from":1,"msg":"mine"}`)
	if len(rd.Messages) != 0 || len(rd.Events) != 0 {
		t.Errorf("own broadcast handled: %+v", rd)
	}
	// Another node's broadcast goes to every synced link except its source,
	// all copies sharing one buffer.
	rd = p.recv(1, `{"type":8,"dest":0,"from":2,"msg":"theirs"}`)
	if got := texts(rd, 2); len(got) != 1 || len(texts(rd, 1)) != 0 {
		t.Errorf("forwarded %v", rd.Messages)
	}
}

// recorder is a plugin that records what it is given.
type recorder struct {
	types  []int
	host   Host
	got    []string
	conns  []ConnID
	events []Event
	ticks  int
	next   time.Time
}

func (r *recorder) Attach(h Host)           { r.host = h }
func (r *recorder) Types() []int            { return r.types }
func (r *recorder) Tick(now time.Time)      { r.ticks++ }
func (r *recorder) NextDeadline() time.Time { return r.next }
func (r *recorder) HandlePackage(now time.Time, c ConnID, h protocol.Header, raw []byte) {
	r.got = append(r.got, string(raw))
	r.conns = append(r.conns, c)
}
func (r *recorder) OnEvent(now time.Time, ev Event) { r.events = append(r.events, ev) }

// §5.2, §7: relays forward plugin packages by their routing key without
// understanding them; the destination's plugins get them by type; types no
// plugin takes become PackageReceived events.
func TestRoutePluginPackages(t *testing.T) {
	tn, ns := tree5(t)
	rec := &recorder{types: []int{20, protocol.TypeBroadcast}}
	ns[3].Use(rec)
	if rec.host != Host(ns[3]) {
		t.Fatal("plugin not attached")
	}
	single := `{"from":4,"dest":3,"routing":1,"type":20,"sensor":0.5}`
	if err := ns[4].SendRaw(tn.now, []byte(single)); err != nil {
		t.Fatal(err)
	}
	bcast := `{"from":4,"routing":2,"type":21,"x":1}`
	if err := ns[4].SendRaw(tn.now, []byte(bcast)); err != nil {
		t.Fatal(err)
	}
	ns[4].SendBroadcast(tn.now, "hello", false)
	tn.settle()
	want := []string{single, `{"type":8,"dest":0,"from":4,"msg":"hello"}`}
	if !slices.Equal(rec.got, want) {
		t.Errorf("plugin got %q, want %q", rec.got, want)
	}
	// Type 8 also reaches the application; type 21 (no plugin) arrives as
	// PackageReceived on every node but the sender, type 20 was consumed.
	if got := tn.received(3); len(got) != 1 {
		t.Errorf("node 3 MessageReceived %v", got)
	}
	for id := range ns {
		pk := eventsOf[PackageReceived](tn, id)
		want := 1
		if id == 4 {
			want = 0
		}
		if len(pk) != want {
			t.Errorf("node %d PackageReceived %v", id, pk)
			continue
		}
		if want == 1 && (string(pk[0].JSON) != bcast || pk[0].Header.Type != 21 || pk[0].Header.From != 4) {
			t.Errorf("node %d got %+v", id, pk[0])
		}
	}
	// The plugin saw the node's events as they happened.
	if len(rec.events) == 0 {
		t.Error("observer saw no events")
	}
}

// transitTaker takes the single packages of its types passing through
// whose body holds "take".
type transitTaker struct {
	recorder
	taken []string
}

func (r *transitTaker) HandleTransit(now time.Time, c ConnID, h protocol.Header, raw []byte) bool {
	if !strings.Contains(string(raw), `"take"`) {
		return false
	}
	r.taken = append(r.taken, string(raw))
	return true
}

// A TransitHandler on a relay sees single packages of its types passing
// through; what it takes goes no further, what it declines is forwarded
// as before, and packages addressed to the relay itself still reach
// HandlePackage.
func TestTransitHandler(t *testing.T) {
	tn, ns := tree5(t)
	relay := &transitTaker{recorder: recorder{types: []int{20}}}
	ns[2].Use(relay)
	end := &recorder{types: []int{20}}
	ns[1].Use(end)
	taken := `{"from":4,"dest":1,"routing":1,"type":20,"take":1}`
	passed := `{"from":4,"dest":1,"routing":1,"type":20,"pass":1}`
	other := `{"from":4,"dest":1,"routing":1,"type":21,"take":1}`
	mine := `{"from":4,"dest":2,"routing":1,"type":20,"take":1}`
	for _, m := range []string{taken, passed, other, mine} {
		if err := ns[4].SendRaw(tn.now, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	tn.settle()
	if !slices.Equal(relay.taken, []string{taken}) {
		t.Errorf("relay took %q", relay.taken)
	}
	if !slices.Equal(relay.got, []string{mine}) {
		t.Errorf("relay handled %q", relay.got)
	}
	if !slices.Equal(end.got, []string{passed}) {
		t.Errorf("destination got %q", end.got)
	}
	if pk := eventsOf[PackageReceived](tn, 1); len(pk) != 1 || string(pk[0].JSON) != other {
		t.Errorf("destination PackageReceived %v", pk)
	}
}

// plugin.hpp sendPackage: NEIGHBOUR with dest goes to that neighbour, without
// dest to all; ROUTING_ERROR and unknown destinations are errors.
func TestSendPackageRouting(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	p.syncWith(1, true, `{"nodeId":2,"subs":[{"nodeId":5}],"type":5,"dest":1,"from":2}`)
	p.syncWith(2, true, `{"nodeId":3,"type":5,"dest":1,"from":3}`)
	p.n.Ready()
	for _, tc := range []struct {
		msg   string
		conns []ConnID
		err   error
	}{
		{`{"from":1,"dest":3,"routing":0,"type":21}`, []ConnID{2}, nil},
		{`{"from":1,"dest":5,"routing":0,"type":21}`, []ConnID{1}, nil},
		{`{"from":1,"routing":0,"type":21}`, []ConnID{1, 2}, nil},
		{`{"from":1,"dest":5,"routing":1,"type":20}`, []ConnID{1}, nil},
		{`{"from":1,"dest":6,"routing":1,"type":20}`, nil, ErrNoRoute},
		{`{"from":1,"dest":5,"type":20}`, nil, ErrNotRoutable},
		{`{"from":1,"dest":5,"routing":"1","type":20}`, nil, ErrNotRoutable},
		{`not json`, nil, protocol.ErrSyntax},
	} {
		err := p.n.SendPackage(p.now, &protocol.Raw{JSON: []byte(tc.msg)})
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.msg, err, tc.err)
		}
		var conns []ConnID
		for _, o := range p.n.Ready().Messages {
			conns = append(conns, o.Conn)
			if string(o.Data) != tc.msg || o.Priority != PriorityNormal {
				t.Errorf("%s: sent %s prio %d", tc.msg, o.Data, o.Priority)
			}
		}
		if !slices.Equal(conns, tc.conns) {
			t.Errorf("%s: sent on %v, want %v", tc.msg, conns, tc.conns)
		}
	}
}

// Plugins are ticked and their deadlines count in NextDeadline.
func TestPluginTickAndDeadline(t *testing.T) {
	p := newProbe(t, Config{ID: 1})
	rec := &recorder{next: p.at(3 * time.Second)}
	p.n.Use(rec)
	if got := p.n.NextDeadline(); !got.Equal(rec.next) {
		t.Errorf("NextDeadline = %v, want the plugin's %v", got, rec.next)
	}
	p.n.Tick(p.at(3 * time.Second))
	if rec.ticks != 1 {
		t.Errorf("plugin ticked %d times", rec.ticks)
	}
	p.n.Emit(DelayMeasured{NodeID: 9})
	if rd := p.n.Ready(); len(rd.Events) != 1 || len(rec.events) != 1 {
		t.Errorf("Emit: ready %v, observer %v", rd.Events, rec.events)
	}
}
