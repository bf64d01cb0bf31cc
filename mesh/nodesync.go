package mesh

import (
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// handleNodeSync handles a NODE_SYNC_REQUEST (5) or NODE_SYNC_REPLY (6) on
// connection c: router::handleNodeSync plus the two package callbacks
// (PROTOCOL.md §4.2, §4.3).
func (n *Node) handleNodeSync(now time.Time, c *conn, msg []byte) {
	p, err := protocol.Decode(msg)
	if err != nil {
		n.invalid(now, c, InvalidBody, err)
		n.stats.MessagesDropped++
		return
	}
	ns, ok := p.(*protocol.NodeSync)
	if !ok {
		n.stats.MessagesDropped++
		return
	}
	isReply := ns.Type == protocol.TypeNodeSyncReply
	t := ns.NodeTree
	if isReply && c.routable() {
		// stock replies never carry the sender's top-level
		// hasTimeAuthority, so the flag is read from requests only;
		// otherwise it would flip on every exchange with an authority.
		t.HasTimeAuthority = c.tree.HasTimeAuthority
	}

	// §4.3 step 1, Neighbour::validSubs: only checkable once the id is known.
	if c.routable() {
		if t.NodeID != c.nodeID {
			n.drop(c, "invalid sync", true)
			return
		}
		for i := range t.Subs {
			if t.Subs[i].Contains(c.nodeID) {
				n.drop(c, "invalid sync", true)
				return
			}
		}
	}

	if !c.synced {
		// Not stock: the C++ code accepts a neighbour that claims id 0 (which
		// then re-announces a change on every sync) or our own id (a link to
		// ourselves, which would circulate every broadcast forever).
		if t.NodeID == 0 || t.NodeID == n.cfg.ID {
			n.drop(c, "invalid sync", true)
			return
		}
		// §4.3 step 2: the id is already reachable through another link
		// (a second link into the same mesh, or a duplicate id): close the
		// new connection.
		if n.findRoute(t.NodeID) != nil {
			n.drop(c, "already connected", true)
			return
		}
		c.synced = true
		if c.station {
			c.timeSyncAt = now // STA side asks for the time at once
		} else {
			c.timeSyncAt = now.Add(n.cfg.Timing.TimeSyncInterval)
		}
		n.Emit(NewConnection{Conn: c.id, NodeID: t.NodeID})
	}

	// §4.3 step 3, Neighbour::updateSubs.
	if !c.routable() || !t.Equal(c.tree) {
		c.nodeID = t.NodeID
		c.tree = t
		c.size = t.Size()
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
		return
	}
	n.enqueue(c, n.syncMessage(c, protocol.TypeNodeSyncReply), PriorityHigh)
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
