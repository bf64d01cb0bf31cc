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
// chunk next goes out. A node that drops out and back for another reason
// after the last chunk counts as installed too: it is an estimate.

// rebootWatch is what a stock-turbo campaign watches for reboots.
type rebootWatch struct {
	nodes  map[uint32]*stockSeen
	chunks int   // of the stock variant, for the installed node's figures
	size   int64 // its bytes
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
		case left && back:
			p := NodeProgress{Node: id, State: StateInstalled, Done: c.rebootWatch.chunks, Total: c.rebootWatch.chunks,
				Bytes: c.rebootWatch.size, BytesTotal: c.rebootWatch.size, Updated: now, Joined: now, Estimated: true}
			if old, ok := c.nodes[id]; ok {
				p.Joined = old.Joined
			}
			c.put(&p)
			out = append(out, p)
			delete(c.rebootWatch.nodes, id)
		case now.Sub(s.servedLast) >= stockRejoin:
			delete(c.rebootWatch.nodes, id)
		default:
			s.left = left
		}
	}
	return out
}
