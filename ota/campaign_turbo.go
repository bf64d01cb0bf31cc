package ota

import (
	"maps"
	"slices"
	"time"
)

// A stock receiver in stock-turbo's broadcast mode sends nothing at all,
// and one that fell behind asks in the distributor's name (the Data's
// dest, Q-19 h): no request names a node. What does show a node is its
// reboot, 2 s after a good image (docs/protocol.md §8.4). So whenever a
// stock-turbo campaign floods its last chunk, the nodes then in the mesh
// are watched, and one that leaves the mesh and comes back within
// stockRejoin counts as installed (Estimated). A node that does not
// reboot (a relay, a node of another role, a receiver still catching up)
// is not shown; one still catching up is watched again when the last
// chunk next goes out.
//
// A node can drop out and back for another reason (a link that broke and
// was dialled again), so a return is checked before it counts: the
// distributor announces (unless a node may be between a good image and
// its restart) and sends the node itself the last chunk, flagged
// broadcasted (turboProbe). A receiver still short of the image takes the
// chunk as out of sequence and asks at once for the part it lacks, in the
// node's own name (the Data's dest, Q-19 h); one that forgot the transfer
// (Q-19 d) or never took it up does so after the announce. One that
// installed ignores both. A node heard from that way is not installed;
// one silent for turboVerify after its first probe that followed an
// announce sent since its return is (while announces are held, the probe
// goes again every turboVerify/2, and the regular announce comes within
// a minute). A receiver that left broadcast mode before and asks in
// other names does not show: that much is still an estimate.

// turboVerify is how long a returned node is given to answer the probe:
// it asks at once, and the probe goes twice.
const turboVerify = 10 * time.Second

// rebootWatch is what a stock-turbo campaign watches for reboots.
type rebootWatch struct {
	nodes  map[uint32]*stockSeen
	chunks int   // of the stock variant, for the installed node's figures
	size   int64 // its bytes
	// probe are the returned nodes the distributor is to probe now.
	probe []uint32
}

// turboLastSent records that c flooded the last chunk of v while the
// nodes in members were in the mesh.
func (c *Campaign) turboLastSent(now time.Time, members []uint32, v *variant) {
	if c.rebootWatch.nodes == nil {
		c.rebootWatch.nodes = map[uint32]*stockSeen{}
	}
	c.rebootWatch.chunks, c.rebootWatch.size = v.chunks, v.size
	for _, id := range members {
		if p, ok := c.nodes[id]; ok && p.Terminal() {
			continue
		}
		if s, ok := c.rebootWatch.nodes[id]; ok && s.left {
			continue // away since an earlier last chunk: its return counts
		}
		c.rebootWatch.nodes[id] = &stockSeen{servedLast: now}
	}
	c.stockNext = c.stockDeadline(now)
}

// turboCheck returns the watched nodes that rebooted (left the mesh and
// came back), now installed, and stops watching nodes that did not
// within stockRejoin.
func (c *Campaign) turboCheck(now time.Time, inMesh func(uint32) bool) []NodeProgress {
	var out []NodeProgress
	// By id: the nodes shown installed are emitted in this order, which
	// must not vary between runs.
	for _, id := range slices.Sorted(maps.Keys(c.rebootWatch.nodes)) {
		s := c.rebootWatch.nodes[id]
		back := inMesh(id)
		left := s.left || !back
		switch {
		case !s.verifyFrom.IsZero() && !back:
			// Gone again: the probe's chunk may have completed it.
			s.verifyFrom, s.probedAt, s.sure, s.left, s.servedLast = time.Time{}, time.Time{}, time.Time{}, true, now
		case !s.sure.IsZero() && now.Sub(s.sure) >= turboVerify:
			p := NodeProgress{Node: id, State: StateInstalled, Done: c.rebootWatch.chunks, Total: c.rebootWatch.chunks,
				Bytes: c.rebootWatch.size, BytesTotal: c.rebootWatch.size, Updated: now, Joined: now, Estimated: true}
			if old, ok := c.nodes[id]; ok {
				p.Joined = old.Joined
			}
			c.put(&p)
			out = append(out, p)
			delete(c.rebootWatch.nodes, id)
		case !s.verifyFrom.IsZero() && now.Sub(s.verifyFrom) >= stockRejoin:
			delete(c.rebootWatch.nodes, id) // never probed after an announce: not shown
		case !s.verifyFrom.IsZero():
			if now.Sub(s.probedAt) >= turboVerify/2 && (s.sure.IsZero() || s.probedAt.Equal(s.sure)) {
				c.rebootWatch.probe = append(c.rebootWatch.probe, id)
			}
		case left && back:
			s.verifyFrom = now
			c.rebootWatch.probe = append(c.rebootWatch.probe, id)
		case now.Sub(s.servedLast) >= stockRejoin:
			delete(c.rebootWatch.nodes, id)
		default:
			s.left = left
		}
	}
	return out
}

// turboProbed records the probe of nodes at now, the last announce having
// gone at announced: a probe after an announce that came after the node's
// return is one it can answer whatever it missed before.
func (c *Campaign) turboProbed(now, announced time.Time, nodes []uint32) {
	for _, id := range nodes {
		if s, ok := c.rebootWatch.nodes[id]; ok {
			s.probedAt = now
			if s.sure.IsZero() && !announced.Before(s.verifyFrom) {
				s.sure = now
			}
		}
	}
}

// turboHeard records a request in a watched node's own name: the answer
// to a probe, so it is still short of the image.
func (c *Campaign) turboHeard(from uint32) {
	if s, ok := c.rebootWatch.nodes[from]; ok && !s.verifyFrom.IsZero() {
		delete(c.rebootWatch.nodes, from)
	}
}
