package mesh

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// handleNodeSync handles a NODE_SYNC_REQUEST (5) or NODE_SYNC_REPLY (6) on
// connection c: router::handleNodeSync plus the two package callbacks
// (docs/protocol.md §4.2, §4.3).
func (n *Node) handleNodeSync(now time.Time, c *conn, msg []byte) {
	// Not stock: a layout over the limits is refused before it is decoded
	// or stored (docs/protocol.md).
	if len(msg) > n.cfg.MaxLayoutBytes {
		n.refuseSync(c, "layout too large")
		return
	}
	p, def, err := protocol.DecodeChecked(msg)
	if err != nil {
		n.invalid(now, c, InvalidBody, err)
		n.stats.MessagesDropped++
		return
	}
	n.coerced(now, c, def)
	ns, ok := p.(*protocol.NodeSync)
	if !ok {
		n.stats.MessagesDropped++
		return
	}
	isReply := ns.Type == protocol.TypeNodeSyncReply
	t := ns.NodeTree
	if n.layoutSizeWith(c, t) > n.cfg.MaxLayoutNodes {
		n.refuseSync(c, "layout too large")
		return
	}
	if isReply && c.routable() {
		// stock replies never carry the sender's top-level
		// hasTimeAuthority, so the flag is read from requests only;
		// otherwise it would flip on every exchange with an authority.
		t.HasTimeAuthority = c.claimed.HasTimeAuthority
	}

	// §4.3 step 1, Neighbour::validSubs: only checkable once the id is known.
	if c.routable() {
		if t.NodeID != c.nodeID {
			n.refuseSync(c, "invalid sync")
			return
		}
		for i := range t.Subs {
			if t.Subs[i].Contains(c.nodeID) {
				n.refuseSync(c, "invalid sync")
				return
			}
		}
	}
	// Not stock: our own id in the sender's subtree is a loop through us.
	// A stock receiver takes it and relays it, and the next node closes
	// its link to us as invalid (Neighbour::validSubs, layout.hpp, called
	// from router::handleNodeSync): one bad neighbour cuts the mesh. We
	// apply validSubs' rule for our own id here, on the link it came from.
	loop := slices.ContainsFunc(t.Subs, func(s protocol.NodeTree) bool { return s.Contains(n.cfg.ID) })

	if !c.synced {
		// Not stock: the C++ code accepts a neighbour that claims id 0 (which
		// then re-announces a change on every sync) or our own id (a link to
		// ourselves, which would circulate every broadcast forever).
		if t.NodeID == 0 || t.NodeID == n.cfg.ID {
			n.refuseSync(c, "invalid sync")
			return
		}
		// §4.3 step 2: the id is already reachable through another link
		// (a second link into the same mesh, or a duplicate id): close the
		// new connection. Not stock: a mere claim about the id in
		// another neighbour's subtree does not lock the node out. Its own
		// link is taken and the claim dropped (pruneClaims), unless the
		// new link closes a loop through us, which is a second link.
		if n.findRoute(t.NodeID) != nil && (loop || n.direct(t.NodeID) != nil) {
			n.refuseSync(c, "already connected")
			return
		}
	}
	if loop {
		n.refuseSync(c, "invalid sync")
		return
	}
	if !c.synced {
		c.synced = true
		if c.station {
			c.timeSyncAt = now // STA side asks for the time at once
		} else {
			c.timeSyncAt = now.Add(n.cfg.Timing.TimeSyncInterval)
		}
		n.Emit(NewConnection{Conn: c.id, NodeID: t.NodeID})
	}

	// §4.3 step 3, Neighbour::updateSubs.
	if !c.routable() || !t.Equal(c.claimed) {
		newNeighbour := !c.routable()
		c.nodeID = t.NodeID
		c.claimed = t
		if newNeighbour {
			n.pruneClaims()
		} else {
			n.prune(c, n.directIDs())
		}
		n.gen++
		n.stats.ConnectionChanges++
		n.syncLayout(c.nodeID)
		n.Emit(ChangedConnections{NodeID: c.nodeID})
	} else {
		c.nodeSyncAt = now.Add(n.cfg.Timing.NodeSyncInterval)
	}

	if isReply {
		c.timeoutAt = time.Time{} // only a reply disarms NODE_TIMEOUT
		c.retryAt = time.Time{}
		if c.layoutPending {
			c.nodeSyncAt = now // the change syncLayout held back
		}
		return
	}
	n.enqueue(c, n.syncMessage(c, protocol.TypeNodeSyncReply), PriorityHigh)
}

// layoutSizeWith is how many nodes our layout would hold with t as c's
// subtree: the bound applies to the whole layout, so that several
// connections cannot add up what one may not announce.
func (n *Node) layoutSizeWith(c *conn, t protocol.NodeTree) int {
	size := 1 + t.Size()
	for _, o := range n.conns {
		if o != c && o.routable() {
			size += o.size
		}
	}
	return size
}

// refuseSync closes c over the node sync it sent.
func (n *Node) refuseSync(c *conn, reason string) {
	n.stats.NodeSyncsRefused++
	n.drop(c, reason, true)
}

// direct returns the synced connection to neighbour id, or nil.
func (n *Node) direct(id uint32) *conn {
	for _, c := range n.conns {
		if c.routable() && c.nodeID == id {
			return c
		}
	}
	return nil
}

// directIDs are the ids of our routable neighbours.
func (n *Node) directIDs() map[uint32]bool {
	ids := make(map[uint32]bool, len(n.conns))
	for _, c := range n.conns {
		if c.routable() {
			ids[c.nodeID] = true
		}
	}
	return ids
}

// pruneClaims recomputes every neighbour's tree after our set of direct
// neighbours changed.
func (n *Node) pruneClaims() {
	ids := n.directIDs()
	for _, c := range n.conns {
		if c.routable() {
			n.prune(c, ids)
		}
	}
}

// prune sets c's tree to what it claimed without the branches of our other
// direct neighbours: what a neighbour says about a node linked to us
// directly is dropped, so that node's own link decides its route
// (docs/protocol.md).
func (n *Node) prune(c *conn, direct map[uint32]bool) {
	c.tree = withoutBranches(c.claimed, func(id uint32) bool { return id != c.nodeID && direct[id] })
	c.size = c.tree.Size()
}

// withoutBranches returns t without the subtrees (at any depth) whose top
// id drop reports. Unchanged parts are shared with t.
func withoutBranches(t protocol.NodeTree, drop func(uint32) bool) protocol.NodeTree {
	for i := range t.Subs {
		s := t.Subs[i]
		pruned := drop(s.NodeID)
		var kept protocol.NodeTree
		if !pruned {
			kept = withoutBranches(s, drop)
			if len(kept.Subs) == len(s.Subs) && (len(s.Subs) == 0 || &kept.Subs[0] == &s.Subs[0]) {
				continue // nothing dropped below s
			}
		}
		// Copy on the first change.
		out := t
		out.Subs = make([]protocol.NodeTree, 0, len(t.Subs))
		out.Subs = append(out.Subs, t.Subs[:i]...)
		if !pruned {
			out.Subs = append(out.Subs, kept)
		}
		for _, r := range t.Subs[i+1:] {
			if !drop(r.NodeID) {
				out.Subs = append(out.Subs, withoutBranches(r, drop))
			}
		}
		return out
	}
	return t
}

// syncMessage is the NODE_SYNC_REQUEST or NODE_SYNC_REPLY for neighbour c:
// our layout without c's branch, dest = c's id (0 while unknown). It is
// encoded once per layout generation and shared by every send.
//
// Replies carry our hasTimeAuthority like requests do; stock replies omit
// it, which makes stock receivers flip the flag on every exchange.
func (n *Node) syncMessage(c *conn, typ int) []byte {
	if c.syncGen != n.gen {
		c.syncGen, c.request, c.response = n.gen, nil, nil
	}
	cached := &c.request
	if typ == protocol.TypeNodeSyncReply {
		cached = &c.response
	}
	if *cached == nil {
		ns := protocol.NodeSync{NodeTree: n.layoutWithout(c.nodeID), Type: typ, Dest: c.nodeID, From: n.cfg.ID}
		*cached = ns.AppendJSON(nil)
	}
	return *cached
}

// layoutWithout is our layout (Layout::asNodeTree) minus the direct sub
// with id except (excludeRoute; 0 excludes nothing more). The subs are
// shared with the connections' stored trees: read only.
func (n *Node) layoutWithout(except uint32) protocol.NodeTree {
	t := protocol.NodeTree{NodeID: n.cfg.ID, Root: n.cfg.Root, HasTimeAuthority: n.cfg.TimeAuthority}
	for _, c := range n.conns {
		if c.routable() && c.nodeID != except {
			t.Subs = append(t.Subs, c.tree)
		}
	}
	return t
}

// findRoute is router::findRoute: the first connection, in connection
// order, whose stored subtree contains id. Id 0 has no route (stock would
// pick a connection that has not synced yet), and neither has our own id
// (it can only appear in a neighbour's tree while a loop is being broken).
func (n *Node) findRoute(id uint32) *conn {
	if id == 0 {
		return nil
	}
	n.refreshRoutes()
	return n.routes[id]
}

// refreshRoutes rebuilds the route table and node list after a layout
// change, so that routing a message is one map lookup.
func (n *Node) refreshRoutes() {
	if n.routeGen == n.gen {
		return
	}
	n.routeGen = n.gen
	if n.routes == nil {
		n.routes = make(map[uint32]*conn)
	} else {
		clear(n.routes)
	}
	ids := n.nodeList[:0]
	for _, c := range n.conns {
		if !c.routable() {
			continue
		}
		start := len(ids)
		ids = appendTreeIDs(ids, c.tree)
		for _, id := range ids[start:] {
			if _, ok := n.routes[id]; !ok && id != 0 && id != n.cfg.ID {
				n.routes[id] = c
			}
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	// Our own id and 0 are never part of the list (0 marks garbage subs).
	ids = slices.DeleteFunc(ids, func(id uint32) bool { return id == 0 || id == n.cfg.ID })
	n.nodeList = ids
}
