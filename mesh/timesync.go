package mesh

import (
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// startTimeSync is Mesh::startTimeSync (docs/protocol.md §6.3): if we adopt the
// neighbour's time, ask for it (TIME_REQUEST with t0); otherwise ask the
// neighbour to take ours (TIME_SYNC_REQUEST).
func (n *Node) startTimeSync(now time.Time, c *conn) {
	p := protocol.TimeSync{Type: protocol.TypeTimeSync, Dest: c.nodeID, From: n.cfg.ID}
	if n.adopts(c) {
		p.Msg = protocol.TimeMsg{Type: protocol.TimeRequest, T0: n.NodeTime(now)}
	} else {
		p.Msg = protocol.TimeMsg{Type: protocol.TimeSyncRequest}
	}
	n.enqueue(c, p.AppendJSON(nil), PriorityHigh)
}

// adopts is Adopt(our layout, c's tree) from the cached subtree sizes.
func (n *Node) adopts(c *conn) bool {
	mine, theirs := n.cfg.TimeAuthority, c.tree.HasTimeAuthority
	if mine != theirs {
		return theirs
	}
	a := 1
	for _, o := range n.conns {
		if o.routable() && o.nodeID != c.nodeID {
			a += o.size
		}
	}
	return adoptBySize(a, c.size, n.cfg.ID, c.nodeID)
}

// handleTimeSync handles a TIME_SYNC (4) on connection c (the TIME_SYNC
// package callback, §6.3).
func (n *Node) handleTimeSync(now time.Time, c *conn, msg []byte) {
	ts, ok := n.decodeTime(now, c, msg)
	if !ok {
		return
	}
	receivedAt := n.NodeTime(now)
	tm := &n.cfg.Timing
	switch ts.Msg.Type {
	case protocol.TimeSyncError:
		if c.synced {
			c.timeSyncAt = now
		}
	case protocol.TimeSyncRequest:
		// The neighbour wants us to take its time: always agree.
		r := protocol.TimeSync{Type: protocol.TypeTimeSync, Dest: ts.From, From: n.cfg.ID,
			Msg: protocol.TimeMsg{Type: protocol.TimeRequest, T0: n.NodeTime(now)}}
		n.enqueue(c, r.AppendJSON(nil), PriorityHigh)
	case protocol.TimeRequest:
		n.replyLater(now, c, protocol.TypeTimeSync, ts, receivedAt)
		if c.synced {
			c.timeSyncAt = now.Add(tm.TimeSyncPostpone)
		}
	case protocol.TimeReply:
		off := ClockOffset(ts.Msg.T0, ts.Msg.T1, ts.Msg.T2, receivedAt)
		n.offset += uint32(off)
		n.stats.TimeSyncs++
		if off != 0 {
			n.stats.TimeSyncAdopts++
		}
		if (off != 0 || tm.AcceptZeroOffset) && abs32(off) < TimeSyncAccuracy {
			// Done on this link; pass the new time on to the others.
			if c.synced {
				c.timeSyncAt = now.Add(tm.TimeSyncPostpone)
			}
			for _, o := range n.conns {
				if o != c && o.synced {
					o.timeSyncAt = now
				}
			}
		} else if c.synced {
			c.timeSyncAt = now.Add(tm.TimeSyncRetry)
		}
		n.Emit(TimeAdjusted{NodeID: c.nodeID, Offset: off})
	}
}

// handleTimeDelay handles a TIME_DELAY (3) addressed to us (§6.6).
func (n *Node) handleTimeDelay(now time.Time, c *conn, msg []byte) {
	ts, ok := n.decodeTime(now, c, msg)
	if !ok {
		return
	}
	receivedAt := n.NodeTime(now)
	switch ts.Msg.Type {
	case protocol.TimeRequest:
		n.replyLater(now, c, protocol.TypeTimeDelay, ts, receivedAt)
	case protocol.TimeReply:
		d := TripDelay(ts.Msg.T0, ts.Msg.T1, ts.Msg.T2, receivedAt)
		n.Emit(DelayMeasured{NodeID: ts.From, Delay: d})
	}
}

// replyLater queues the TIME_REPLY to request ts on c. Q-6: stock adopters
// reject an exchange whose responder took less than 1/85 of the round
// trip, so the reply leaves Timing.TimeReplyProcessing after receipt, with
// t1 taken now and t2 when it is sent (runDue).
func (n *Node) replyLater(now time.Time, c *conn, typ int, ts *protocol.TimeSync, receivedAt uint32) {
	r := protocol.TimeSync{Type: typ, Dest: ts.From, From: n.cfg.ID,
		Msg: protocol.TimeMsg{Type: protocol.TimeReply, T0: ts.Msg.T0, T1: receivedAt}}
	prio := PriorityHigh // time sync goes at priority 1, TIME_DELAY at the default
	if typ == protocol.TypeTimeDelay {
		prio = PriorityNormal
	}
	c.replies = append(c.replies, pendingReply{at: now.Add(max(n.cfg.Timing.TimeReplyProcessing, 0)), pkg: r, prio: prio})
}

// StartDelayMeasurement sends a TIME_DELAY request to node id
// (startDelayMeas); the answer arrives as a DelayMeasured event. False if
// id is not reachable.
func (n *Node) StartDelayMeasurement(now time.Time, id uint32) bool {
	n.now = now
	next := n.findRoute(id)
	if next == nil {
		return false
	}
	p := protocol.TimeSync{Type: protocol.TypeTimeDelay, Dest: id, From: n.cfg.ID,
		Msg: protocol.TimeMsg{Type: protocol.TimeRequest, T0: n.NodeTime(now)}}
	n.enqueue(next, p.AppendJSON(nil), PriorityNormal)
	return true
}

func (n *Node) decodeTime(now time.Time, c *conn, msg []byte) (*protocol.TimeSync, bool) {
	p, def, err := protocol.DecodeChecked(msg)
	if err != nil {
		n.invalid(now, c, InvalidBody, err)
		n.stats.MessagesDropped++
		return nil, false
	}
	n.coerced(now, c, def)
	ts, ok := p.(*protocol.TimeSync)
	if !ok {
		n.stats.MessagesDropped++
	}
	return ts, ok
}
