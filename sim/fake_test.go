package sim

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
)

// fake is a minimal Machine for testing the engine: it records its inputs
// and sends what the test tells it to.
type fake struct {
	id       uint32
	conns    []mesh.ConnID
	ready    mesh.Ready
	deadline time.Time
	ticks    []time.Time
	got      []received
	connects []connectRec
	drops    []mesh.ConnID
	onRecv   func(f *fake, now time.Time, c mesh.ConnID, msg []byte)
}

type received struct {
	at   time.Time
	conn mesh.ConnID
	msg  string
}

type connectRec struct {
	at      time.Time
	conn    mesh.ConnID
	station bool
}

func (f *fake) Connect(now time.Time, c mesh.ConnID, station bool) {
	f.conns = append(f.conns, c)
	f.connects = append(f.connects, connectRec{now, c, station})
}

func (f *fake) Disconnect(now time.Time, c mesh.ConnID) {
	f.drops = append(f.drops, c)
	f.forget(c)
}

func (f *fake) forget(c mesh.ConnID) {
	for i, x := range f.conns {
		if x == c {
			f.conns = append(f.conns[:i], f.conns[i+1:]...)
			return
		}
	}
}

func (f *fake) Receive(now time.Time, c mesh.ConnID, msg []byte) {
	f.got = append(f.got, received{now, c, string(msg)})
	if f.onRecv != nil {
		f.onRecv(f, now, c, msg)
	}
}

func (f *fake) Tick(now time.Time) {
	f.ticks = append(f.ticks, now)
	if !f.deadline.After(now) {
		f.deadline = time.Time{}
	}
}

func (f *fake) Ready() mesh.Ready {
	rd := f.ready
	f.ready = mesh.Ready{}
	return rd
}

func (f *fake) NextDeadline() time.Time            { return f.deadline }
func (f *fake) ID() uint32                         { return f.id }
func (f *fake) NodeList(includeSelf bool) []uint32 { return nil }
func (f *fake) NodeTime(now time.Time) uint32      { return uint32(now.UnixMicro()) }
func (f *fake) send(c mesh.ConnID, msg string, p mesh.Priority) {
	f.ready.Messages = append(f.ready.Messages, mesh.Outgoing{Conn: c, Data: []byte(msg), Priority: p})
}
func (f *fake) close(c mesh.ConnID) {
	f.ready.Close = append(f.ready.Close, c)
	f.forget(c)
}

// fakeNet builds a network of count fake nodes (ids 1..count).
func fakeNet(t testing.TB, cfg Config, count int) (*Network, []*Node, []*fake) {
	t.Helper()
	n := New(cfg)
	var nodes []*Node
	var fakes []*fake
	for i := range count {
		id := uint32(i + 1)
		var fk *fake
		nd, err := n.AddNode(NodeSpec{
			Config: mesh.Config{ID: id},
			Machine: func(now time.Time, nd *Node) Machine {
				fk = &fake{id: id}
				return fk
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
		fakes = append(fakes, fk)
	}
	return n, nodes, fakes
}

// sendOn makes node nd send msgs on its connection to peer, now.
func sendOn(t testing.TB, nd, peer *Node, p mesh.Priority, msgs ...string) {
	t.Helper()
	c := connTo(t, nd, peer)
	if err := nd.Step(func(now time.Time, m Machine) {
		for _, s := range msgs {
			m.(*fake).send(c, s, p)
		}
	}); err != nil {
		t.Fatal(err)
	}
}

func connTo(t testing.TB, nd, peer *Node) mesh.ConnID {
	t.Helper()
	for _, l := range nd.links {
		if l.ends[0] == peer || l.ends[1] == peer {
			return l.id
		}
	}
	t.Fatalf("node %d has no connection to %d", nd.id, peer.id)
	return 0
}
