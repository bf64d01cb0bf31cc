package ota

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// sources is where a receiver asks for the chunks it misses: the nearest
// nodes that may hold the image first, by hops in the mesh layout every
// node knows (subConnectionJson), the nodes on the path to the
// distributor before others as near, then up that path, and the
// distributor last; nodes reached through the distributor are not asked.
// A node that does not hold the transfer answers with Refuse, so probing
// a non-holder costs one round trip; one that goes silent (it left, or
// is busy rebooting) is passed over after sourceSilence.
type sources struct {
	list []uint32 // candidates, nearest first; the distributor is not one
	k    int      // candidates before k were passed over
	cur  uint32   // the candidate asked now; 0: none yet, or the distributor
	hi   int      // index of the farthest candidate asked + 1
	// waitingSince is when cur was first asked with nothing come back
	// from it since; zero: nothing outstanding.
	waitingSince time.Time
}

// maxOffPath bounds the candidates off the path to the distributor (a
// sibling's subtree, say) probed before going up the path.
const maxOffPath = 6

// sourceSilence is how long a candidate may leave asks unanswered before
// the next one is asked.
const sourceSilence = 2 * time.Second

// pick lists the candidates for a transfer from dist as the layout
// stands now.
func (s *sources) pick(tree protocol.NodeTree, self, dist uint32) {
	type cand struct {
		id     uint32
		hops   int
		onPath bool
	}
	var cands []cand
	var path func(t *protocol.NodeTree) bool // marks the path to dist
	onPath := map[uint32]bool{}
	path = func(t *protocol.NodeTree) bool {
		if t.NodeID == dist {
			return true
		}
		for i := range t.Subs {
			if path(&t.Subs[i]) {
				onPath[t.NodeID] = true
				return true
			}
		}
		return false
	}
	var walk func(t *protocol.NodeTree, hops int)
	walk = func(t *protocol.NodeTree, hops int) {
		for i := range t.Subs {
			c := &t.Subs[i]
			if c.NodeID == dist {
				// Nodes beyond the distributor are reached through its
				// radio: the very load peers take off it.
				continue
			}
			if c.NodeID != self && c.NodeID != 0 {
				cands = append(cands, cand{id: c.NodeID, hops: hops})
			}
			walk(c, hops+1)
		}
	}
	for i := range tree.Subs {
		path(&tree.Subs[i])
	}
	walk(&tree, 1)
	for i := range cands {
		cands[i].onPath = onPath[cands[i].id]
	}
	slices.SortStableFunc(cands, func(a, b cand) int {
		if a.hops != b.hops {
			return a.hops - b.hops
		}
		if a.onPath != b.onPath {
			if a.onPath {
				return -1
			}
			return 1
		}
		return int(int64(a.id) - int64(b.id))
	})
	s.list, s.k, s.cur, s.hi, s.waitingSince = s.list[:0], 0, 0, 0, time.Time{}
	off := 0
	for _, c := range cands {
		if !c.onPath {
			if off >= maxOffPath {
				continue
			}
			off++
		}
		s.list = append(s.list, c.id)
	}
}

// current is the candidate to ask: the first not passed over that is in
// the mesh now (one away for a moment, a relay rebooting, is asked again
// once back); 0: the distributor.
func (s *sources) current(reachable func(uint32) bool) uint32 {
	for j := s.k; j < len(s.list); j++ {
		if reachable(s.list[j]) {
			if s.list[j] != s.cur {
				s.cur, s.waitingSince = s.list[j], time.Time{}
			}
			s.hi = max(s.hi, j+1)
			return s.cur
		}
	}
	s.cur = 0
	return 0
}

// passOver passes over the candidate asked now and those before it.
func (s *sources) passOver() {
	if j := slices.Index(s.list, s.cur); j >= s.k {
		s.k = j + 1
	}
	s.cur, s.waitingSince = 0, time.Time{}
}

// asked notes asks sent to the current candidate.
func (s *sources) asked(now time.Time) {
	if s.waitingSince.IsZero() {
		s.waitingSince = now
	}
}

// heard notes a chunk from node from: the current candidate answers.
func (s *sources) heard(from uint32) {
	if from != 0 && from == s.cur {
		s.waitingSince = time.Time{}
	}
}

// refused passes over node from, if it is the current candidate.
func (s *sources) refused(from uint32) bool {
	if from != 0 && from == s.cur {
		s.passOver()
		return true
	}
	return false
}

// silent passes over the current candidate if it left asks unanswered
// for sourceSilence.
func (s *sources) silent(now time.Time) {
	if s.cur != 0 && !s.waitingSince.IsZero() && now.Sub(s.waitingSince) >= sourceSilence {
		s.passOver()
	}
}

// tried reports whether from is a candidate asked so far: its chunks are
// taken (the image's md5, and signature, are checked once all are in).
func (s *sources) tried(from uint32) bool {
	return from != 0 && slices.Contains(s.list[:min(s.hi, len(s.list))], from)
}

// pickSources lists where t's missing chunks are asked for: with
// PeerToPeer the nearest nodes first; otherwise the parent towards the
// distributor, if it is not the distributor.
func (r *Receiver) pickSources(t *incoming) {
	if r.cfg.PeerToPeer {
		t.src.pick(r.host.Tree(), r.host.ID(), t.dist)
		return
	}
	t.src.list = t.src.list[:0]
	if p := r.parent(t.dist); p != 0 && p != t.dist {
		t.src.list = append(t.src.list, p)
	}
}

// followParent keeps the one candidate of a receiver without PeerToPeer
// the parent it has now: after a relay's reboot the node may hang below
// another. A refusal stays: the distributor is asked from then on. With
// PeerToPeer, a list picked empty is picked again.
func (r *Receiver) followParent(t *incoming) {
	if r.cfg.PeerToPeer {
		if len(t.src.list) == 0 {
			// Picked before this node knew the layout (it has just
			// joined): pick again now that it may.
			t.src.pick(r.host.Tree(), r.host.ID(), t.dist)
		}
		return
	}
	if t.src.k > 0 {
		return
	}
	p := r.parent(t.dist)
	if p == 0 || p == t.dist {
		return // none for now: the distributor, or the old one once back
	}
	if len(t.src.list) == 0 {
		t.src.list = append(t.src.list, p)
	} else {
		t.src.list[0] = p
	}
}

// reachable reports whether node id is in the mesh now.
func (r *Receiver) reachable(id uint32) bool { return r.parent(id) != 0 }

// routeTo is how a package to node id goes: to a neighbour directly
// (routing 0, hop by hop), to anyone else routed (routing 1).
func (r *Receiver) routeTo(id uint32) protocol.Routing {
	if r.parent(id) == id {
		return protocol.RouteNeighbour
	}
	return protocol.RouteSingle
}
