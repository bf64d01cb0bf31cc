package mesh

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// Errors returned by SendPackage and SendRaw.
var (
	// ErrNoRoute means the destination is not in the layout.
	ErrNoRoute = errors.New("no route to destination")
	// ErrNotRoutable means the package's routing is ROUTING_ERROR (a type
	// without an implicit routing and no integer "routing" key, Q-8).
	ErrNotRoutable = errors.New("package has no routing")
)

// SelfConn is the ConnID given to plugins for packages the node handles
// from itself (SendBroadcast with includeSelf). Drivers must not use it.
const SelfConn ConnID = ^ConnID(0)

// route is router::routePackage (docs/protocol.md §5.2) for one message that
// arrived on c.
func (n *Node) route(now time.Time, c *conn, msg []byte) {
	h, def, err := protocol.ParseHeaderChecked(msg)
	if err != nil {
		// §1.5: a parse error drops the message; the connection stays.
		n.invalid(now, c, InvalidHeader, err)
		n.stats.MessagesDropped++
		return
	}
	// Not stock: a package that needed coercion (in its header here, or
	// in the fields a handler decodes) is counted once as an invalid
	// body, and still handled as stock handles it.
	n.counted = def.Kind != protocol.DefectNone
	if n.counted {
		n.invalid(now, c, InvalidBody, def)
	}
	var kept []byte // msg copied once, shared by every forward and event
	switch h.Routing {
	case protocol.RouteSingle:
		if h.Dest != n.cfg.ID {
			if n.transitTaken(now, c, h, msg) {
				return
			}
			next := n.findRoute(h.Dest)
			if next == nil {
				n.stats.MessagesDropped++
				return
			}
			n.enqueue(next, clone(msg), PriorityNormal)
			return
		}
	case protocol.RouteBroadcast:
		if h.From == n.cfg.ID {
			// Not stock: our own broadcast came back, so the mesh has a
			// loop; stock would forward it again, forever.
			n.stats.MessagesDropped++
			return
		}
		n.ready.Messages = slices.Grow(n.ready.Messages, len(n.conns))
		for _, o := range n.conns {
			if o.routable() && o.nodeID != c.nodeID {
				if kept == nil {
					kept = clone(msg)
				}
				n.enqueue(o, kept, PriorityNormal)
			}
		}
	}
	n.handle(now, c, h, msg, kept)
}

// handle runs the handlers for a package addressed to this node (or
// broadcast, neighbour, or of unknown routing). c is nil for packages the
// node sends to itself. kept is msg already copied, or nil.
func (n *Node) handle(now time.Time, c *conn, h protocol.Header, msg, kept []byte) {
	id := SelfConn
	if c != nil {
		id = c.id
	}
	core := true
	switch h.Type {
	case protocol.TypeNodeSyncRequest, protocol.TypeNodeSyncReply:
		if c != nil {
			n.handleNodeSync(now, c, msg)
		}
	case protocol.TypeTimeSync:
		if c != nil {
			n.handleTimeSync(now, c, msg)
		}
	case protocol.TypeTimeDelay:
		if c != nil {
			n.handleTimeDelay(now, c, msg)
		}
	case protocol.TypeSingle, protocol.TypeBroadcast:
		n.handleMessage(now, c, h, msg)
	default:
		core = false
	}
	plugins := n.handlers[h.Type]
	for _, p := range plugins {
		p.HandlePackage(now, id, h, msg)
	}
	if core || len(plugins) > 0 {
		return
	}
	if h.Type == 0 {
		// No "type" (or type 0): stock has no handler, it is dropped.
		n.stats.MessagesDropped++
		return
	}
	if kept == nil {
		kept = clone(msg)
	}
	n.Emit(PackageReceived{Conn: id, Header: h, JSON: kept})
}

// handleMessage reports a SINGLE or BROADCAST to the application.
func (n *Node) handleMessage(now time.Time, c *conn, h protocol.Header, msg []byte) {
	p, def, err := protocol.DecodeChecked(msg)
	if err != nil {
		n.invalid(now, c, InvalidBody, err)
		return
	}
	n.coerced(now, c, def)
	switch m := p.(type) {
	case *protocol.Single:
		n.Emit(MessageReceived{Type: protocol.TypeSingle, From: m.From, Msg: m.Msg})
	case *protocol.Broadcast:
		n.Emit(MessageReceived{Type: protocol.TypeBroadcast, From: m.From, Msg: m.Msg})
	}
}

// --- application sends ------------------------------------------------------

// SendBroadcast sends msg to every node (mesh.sendBroadcast): a BROADCAST
// (8) with dest 0 on every synced connection. With includeSelf the node
// also delivers it to itself (a MessageReceived event and the plugins).
func (n *Node) SendBroadcast(now time.Time, msg string, includeSelf bool) {
	n.now = now
	p := protocol.Broadcast{From: n.cfg.ID, Msg: msg}
	data := p.AppendJSON(nil)
	n.broadcast(data)
	if includeSelf {
		h := protocol.Header{Type: protocol.TypeBroadcast, Routing: protocol.RouteBroadcast, From: n.cfg.ID}
		n.handle(now, nil, h, data, data)
	}
	n.runDue(now)
}

// SendSingle sends msg to node dest (mesh.sendSingle): a SINGLE (9) on
// the next hop. False if dest is not reachable (including our own id).
func (n *Node) SendSingle(now time.Time, dest uint32, msg string) bool {
	n.now = now
	next := n.findRoute(dest)
	if next == nil {
		return false
	}
	p := protocol.Single{Dest: dest, From: n.cfg.ID, Msg: msg}
	n.enqueue(next, p.AppendJSON(nil), PriorityNormal)
	return true
}

// SendPackage encodes p and routes it like plugin.hpp sendPackage: SINGLE,
// or NEIGHBOUR with a dest, goes to the next hop towards dest; BROADCAST,
// or NEIGHBOUR without dest, to every synced neighbour.
func (n *Node) SendPackage(now time.Time, p protocol.Package) error {
	n.now = now
	if p == nil {
		return fmt.Errorf("mesh: send: nil package: %w", ErrNotRoutable)
	}
	return n.send(p.AppendJSON(nil))
}

// SendRaw routes an already encoded package like SendPackage. msg is
// copied.
func (n *Node) SendRaw(now time.Time, msg []byte) error {
	n.now = now
	return n.send(clone(msg))
}

// SendRawPriority is SendRaw with a queue priority: the first hop writes
// it ahead of queued lower-priority messages (relays queue at normal
// priority, as stock ones do). Status plugins use it for critical frames.
func (n *Node) SendRawPriority(now time.Time, msg []byte, p Priority) error {
	n.now = now
	return n.sendPriority(clone(msg), p)
}

// send routes data, which the node now owns.
func (n *Node) send(data []byte) error { return n.sendPriority(data, PriorityNormal) }

func (n *Node) sendPriority(data []byte, prio Priority) error {
	h, err := protocol.ParseHeader(data)
	if err != nil {
		return fmt.Errorf("mesh: send: %w", err)
	}
	switch {
	case h.Routing == protocol.RouteSingle || (h.Routing == protocol.RouteNeighbour && h.Dest != 0):
		next := n.findRoute(h.Dest)
		if next == nil {
			return fmt.Errorf("mesh: send type %d to %d: %w", h.Type, h.Dest, ErrNoRoute)
		}
		n.enqueue(next, data, prio)
	case h.Routing == protocol.RouteBroadcast || h.Routing == protocol.RouteNeighbour:
		n.broadcastPriority(data, prio)
	default:
		return fmt.Errorf("mesh: send type %d: %w", h.Type, ErrNotRoutable)
	}
	return nil
}

// broadcast queues data on every synced connection (router::broadcast
// with exclude 0).
func (n *Node) broadcast(data []byte) { n.broadcastPriority(data, PriorityNormal) }

func (n *Node) broadcastPriority(data []byte, prio Priority) {
	n.ready.Messages = slices.Grow(n.ready.Messages, len(n.conns))
	for _, c := range n.conns {
		if c.routable() {
			n.enqueue(c, data, prio)
		}
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// transitTaken offers a single package passing through to the plugins
// that handle its type in transit (TransitHandler); true if one took it.
func (n *Node) transitTaken(now time.Time, c *conn, h protocol.Header, msg []byte) bool {
	for _, p := range n.handlers[h.Type] {
		if t, ok := p.(TransitHandler); ok && t.HandleTransit(now, c.id, h, msg) {
			return true
		}
	}
	return false
}
