package status

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

var epoch = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// fakeMesh is a few fake hosts joined by a tree of links, delivering
// packages instantly and in order, on a virtual clock the test moves.
// It stands in for mesh.Node so the plugins can be tested alone.
type fakeMesh struct {
	t     *testing.T
	now   time.Time
	nodes map[uint32]*fakeHost
	links map[uint32][]uint32
	queue []delivery
	// drop, if set, loses the packages it returns true for.
	drop func(from, to uint32, msg []byte) bool
	// noRoute, if set, fails the sends it returns true for, as a node
	// does whose layout does not name the destination yet.
	noRoute func(from, to uint32, msg []byte) bool
	// delay is the one-way delay StartDelayMeasurement reports, in µs.
	delay int32
}

type delivery struct {
	to  uint32
	msg []byte
	// hop, when not 0, is the neighbour a single package reaches next on
	// its way to to; a TransitHandler there may take it.
	hop uint32
}

type fakeHost struct {
	m       *fakeMesh
	id      uint32
	root    bool
	up      bool
	plugins []mesh.Plugin
	stats   mesh.Stats
	events  []mesh.Event
	// eventTimes[i] is when events[i] was emitted.
	eventTimes []time.Time
	sent       [][]byte
	high       [][]byte // sent with SendRawPriority
	probes     []uint32
}

func newFakeMesh(t *testing.T) *fakeMesh {
	return &fakeMesh{t: t, now: epoch, nodes: map[uint32]*fakeHost{}, links: map[uint32][]uint32{}, delay: 2500}
}

func (m *fakeMesh) add(id uint32, root bool, plugins ...mesh.Plugin) *fakeHost {
	h := &fakeHost{m: m, id: id, root: root, up: true}
	m.nodes[id] = h
	for _, p := range plugins {
		h.use(p)
	}
	return h
}

func (h *fakeHost) use(p mesh.Plugin) {
	h.plugins = append(h.plugins, p)
	p.Attach(h)
}

// link joins a and b and tells both (a NewConnection event), and every
// other node that its layout changed.
func (m *fakeMesh) link(a, b uint32) {
	m.links[a] = append(m.links[a], b)
	m.links[b] = append(m.links[b], a)
	m.nodes[a].stats.Connections++
	m.nodes[b].stats.Connections++
	m.nodes[a].Emit(mesh.NewConnection{NodeID: b})
	m.nodes[b].Emit(mesh.NewConnection{NodeID: a})
	for _, id := range m.ids() {
		if id != a && id != b {
			m.nodes[id].Emit(mesh.ChangedConnections{NodeID: a})
		}
	}
}

// setUp powers a node off or on; its neighbours see the connection
// change and every other node the layout change (node sync, §4).
func (m *fakeMesh) setUp(id uint32, up bool) {
	h := m.nodes[id]
	h.up = up
	for _, other := range m.ids() {
		o := m.nodes[other]
		if other == id || !o.up {
			continue
		}
		switch {
		case slices.Contains(m.links[id], other) && up:
			o.Emit(mesh.NewConnection{NodeID: id})
		case slices.Contains(m.links[id], other):
			o.Emit(mesh.DroppedConnection{NodeID: id, Reason: "closed"})
		default:
			o.Emit(mesh.ChangedConnections{NodeID: id})
		}
	}
}

// tree is the layout as seen from id, over nodes that are up.
func (m *fakeMesh) tree(id, from uint32) protocol.NodeTree {
	t := protocol.NodeTree{NodeID: id, Root: m.nodes[id].root}
	for _, nb := range m.links[id] {
		if nb != from && m.nodes[nb].up {
			t.Subs = append(t.Subs, m.tree(nb, id))
		}
	}
	return t
}

func (h *fakeHost) ID() uint32                    { return h.id }
func (h *fakeHost) NodeTime(now time.Time) uint32 { return uint32(now.Sub(epoch).Microseconds()) }
func (h *fakeHost) Tree() protocol.NodeTree       { return h.m.tree(h.id, 0) }
func (h *fakeHost) Stats() mesh.Stats             { return h.stats }
func (h *fakeHost) Emit(ev mesh.Event)            { h.emitAt(h.m.now, ev) }
func (h *fakeHost) SendPackage(now time.Time, p protocol.Package) error {
	return h.SendRaw(now, p.AppendJSON(nil))
}

func (h *fakeHost) emitAt(now time.Time, ev mesh.Event) {
	h.events = append(h.events, ev)
	h.eventTimes = append(h.eventTimes, now)
	for _, p := range h.plugins {
		if o, ok := p.(mesh.EventObserver); ok {
			o.OnEvent(now, ev)
		}
	}
}

func (h *fakeHost) NodeList(includeSelf bool) []uint32 {
	var ids []uint32
	var walk func(t *protocol.NodeTree)
	walk = func(t *protocol.NodeTree) {
		if t.NodeID != h.id || includeSelf {
			ids = append(ids, t.NodeID)
		}
		for i := range t.Subs {
			walk(&t.Subs[i])
		}
	}
	t := h.Tree()
	walk(&t)
	slices.Sort(ids)
	return ids
}

func (h *fakeHost) SendRaw(now time.Time, msg []byte) error {
	hd, err := protocol.ParseHeader(msg)
	if err != nil {
		return err
	}
	msg = slices.Clone(msg)
	h.sent = append(h.sent, msg)
	switch hd.Routing {
	case protocol.RouteSingle:
		if _, ok := slices.BinarySearch(h.NodeList(false), hd.Dest); !ok || h.m.noRoute != nil && h.m.noRoute(h.id, hd.Dest, msg) {
			h.stats.MessagesDropped++
			return fmt.Errorf("fake: no route to %d", hd.Dest)
		}
		h.m.queue = append(h.m.queue, delivery{to: hd.Dest, msg: msg, hop: h.m.nextHop(h.id, hd.Dest)})
	case protocol.RouteBroadcast:
		for _, id := range h.NodeList(false) {
			h.m.queue = append(h.m.queue, delivery{to: id, msg: msg})
		}
	default:
		return fmt.Errorf("fake: routing %d", hd.Routing)
	}
	h.stats.MessagesTx++
	h.stats.BytesTx += uint64(len(msg))
	return nil
}

func (h *fakeHost) SendRawPriority(now time.Time, msg []byte, p mesh.Priority) error {
	if p < mesh.PriorityNormal {
		h.high = append(h.high, slices.Clone(msg))
	}
	return h.SendRaw(now, msg)
}

func (h *fakeHost) StartDelayMeasurement(now time.Time, id uint32) bool {
	if _, ok := slices.BinarySearch(h.NodeList(false), id); !ok {
		return false
	}
	h.probes = append(h.probes, id)
	h.emitAt(now, mesh.DelayMeasured{NodeID: id, Delay: h.m.delay})
	return true
}

// flush delivers everything queued (and what that causes).
func (m *fakeMesh) flush() {
	for len(m.queue) > 0 {
		d := m.queue[0]
		m.queue = m.queue[1:]
		to := m.nodes[d.to]
		if to == nil || !to.up {
			continue
		}
		hd, err := protocol.ParseHeader(d.msg)
		if err != nil {
			m.t.Fatalf("fake mesh: undecodable message %s: %v", d.msg, err)
		}
		if d.hop != 0 && d.hop != d.to {
			// A relay on the way: its transit handlers first, else on.
			relay := m.nodes[d.hop]
			if relay == nil || !relay.up {
				continue
			}
			if !relay.transit(m.now, hd, d.msg) {
				m.queue = append(m.queue, delivery{to: d.to, msg: d.msg, hop: m.nextHop(d.hop, d.to)})
			}
			continue
		}
		if m.drop != nil && m.drop(hd.From, d.to, d.msg) {
			continue
		}
		to.stats.MessagesRx++
		to.stats.BytesRx += uint64(len(d.msg))
		to.receive(m.now, hd, d.msg)
	}
}

// nextHop is the neighbour of from on the way to to (0 if none).
func (m *fakeMesh) nextHop(from, to uint32) uint32 {
	t := m.tree(from, 0)
	for i := range t.Subs {
		if containsNode(&t.Subs[i], to) {
			return t.Subs[i].NodeID
		}
	}
	return 0
}

func containsNode(t *protocol.NodeTree, id uint32) bool {
	if t.NodeID == id {
		return true
	}
	for i := range t.Subs {
		if containsNode(&t.Subs[i], id) {
			return true
		}
	}
	return false
}

// transit offers a single package passing through to the plugins that
// take packages in transit, as mesh.Node does; true if one took it.
func (h *fakeHost) transit(now time.Time, hd protocol.Header, msg []byte) bool {
	for _, p := range h.plugins {
		if t, ok := p.(mesh.TransitHandler); ok && slices.Contains(p.Types(), hd.Type) && t.HandleTransit(now, 1, hd, msg) {
			return true
		}
	}
	return false
}

// receive hands a package to the plugins that claim its type, else
// reports it as an event, the way mesh.Node does.
func (h *fakeHost) receive(now time.Time, hd protocol.Header, msg []byte) {
	claimed := false
	for _, p := range h.plugins {
		if slices.Contains(p.Types(), hd.Type) {
			p.HandlePackage(now, 1, hd, msg)
			claimed = true
		}
	}
	if claimed {
		return
	}
	switch hd.Type {
	case protocol.TypeBroadcast, protocol.TypeSingle:
		p, err := protocol.Decode(msg)
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *protocol.Broadcast:
			h.emitAt(now, mesh.MessageReceived{Type: hd.Type, From: p.From, Msg: p.Msg})
		case *protocol.Single:
			h.emitAt(now, mesh.MessageReceived{Type: hd.Type, From: p.From, Msg: p.Msg})
		}
	default:
		h.emitAt(now, mesh.PackageReceived{Header: hd, JSON: msg})
	}
}

// inject delivers msg to node id as if it arrived from the mesh.
func (m *fakeMesh) inject(id uint32, msg string) {
	hd, err := protocol.ParseHeader([]byte(msg))
	if err != nil {
		m.t.Fatal(err)
	}
	m.nodes[id].receive(m.now, hd, []byte(msg))
	m.run(m.now)
}

func (m *fakeMesh) ids() []uint32 {
	ids := make([]uint32, 0, len(m.nodes))
	for id := range m.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// run advances the clock to until, ticking every plugin at its deadlines.
func (m *fakeMesh) run(until time.Time) {
	if until.Before(m.now) {
		m.t.Fatalf("fake mesh: run to %v, already at %v", until, m.now)
	}
	m.flush()
	for steps := 0; ; steps++ {
		if steps > 1_000_000 {
			m.t.Fatal("fake mesh: plugins never settle")
		}
		var next time.Time
		for _, id := range m.ids() {
			h := m.nodes[id]
			if !h.up {
				continue
			}
			for _, p := range h.plugins {
				next = earliest(next, p.NextDeadline())
			}
		}
		if next.IsZero() || next.After(until) {
			m.now = until
			return
		}
		if next.After(m.now) {
			m.now = next
		}
		for _, id := range m.ids() {
			h := m.nodes[id]
			if !h.up {
				continue
			}
			for _, p := range h.plugins {
				if d := p.NextDeadline(); !d.IsZero() && !d.After(m.now) {
					p.Tick(m.now)
				}
			}
		}
		m.flush()
	}
}

func (m *fakeMesh) runFor(d time.Duration) { m.run(m.now.Add(d)) }

// sentOfType decodes the status packages a host sent of one type.
func sentOfType[T any](t *testing.T, h *fakeHost, typ int) []T {
	t.Helper()
	var out []T
	for _, msg := range h.sent {
		hd, _ := protocol.ParseHeader(msg)
		if hd.Type != typ {
			continue
		}
		p, err := Decode(msg)
		if err != nil {
			t.Fatalf("sent package does not decode: %v\n%s", err, msg)
		}
		out = append(out, any(p).(T))
	}
	return out
}

// eventsOf returns a host's events of one type.
func eventsOf[T mesh.Event](h *fakeHost) []T {
	var out []T
	for _, ev := range h.events {
		if e, ok := ev.(T); ok {
			out = append(out, e)
		}
	}
	return out
}
