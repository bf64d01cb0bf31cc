package mesh

import (
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// conn is one neighbour link: the C++ Connection with its Neighbour
// layout state and its three tasks (docs/protocol.md §4.2, §6.3).
type conn struct {
	id      ConnID
	station bool

	// synced is !newConnection: the first node sync was accepted and the
	// time-sync task exists.
	synced bool
	nodeID uint32
	// claimed is the neighbour's layout as it last sent it (its own node
	// at the top, without our branch), for change detection. tree is what
	// we use of it: claimed without the branches of nodes that are our
	// own direct neighbours (a node's own link wins over a claim about
	// it). size is tree.Size().
	claimed protocol.NodeTree
	tree    protocol.NodeTree
	size    int
	// layoutPending: our layout changed while a request to this neighbour
	// was unanswered; the next request goes out when the reply arrives,
	// or layoutHold after the last request if none does.
	layoutPending bool
	requestAt     time.Time // when the last NODE_SYNC_REQUEST was queued

	// Timers; the zero time means disarmed.
	nodeSyncAt time.Time // nodeSyncTask: send NODE_SYNC_REQUEST
	timeoutAt  time.Time // timeOutTask: NODE_TIMEOUT after a request
	retryAt    time.Time // repeat the unanswered request (Timing.NodeSyncRetry)
	timeSyncAt time.Time // timeSyncTask: startTimeSync
	// invalidReportedAt is when the last InvalidPackage event for this
	// connection was emitted; invalidSuppressed counts those held back since.
	invalidReportedAt time.Time
	invalidSuppressed uint64
	// replies are TIME_REPLYs waiting out our processing time.
	replies []pendingReply

	// Encoded node-sync messages for this neighbour, valid while
	// syncGen equals the node's layout generation.
	syncGen  uint64
	request  []byte
	response []byte
}

// pendingReply is a TIME_SYNC or TIME_DELAY reply with t1 fixed at
// receipt; t2 is taken when it is sent.
type pendingReply struct {
	at   time.Time
	pkg  protocol.TimeSync
	prio Priority
}

// due reports whether the armed timer t has expired at now.
func due(t, now time.Time) bool { return !t.IsZero() && !t.After(now) }

// earliest folds an armed timer t into the running minimum m.
func earliest(m, t time.Time) time.Time {
	if t.IsZero() {
		return m
	}
	if m.IsZero() || t.Before(m) {
		return t
	}
	return m
}

// deadline is the earliest armed timer of the connection.
func (c *conn) deadline() time.Time {
	m := earliest(earliest(earliest(earliest(time.Time{}, c.nodeSyncAt), c.timeoutAt), c.timeSyncAt), c.retryAt)
	if len(c.replies) > 0 {
		m = earliest(m, c.replies[0].at)
	}
	return m
}

func (c *conn) info() ConnInfo {
	ci := ConnInfo{Conn: c.id, NodeID: c.nodeID, Station: c.station, Synced: c.synced}
	if c.routable() {
		ci.SubtreeSize = c.size
	}
	return ci
}

// routable is whether the connection takes part in the layout and in
// routing: the C++ code skips connections whose nodeId is still 0.
func (c *conn) routable() bool { return c.nodeID != 0 }
