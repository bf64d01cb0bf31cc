package sim

import (
	"cmp"
	"slices"
	"time"
)

func sortLinks(ls []LinkStats) {
	slices.SortFunc(ls, func(a, b LinkStats) int {
		if c := cmp.Compare(a.From, b.From); c != 0 {
			return c
		}
		return cmp.Compare(a.To, b.To)
	})
}

// Converged reports whether every running node's node list is exactly the
// set of the other running nodes: one mesh, fully synced. It is cheap to
// call after every instant: only nodes stepped since the last call are
// looked at again, unless the set of running nodes changed.
func (n *Network) Converged() bool {
	if n.convMembers != n.members {
		n.incomplete = 0
		for _, nd := range n.nodes {
			nd.dirty = false
			if nd.up {
				nd.complete = n.knowsAll(nd)
				if !nd.complete {
					n.incomplete++
				}
			}
		}
		n.dirtyNodes = n.dirtyNodes[:0]
		n.convMembers = n.members
		return n.incomplete == 0
	}
	for _, nd := range n.dirtyNodes {
		nd.dirty = false
		if !nd.up {
			continue
		}
		was := nd.complete
		nd.complete = n.knowsAll(nd)
		switch {
		case was && !nd.complete:
			n.incomplete++
		case !was && nd.complete:
			n.incomplete--
		}
	}
	n.dirtyNodes = n.dirtyNodes[:0]
	return n.incomplete == 0
}

func (n *Network) knowsAll(nd *Node) bool {
	list := nd.m.NodeList(false)
	if len(list) != n.upCount-1 {
		return false
	}
	for _, id := range list {
		o := n.byID[id]
		if o == nil || !o.up || o == nd {
			return false
		}
	}
	return true
}

// CountKnowing is how many running nodes (other than id itself) have id in
// their node list: 0 once a lost node has been dropped everywhere.
func (n *Network) CountKnowing(id uint32) int {
	k := 0
	for _, nd := range n.nodes {
		if nd.up && nd.id != id && slices.Contains(nd.m.NodeList(false), id) {
			k++
		}
	}
	return k
}

// MaxTimeOffset is the largest difference between the mesh times of the
// running nodes at this instant. Node time is a wrapping u32 µs counter, so
// the difference is taken modulo 2^32 around the first running node; it is
// correct while the true spread is below 2^31 µs (35 minutes).
func (n *Network) MaxTimeOffset() time.Duration {
	var ref uint32
	first := true
	var lo, hi int64
	for _, nd := range n.nodes {
		if !nd.up {
			continue
		}
		t := nd.m.NodeTime(nd.Now())
		if first {
			ref, first = t, false
			continue
		}
		d := int64(int32(t - ref))
		lo, hi = min(lo, d), max(hi, d)
	}
	return time.Duration(hi-lo) * time.Microsecond
}
