package ota

import (
	"slices"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/protocol"
)

// peerProbe is a repair probe whose node installed the image, confirmed
// it and restarted into it with PeerToPeer: the transfer's staged chunks
// are gone, only the running slot holds the image.
func peerProbe(t *testing.T) *repairProbe {
	t.Helper()
	p := newRepairProbe(t)
	p.rebooted(false)
	p.usePeerReceiver(t, p.r.cfg.Store, func(string) bool { return true })
	return p
}

// offerOf is the probe image's offer as transfer id with method m.
func (p *repairProbe) offerOf(t *testing.T, id string, m compress.Method) (*Offer, []byte) {
	t.Helper()
	data, err := compress.Compress(m, p.img)
	if err != nil {
		t.Fatal(err)
	}
	const cs = 16
	return &Offer{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: id, MD5: md5hex(p.img), Role: "r", Hardware: "h",
		Size: int64(len(p.img)), Mode: string(ModeBroadcast), Method: string(m), TSize: int64(len(data)), TMD5: md5hex(data),
		ChunkSize: cs, Chunks: (len(data) + cs - 1) / cs, Encoding: EncDense}, data
}

// usePeerReceiver gives the probe's node a new receiver with PeerToPeer
// on store, as after a restart.
func (p *repairProbe) usePeerReceiver(t *testing.T, store Store, selfTest func(string) bool) {
	t.Helper()
	r, err := NewReceiver(ReceiverConfig{Role: "r", Hardware: "h", Store: store, Seed: 1, PeerToPeer: true, SelfTest: selfTest}, p.now)
	if err != nil {
		t.Fatal(err)
	}
	r.Attach(p.h)
	p.r = r
}

// offeredByPeer hands the node the probe image's offer as a peer sends
// it: hop by hop, to this node.
func (p *repairProbe) offeredByPeer(t *testing.T) {
	t.Helper()
	o, _ := p.offerOf(t, probeID, compress.None)
	o.Routing = int(protocol.RouteNeighbour)
	p.recv(&offerTo{Offer: *o, dest: 10})
}

// allAsked fails t unless the node, within 500 ms, asks and asks only want.
func (p *repairProbe) allAsked(t *testing.T, want uint32) {
	t.Helper()
	p.h.sent = nil
	p.advance(500 * time.Millisecond)
	needs := p.h.take(TypeNeed)
	if len(needs) == 0 {
		t.Fatal("nothing asked")
	}
	for _, raw := range needs {
		if n, _ := DecodeNeed(raw); n.Dest != want {
			t.Fatalf("asked %d, want %d", n.Dest, want)
		}
	}
}

// A peer serves a compressed transfer of the image it runs: it packs the
// running image again and serves the result, which is exactly the
// transfer offered; to a node that is not its neighbour, routed.
func TestPeerServesCompressedTransferPackedAgain(t *testing.T) {
	p := peerProbe(t)
	o, data := p.offerOf(t, "fw-z", compress.Deflate)
	p.recv(o)
	const far = 77 // not a neighbour: answered routed
	p.h.tree.Subs[1].Subs = []protocol.NodeTree{{NodeID: far}}
	p.recv(&Need{From: far, Dest: 10, Routing: int(protocol.RouteSingle), ID: "fw-z", Parts: "0-1"})
	p.advance(time.Second)
	if refused := p.h.take(TypeRefuse); len(refused) != 0 {
		t.Fatalf("refused: %s", refused)
	}
	chunks := p.h.take(TypeChunk)
	if len(chunks) != 2 {
		t.Fatalf("served %d chunks, want 2", len(chunks))
	}
	for k, raw := range chunks {
		h, _ := protocol.ParseHeader(raw)
		c, err := DecodeChunk(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := Dense.DecodeString(c.Data)
		want := data[16*k : min(16*k+16, len(data))]
		if c.Dest != far || h.Routing != protocol.RouteSingle || string(got) != string(want) {
			t.Fatalf("served %+v routing %d, want chunk %d of the compressed transfer to %d routed", c, h.Routing, k, far)
		}
	}
}

// A peer never serves what it has not verified, nor a mix: a transfer
// whose compressed bytes it cannot make again exactly, a transfer of
// another image, an image not confirmed yet.
func TestPeerServesOnlyTheVerifiedImage(t *testing.T) {
	p := peerProbe(t)
	o, _ := p.offerOf(t, "fw-other-compressor", compress.Deflate)
	o.TMD5 = md5hex([]byte("made by another compressor"))
	p.recv(o)
	o2, _ := p.offerOf(t, "fw-other-image", compress.None)
	o2.MD5 = md5hex([]byte("another image"))
	o2.Nodes = []uint32{probeChild} // not for this node: it does not fetch it
	p.recv(o2)
	for _, id := range []string{"fw-other-compressor", "fw-other-image", "never-offered"} {
		p.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: id, Parts: "0"})
		p.advance(time.Second)
		if chunks := p.h.take(TypeChunk); len(chunks) != 0 {
			t.Fatalf("%s: served %d chunks", id, len(chunks))
		}
		if refused := p.h.take(TypeRefuse); len(refused) != 1 {
			t.Fatalf("%s: %d refusals, want 1", id, len(refused))
		}
	}

	// A node in its trial (switched, not yet confirmed) serves nothing.
	trial := newRepairProbe(t)
	for i := range trial.data {
		trial.push(i)
	}
	store := trial.r.cfg.Store
	trial.usePeerReceiver(t, store, nil)
	if _, confirmed := store.Active(); confirmed {
		t.Fatal("the trial image is confirmed already")
	}
	o3, _ := trial.offerOf(t, probeID, compress.None)
	trial.recv(o3)
	trial.h.sent = nil
	trial.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Parts: "0"})
	trial.advance(100 * time.Millisecond)
	if chunks := trial.h.take(TypeChunk); len(chunks) != 0 {
		t.Fatalf("a trial image: served %d chunks", len(chunks))
	}

	// A transfer still coming in goes to neighbours only (hop by hop, as
	// the push): a node further away is refused its unverified chunks.
	fetching := newRepairProbe(t)
	fetching.push(0)
	const far = 77
	fetching.h.tree.Subs[1].Subs = []protocol.NodeTree{{NodeID: far}}
	fetching.h.sent = nil
	fetching.recv(&Need{From: far, Dest: 10, Routing: int(protocol.RouteSingle), ID: probeID, Parts: "0"})
	fetching.advance(100 * time.Millisecond)
	if chunks := fetching.h.take(TypeChunk); len(chunks) != 0 {
		t.Fatalf("unverified chunks served to a node two hops away: %d", len(chunks))
	}
	fetching.recv(&Need{From: probeChild, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Parts: "0"})
	fetching.advance(100 * time.Millisecond)
	if chunks := fetching.h.take(TypeChunk); len(chunks) != 1 {
		t.Fatalf("the child's repair: served %d chunks, want 1", len(chunks))
	}
}

// A neighbour that connects is offered the image a peer runs, as the
// distributor made the offer (reports go to it), hop by hop, once it is
// routable, and once more in case the first was lost.
func TestPeerOffersToAConnectingNeighbour(t *testing.T) {
	p := peerProbe(t)
	o, _ := p.offerOf(t, probeID, compress.None)
	p.recv(o)
	p.h.sent = nil
	const late = 42
	p.r.OnEvent(p.now, mesh.NewConnection{NodeID: late})
	p.advance(time.Second)
	if offers := p.h.take(TypeOffer); len(offers) != 0 {
		t.Fatalf("offered %d times before the neighbour is routable", len(offers))
	}
	p.h.tree.Subs = append(p.h.tree.Subs, protocol.NodeTree{NodeID: late})
	p.advance(5 * time.Second)
	offers := p.h.take(TypeOffer)
	if len(offers) != peerOfferSends {
		t.Fatalf("sent %d offers, want %d", len(offers), peerOfferSends)
	}
	h, _ := protocol.ParseHeader(offers[0])
	got, err := DecodeOffer(offers[0])
	if err != nil || h.Routing != protocol.RouteNeighbour || h.Dest != late || got.From != probeDist || got.ID != probeID {
		t.Fatalf("offer %s (%v), want the distributor's offer to %d hop by hop", offers[0], err, late)
	}
}

// A node that takes a peer's offer after the push asks at once, not
// after the push's idle timeout (6 s): that wait, and the minute to the
// distributor's next announce, were most of a straggler's time.
func TestLateOfferIsFetchedAtOnce(t *testing.T) {
	p := newRepairProbe(t)
	p.usePeerReceiver(t, NewMemoryStore(""), nil)
	p.offeredByPeer(t)
	p.allAsked(t, probeParent) // the nearest
}

// The nearest nodes come first, those on the path to the distributor
// before others as near, then up the path; the distributor is not a
// candidate and off-path nodes are bounded.
func TestSourcesNearestFirst(t *testing.T) {
	//        1 (dist) ── 2 (beyond the distributor: not asked)
	//        |
	//        4 ── 8 ── 9
	//        |
	//   6 ── 5 (parent)
	//        |
	//   self 10 ── 30 ── 31
	tree := protocol.NodeTree{NodeID: 10, Subs: []protocol.NodeTree{
		{NodeID: 5, Subs: []protocol.NodeTree{
			{NodeID: 6},
			{NodeID: 4, Subs: []protocol.NodeTree{{NodeID: 1, Subs: []protocol.NodeTree{{NodeID: 2}}}, {NodeID: 8, Subs: []protocol.NodeTree{{NodeID: 9}}}}},
		}},
		{NodeID: 30, Subs: []protocol.NodeTree{{NodeID: 31}}},
	}}
	var s sources
	s.pick(tree, 10, 1)
	want := []uint32{5, 30, 4, 6, 31, 8, 9}
	if !slices.Equal(s.list, want) {
		t.Fatalf("candidates %v, want %v", s.list, want)
	}
}

// A node that takes a peer's offer as it joins may not know the layout
// yet: it picks its sources again once it does, rather than ask the
// distributor for everything.
func TestPeerSourcesPickedAgainOnceTheLayoutIsKnown(t *testing.T) {
	p := newRepairProbe(t)
	layout := p.h.tree
	p.h.tree = protocol.NodeTree{NodeID: 10}
	p.usePeerReceiver(t, NewMemoryStore(""), nil)
	p.offeredByPeer(t)
	p.h.tree = layout
	p.allAsked(t, probeParent)
}

// Without PeerToPeer the one source is the parent the node has now: a
// node that hangs below another relay after a reboot asks that one.
func TestRepairSourceFollowsTheParent(t *testing.T) {
	p := newRepairProbe(t)
	p.push(0)
	p.recv(&End{From: probeDist, Routing: int(protocol.RouteBroadcast), ID: probeID, Sent: len(p.data)})
	const other = 6
	p.h.tree = protocol.NodeTree{NodeID: 10, Subs: []protocol.NodeTree{{NodeID: other, Subs: []protocol.NodeTree{{NodeID: probeDist}}}}}
	p.allAsked(t, other) // the new parent
}

// A peer fetch moves on from a candidate that refuses, one that leaves
// the mesh mid-transfer and one that goes silent, up the path, and ends
// at the distributor.
func TestPeerFetchFallsBack(t *testing.T) {
	p := newRepairProbe(t)
	// self 10 ── 5 (parent) ── 4 ── 1 (dist); 30 a child.
	p.h.tree = protocol.NodeTree{NodeID: 10, Subs: []protocol.NodeTree{
		{NodeID: probeParent, Subs: []protocol.NodeTree{{NodeID: 4, Subs: []protocol.NodeTree{{NodeID: probeDist}}}}},
		{NodeID: 30},
	}}
	p.usePeerReceiver(t, NewMemoryStore(""), nil)
	p.offeredByPeer(t)
	asked := func() (uint32, protocol.Routing) {
		t.Helper()
		p.advance(500 * time.Millisecond)
		needs := p.h.take(TypeNeed)
		if len(needs) == 0 {
			t.Fatal("nothing asked")
		}
		last := needs[len(needs)-1]
		h, _ := protocol.ParseHeader(last)
		n, _ := DecodeNeed(last)
		return n.Dest, h.Routing
	}
	if to, rt := asked(); to != probeParent || rt != protocol.RouteNeighbour {
		t.Fatalf("asked %d (routing %d) first, want the parent hop by hop", to, rt)
	}
	// The parent serves a chunk, then leaves mid-transfer: its child 30
	// is next.
	p.recv(&Chunk{From: probeParent, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID, Index: 0, Data: Dense.EncodeToString(p.data[0])})
	if _, have, _, _ := p.r.Downloading(); have != 1 {
		t.Fatalf("the parent's chunk not taken: %d held", have)
	}
	p.h.tree = protocol.NodeTree{NodeID: 10, Subs: []protocol.NodeTree{
		{NodeID: 4, Subs: []protocol.NodeTree{{NodeID: probeDist}}}, // reached directly now
		{NodeID: 30},
	}}
	p.advance(2 * time.Second)
	p.h.sent = nil
	p.advance(sourceSilence)
	needs := p.h.take(TypeNeed)
	var dests []uint32
	for _, raw := range needs {
		n, _ := DecodeNeed(raw)
		dests = append(dests, n.Dest)
	}
	if !slices.Contains(dests, 4) && !slices.Contains(dests, 30) {
		t.Fatalf("after the parent left, asked %v, want 4 or 30", dests)
	}
	// Both refuse (the child is nearer, so asked first): the
	// distributor, routed.
	p.h.sent = nil
	p.recv(&Refuse{From: 30, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID})
	p.recv(&Refuse{From: 4, Dest: 10, Routing: int(protocol.RouteNeighbour), ID: probeID})
	if to, rt := asked(); to != probeDist || rt != protocol.RouteSingle {
		t.Fatalf("asked %d (routing %d) last, want the distributor routed", to, rt)
	}
	// A chunk from the parent that left (a late answer) is still taken
	// from a candidate asked; a bystander's is not.
	p.recv(&Chunk{From: 99, Dest: 10, Routing: int(protocol.RouteSingle), ID: probeID, Index: 1, Data: Dense.EncodeToString(p.data[1])})
	if _, have, _, _ := p.r.Downloading(); have != 1 {
		t.Fatalf("a bystander's chunk taken: %d held", have)
	}
}
