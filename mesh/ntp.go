package mesh

import "github.com/meshfleet/meshfleet/protocol"

// Time-sync constants from ntp.hpp (docs/protocol.md §6.4, §12).
const (
	// TimeSyncAccuracy is TIME_SYNC_ACCURACY: an exchange whose offset is
	// non-zero and smaller than this (µs, either sign) counts as done.
	TimeSyncAccuracy = 5000
	// MinLargeOffsetStep is MIN_LARGE_OFFSET_STEP: offsets with
	// 4 < |offset| < this are damped to a quarter.
	MinLargeOffsetStep = 500
	// MaxCPUTripRatio is MAX_CPU_TRIP_RATIO: an exchange whose round trip
	// exceeds this many times the responder's processing time is an outlier.
	MaxCPUTripRatio = 85
)

// ClockOffset is ntp::clockOffset (docs/protocol.md §6.4, Q-7): the correction
// in µs the adopter adds to its clock after a TIME_REQUEST sent at t0 was
// received at t1, answered at t2 and the answer received at t3. All times
// are node times; arithmetic wraps at 2^32 like the C++ uint32 code, and
// each half is truncated separately.
func ClockOffset(t0, t1, t2, t3 uint32) int32 {
	off := int32(t1-t0)/2 + int32(t2-t3)/2
	if a := abs32(off); a > 4 && a < MinLargeOffsetStep {
		off /= 4
	}
	// Outlier rejection: the product is uint32 in C++ and wraps as well.
	if t3-t0 > (t2-t1)*MaxCPUTripRatio {
		off = 0
	}
	return off
}

// TripDelay is ntp::tripDelay (docs/protocol.md §6.4): the one-way delay
// estimate in µs of a TIME_DELAY exchange, computed in uint32 and cast.
func TripDelay(t0, t1, t2, t3 uint32) int32 {
	return int32(((t3 - t0) - (t2 - t1)) / 2)
}

// abs32 is |v| as int64, so that the minimum int32 does not overflow (in
// C++ abs(INT32_MIN) stays negative; either way it is never damped).
func abs32(v int32) int64 {
	if v < 0 {
		return -int64(v)
	}
	return int64(v)
}

// Adopt is ntp::adopt (docs/protocol.md §6.5): whether a node whose whole layout
// is mine should take the time of the neighbour that sent theirs (its tree
// as stored on the link, which excludes this node). A time authority wins
// over a node without one; otherwise the larger partition wins, and a tie
// goes to the higher node id.
func Adopt(mine, theirs protocol.NodeTree) bool {
	if !mine.HasTimeAuthority && theirs.HasTimeAuthority {
		return true
	}
	if mine.HasTimeAuthority && !theirs.HasTimeAuthority {
		return false
	}
	// size(excludeRoute(mine, theirs.nodeId)): excludeRoute drops the direct
	// subs with that id and those with id 0.
	a := 1
	for _, s := range mine.Subs {
		if s.NodeID != theirs.NodeID && s.NodeID != 0 {
			a += treeSize(s)
		}
	}
	return adoptBySize(a, treeSize(theirs), mine.NodeID, theirs.NodeID)
}

// adoptBySize is the size comparison of Adopt, shared with the node's
// cached sizes so that it never re-walks the layout.
func adoptBySize(mySize, theirSize int, myID, theirID uint32) bool {
	switch {
	case mySize > theirSize:
		return false
	case mySize < theirSize:
		return true
	}
	return myID < theirID
}

// treeSize is layout::size: the number of nodes in t, t included.
func treeSize(t protocol.NodeTree) int {
	n := 1
	for _, s := range t.Subs {
		n += treeSize(s)
	}
	return n
}

// appendTreeIDs appends every node id in t, depth first.
func appendTreeIDs(dst []uint32, t protocol.NodeTree) []uint32 {
	dst = append(dst, t.NodeID)
	for _, s := range t.Subs {
		dst = appendTreeIDs(dst, s)
	}
	return dst
}
