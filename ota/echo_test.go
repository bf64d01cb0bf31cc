package ota

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
	"github.com/meshfleet/meshfleet/sim"
)

// echo makes nodes take a share of the OTA packages they receive a second
// time, up to lag later, on the same connection: what a station's second
// TCP connection to its parent would carry if the mesh used both (a
// broadcast flooded on both, a routed package on either, the old
// connection's segments late). The mesh refuses such a link (sim.Redial),
// so this stands in for it to show the OTA layer copes with duplicated and
// reordered packages from any source. A copy goes through the mesh like
// the original: relayed, flooded on, handled.
type echo struct {
	share  float64
	lag    time.Duration
	copies map[int]int // copies handed to the nodes, by package type
}

// spec builds spec's node as a mesh node that echoes; a nil echo leaves
// spec as it is.
func (e *echo) spec(spec sim.NodeSpec) sim.NodeSpec {
	if e == nil {
		return spec
	}
	plugins := spec.Plugins
	spec.Machine = func(now time.Time, nd *sim.Node) sim.Machine {
		mn := mesh.New(nd.Spec().Config, now)
		for _, p := range plugins(nd) {
			mn.Use(p)
		}
		return &echoNode{Node: mn, e: e, rng: rand.New(rand.NewPCG(uint64(nd.ID()), uint64(nd.Restarts())))}
	}
	return spec
}

type echoNode struct {
	*mesh.Node
	e    *echo
	rng  *rand.Rand
	late []lateCopy // by time
}

type lateCopy struct {
	at   time.Time
	conn mesh.ConnID
	msg  []byte
}

func echoed(typ int) bool {
	switch typ {
	case protocol.TypeOTAAnnounce, protocol.TypeOTADataRequest, protocol.TypeOTAData,
		TypeOffer, TypeNeed, TypeChunk, TypeReport, TypeRefuse, TypeEnd:
		return true
	}
	return false
}

func (n *echoNode) Receive(now time.Time, c mesh.ConnID, msg []byte) {
	n.Node.Receive(now, c, msg)
	h, err := protocol.ParseHeader(msg)
	if err != nil || !echoed(h.Type) || n.rng.Float64() >= n.e.share {
		return
	}
	at := now.Add(time.Duration(n.rng.Int64N(int64(n.e.lag) + 1)))
	k := sort.Search(len(n.late), func(i int) bool { return n.late[i].at.After(at) })
	n.late = slices.Insert(n.late, k, lateCopy{at, c, slices.Clone(msg)})
}

func (n *echoNode) Tick(now time.Time) {
	for len(n.late) > 0 && !n.late[0].at.After(now) {
		l := n.late[0]
		n.late = n.late[1:]
		if n.e.copies == nil {
			n.e.copies = map[int]int{}
		}
		h, _ := protocol.ParseHeader(l.msg)
		n.e.copies[h.Type]++
		n.Node.Receive(now, l.conn, l.msg) // dropped if the connection is gone
	}
	n.Node.Tick(now)
}

func (n *echoNode) NextDeadline() time.Time {
	d := n.Node.NextDeadline()
	if len(n.late) > 0 && (d.IsZero() || n.late[0].at.Before(d)) {
		return n.late[0].at
	}
	return d
}

// Every mode installs everywhere when a third of the OTA packages come
// twice, the copy up to 3 s late: duplicate chunks, offers, ends, needs,
// repair answers and reports, and copies behind newer packages. The
// distributor's record ends as the nodes are.
func TestDuplicatedAndLatePackages(t *testing.T) {
	for _, tc := range []struct {
		mode   Mode
		method string
		p2p    bool
	}{
		{ModeStock, "none", false},
		{ModePipelined, "deflate", false},
		{ModeBroadcast, "deflate", false},
		{ModeBroadcast, "none", true},
	} {
		t.Run(fmt.Sprintf("%s/%s/p2p=%v", tc.mode, tc.method, tc.p2p), func(t *testing.T) {
			o := rigOpts{n: 12, model: sim.ESP8266(), seed: 21, echo: &echo{share: 0.3, lag: 3 * time.Second}}
			if tc.p2p {
				o.rcfg = func(id uint32) ReceiverConfig {
					return ReceiverConfig{Role: "sensor", Hardware: "ESP32", SelfTest: func(string) bool { return true }, PeerToPeer: true, ServeConfirmed: true}
				}
			}
			r := newRig(t, o)
			c := r.start(CampaignSpec{ID: "c", Image: sensorImage(31), Mode: tc.mode, Method: tc.method})
			if !r.runUntilInstalled(c.Image.MD5, 30*time.Minute) {
				t.Fatalf("installed on %d of %d", r.installed(c.Image.MD5), len(r.nodes))
			}
			r.net.RunFor(3 * time.Minute) // the late copies and the outcome reports
			r.checkRecord(c, c.Image.MD5)
			dup := 0
			for _, rc := range r.recv {
				dup += rc.Stats().DuplicateChunk
			}
			if dup == 0 || o.echo.copies[TypeReport] == 0 {
				t.Errorf("copies %v, %d duplicate chunks: the packages were not duplicated", o.echo.copies, dup)
			}
			t.Logf("copies by type %v, %d duplicate chunks, done at %v", o.echo.copies, dup, r.net.Elapsed())
		})
	}
}

// A newer campaign supersedes a running one while copies of the old
// one's packages still come late: no node goes back to the old image.
func TestLateOffersOfASupersededCampaign(t *testing.T) {
	r := newRig(t, rigOpts{n: 12, model: sim.ESP8266(), seed: 22, echo: &echo{share: 0.3, lag: 8 * time.Second}})
	a := r.start(CampaignSpec{ID: "a", Image: sensorImage(41), Mode: ModeBroadcast, Method: "deflate"})
	r.net.RunUntil(func() bool { return r.held(r.nodes[11].ID()) > 3 }, time.Hour)
	b := r.start(CampaignSpec{ID: "b", Image: sensorImage(42), Mode: ModeBroadcast, Method: "deflate"})
	if !r.runUntilInstalled(b.Image.MD5, 30*time.Minute) {
		t.Fatalf("installed on %d of %d", r.installed(b.Image.MD5), len(r.nodes))
	}
	r.net.RunFor(3 * time.Minute)
	if n := r.installed(b.Image.MD5); n != len(r.nodes) {
		t.Fatalf("%d of %d nodes still run the newer image", n, len(r.nodes))
	}
	if a.State != CampaignSuperseded {
		t.Errorf("campaign a %s", a.State)
	}
	r.checkRecord(b, b.Image.MD5)
}

// checkRecord checks that the distributor's record of c has every node
// confirmed on md5, as its store says.
func (r *rig) checkRecord(c *Campaign, md5 string) {
	r.t.Helper()
	for id, st := range r.stores {
		if a, ok := st.Active(); a != md5 || !ok || md5hex(st.Image()) != md5 {
			r.t.Errorf("node %d runs %s (confirmed %v)", id, a, ok)
		}
		p, ok := c.Node(id)
		if !ok || p.State != StateConfirmed || p.Active != md5 {
			r.t.Errorf("distributor: node %d %s active %s (%v)", id, p.State, p.Active, ok)
		}
	}
}
