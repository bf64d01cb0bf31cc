package ota

import (
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// repairProbe is one broadcast receiver (id 10) stepped by hand: its
// parent is 5, the distributor 1 sits behind the parent, and 7 is its
// child.
type repairProbe struct {
	t    *testing.T
	h    *fakeHost
	r    *Receiver
	now  time.Time
	img  []byte
	data [][]byte
}

const (
	probeDist   = 1
	probeParent = 5
	probeChild  = 7
	probeID     = "fw-1"
)

func newRepairProbe(t *testing.T) *repairProbe {
	t.Helper()
	img := testImage(64, 3)
	const cs = 16
	p := &repairProbe{t: t, img: img, now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	for i := 0; i < len(img); i += cs {
		p.data = append(p.data, img[i:min(i+cs, len(img))])
	}
	p.h = &fakeHost{id: 10, tree: protocol.NodeTree{NodeID: 10, Subs: []protocol.NodeTree{
		{NodeID: probeParent, Subs: []protocol.NodeTree{{NodeID: probeDist}}},
		{NodeID: probeChild},
	}}}
	r, err := NewReceiver(ReceiverConfig{Role: "r", Hardware: "h", Store: NewMemoryStore(""), Seed: 1,
		SelfTest: func(string) bool { return true }}, p.now)
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(p.h)
	p.r = r
	md5 := md5hex(img)
	p.recv(&Offer{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: probeID, MD5: md5, Role: "r", Hardware: "h",
		Size: int64(len(img)), Mode: string(ModeBroadcast), Method: "none", TSize: int64(len(img)), TMD5: md5,
		ChunkSize: cs, Chunks: len(p.data), Encoding: EncDense})
	p.h.sent = nil
	return p
}

func (p *repairProbe) recv(pkg protocol.Package) {
	p.t.Helper()
	raw := pkg.AppendJSON(nil)
	h, err := protocol.ParseHeader(raw)
	if err != nil {
		p.t.Fatal(err)
	}
	p.r.HandlePackage(p.now, mesh.ConnID(1), h, raw)
}

// advance ticks the receiver at each of its deadlines up to now+d.
func (p *repairProbe) advance(d time.Duration) {
	end := p.now.Add(d)
	for {
		dl := p.r.NextDeadline()
		if dl.IsZero() || dl.After(end) {
			break
		}
		p.now = dl
		p.r.Tick(p.now)
	}
	p.now = end
	p.r.Tick(p.now)
}

func (p *repairProbe) push(i int) {
	p.recv(&Chunk{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: probeID, Index: i, Data: Dense.EncodeToString(p.data[i])})
}

// needs returns and forgets the Needs sent, as (dest, parts).
func (p *repairProbe) needs() [][2]string {
	var out [][2]string
	for _, m := range p.h.take(TypeNeed) {
		n, err := DecodeNeed(m)
		if err != nil {
			p.t.Fatal(err)
		}
		out = append(out, [2]string{map[uint32]string{probeDist: "dist", probeParent: "parent"}[n.Dest], n.Parts})
	}
	return out
}

// A Refuse from the parent sends the asks it will not answer to the
// distributor at once, not after their deadline.
func TestRefuseAsksDistributorAtOnce(t *testing.T) {
	p := newRepairProbe(t)
	p.push(1) // chunk 0 was lost
	p.advance(nakJitter)
	if got := p.needs(); len(got) != 1 || got[0] != [2]string{"parent", "0"} {
		t.Fatalf("after the gap: needs %v, want chunk 0 from the parent", got)
	}
	p.advance(100 * time.Millisecond)
	p.recv(&Refuse{From: probeParent, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID})
	if got := p.needs(); len(got) != 1 || got[0] != [2]string{"dist", "0"} {
		t.Fatalf("on Refuse: needs %v, want chunk 0 from the distributor at once", got)
	}
	// A Refuse for another transfer changes nothing.
	p2 := newRepairProbe(t)
	p2.push(1)
	p2.advance(nakJitter)
	p2.needs()
	p2.recv(&Refuse{From: probeParent, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: "other"})
	if got := p2.needs(); len(got) != 0 {
		t.Fatalf("Refuse for another transfer: needs %v", got)
	}
}

// Once the push has ended, an unanswered ask is repeated after
// PostPushTimeout; during the push it waits NeedTimeout.
func TestAskTimeoutShortensAfterPush(t *testing.T) {
	p := newRepairProbe(t)
	p.push(1)
	p.advance(nakJitter)
	p.needs()
	// The first ask went out within nakJitter of the gap.
	p.advance(time.Second - nakJitter - time.Millisecond)
	if got := p.needs(); len(got) != 0 {
		t.Fatalf("during the push, asked again before NeedTimeout: %v", got)
	}
	p.advance(nakJitter + time.Millisecond)
	if got := p.needs(); len(got) != 1 || got[0] != [2]string{"parent", "0"} {
		t.Fatalf("during the push, after NeedTimeout: %v", got)
	}
	p.push(2)
	p.push(3)
	p.recv(&End{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: probeID, Sent: 4})
	p.needs()
	// The ask in flight now expires after the post-push timeout.
	p.advance(p.r.cfg.PostPushTimeout)
	if got := p.needs(); len(got) != 1 || got[0] != [2]string{"parent", "0"} {
		t.Fatalf("after the push, %v: needs %v, want chunk 0 again", p.r.cfg.PostPushTimeout, got)
	}
}

// A node that completed the transfer still answers its children's repair
// asks from its copy instead of refusing them.
func TestCompletedNodeServesChildren(t *testing.T) {
	p := newRepairProbe(t)
	for i := range p.data {
		p.push(i)
	}
	if md5, _ := p.r.cfg.Store.Active(); md5 != md5hex(p.img) {
		t.Fatalf("not installed: active %q", md5)
	}
	p.h.sent = nil
	p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Parts: "2"})
	p.advance(time.Second)
	if refused := p.h.take(TypeRefuse); len(refused) != 0 {
		t.Fatalf("refused: %s", refused)
	}
	chunks := p.h.take(TypeChunk)
	if len(chunks) != 1 {
		t.Fatalf("served %d chunks, want 1", len(chunks))
	}
	c, err := DecodeChunk(chunks[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := Dense.DecodeString(c.Data)
	if err != nil || c.Dest != probeChild || c.Index != 2 || string(got) != string(p.data[2]) {
		t.Fatalf("served %+v (%v), want chunk 2 to %d", c, err, probeChild)
	}
	// Another transfer is still refused.
	p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: "other", Parts: "0"})
	p.advance(time.Second)
	if refused := p.h.take(TypeRefuse); len(refused) != 1 {
		t.Fatalf("ask for another transfer: %d refusals, want 1", len(refused))
	}
}

// A report counts as congested only with at least minCongestedLost lost
// chunks: one loss among a few pushed chunks looks like heavy loss per
// hop but is what 1 % random loss gives now and then.
func TestCongestedNeedsSeveralLosses(t *testing.T) {
	tree := protocol.NodeTree{NodeID: 1}
	for id := uint32(2); id <= 21; id++ {
		tree.Subs = append(tree.Subs, protocol.NodeTree{NodeID: id})
	}
	for _, tc := range []struct {
		hi, lost  int
		congested int
	}{
		{10, 1, 0},                    // 10 % of a short report: chance
		{10, minCongestedLost - 1, 0}, // still too few to tell
		{30, minCongestedLost, 1},     // 10 % over enough chunks
		{100, 2, 0},                   // 2 %: below the target anyway
	} {
		d := NewDistributor(DistributorConfig{})
		d.Attach(&fakeHost{id: 1, tree: tree})
		c := &dcampaign{push: newPushControl()}
		d.observe(c, &Report{From: 2, High: tc.hi, Lost: tc.lost})
		if w := c.push.window; w.congested != tc.congested || w.reporters != 1 {
			t.Errorf("hi %d lost %d: congested %d of %d reporters, want %d", tc.hi, tc.lost, w.congested, w.reporters, tc.congested)
		}
	}
}
