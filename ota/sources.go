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
// distributor last. A node that does not hold the transfer answers with
// Refuse, so probing a non-holder costs one round trip; one that goes
// silent (it left, or is busy rebooting) is passed over after
// sourceSilence.
type sources struct {
	list []uint32 // candidates, nearest first; the distributor is not one
	k    int      // index of the one asked now; len(list): the distributor
	// waitingSince is when the current candidate was first asked with
	// nothing come back from it since; zero: nothing outstanding.
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
			if c.NodeID != dist && c.NodeID != self && c.NodeID != 0 {
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
	s.list, s.k, s.waitingSince = s.list[:0], 0, time.Time{}
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

// current is the candidate to ask, skipping those no longer in the mesh;
// 0: the distributor.
func (s *sources) current(reachable func(uint32) bool) uint32 {
	for s.k < len(s.list) && !reachable(s.list[s.k]) {
		s.next()
	}
	if s.k < len(s.list) {
		return s.list[s.k]
	}
	return 0
}

// next moves on to the next candidate.
func (s *sources) next() {
	if s.k < len(s.list) {
		s.k++
	}
	s.waitingSince = time.Time{}
}

// asked notes asks sent to the current candidate.
func (s *sources) asked(now time.Time) {
	if s.waitingSince.IsZero() {
		s.waitingSince = now
	}
}

// heard notes a chunk from node from: the current candidate answers.
func (s *sources) heard(from uint32) {
	if s.k < len(s.list) && s.list[s.k] == from {
		s.waitingSince = time.Time{}
	}
}

// refused passes over node from, if it is the current candidate.
func (s *sources) refused(from uint32) bool {
	if s.k < len(s.list) && s.list[s.k] == from {
		s.next()
		return true
	}
	return false
}

// silent passes over the current candidate if it left asks unanswered
// for sourceSilence.
func (s *sources) silent(now time.Time) {
	if !s.waitingSince.IsZero() && now.Sub(s.waitingSince) >= sourceSilence {
		s.next()
	}
}

// is reports whether from is the current candidate.
func (s *sources) is(from uint32) bool {
	return from != 0 && s.k < len(s.list) && s.list[s.k] == from
}

// tried reports whether from is a candidate asked so far: its chunks are
// taken (the image's md5, and signature, are checked once all are in).
func (s *sources) tried(from uint32) bool {
	return from != 0 && slices.Contains(s.list[:min(s.k+1, len(s.list))], from)
}

// pickSources lists where t's missing chunks are asked for: with
// PeerToPeer the nearest nodes first; otherwise the parent towards the
// distributor, if it is not the distributor.
func (r *Receiver) pickSources(t *incoming) {
	if r.cfg.PeerToPeer {
		t.src.pick(r.host.Tree(), r.host.ID(), t.dist)
		return
	}
	t.src.list, t.src.k = t.src.list[:0], 0
	if p := r.parent(t.dist); p != 0 && p != t.dist {
		t.src.list = append(t.src.list, p)
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
