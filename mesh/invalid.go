package mesh

import (
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// InvalidReportInterval is the least time between two InvalidPackage
// events for one connection: a peer sending garbage in a loop costs one
// log line a minute, not one per package.
const InvalidReportInterval = time.Minute

// Reasons a received package is invalid (InvalidPackage.Reason).
const (
	// InvalidHeader: not a JSON object, or its routing keys are unreadable.
	InvalidHeader = "header"
	// InvalidBody: the routing keys are fine, but the fields of its type
	// (a node sync's tree, a time sync, a message) do not decode; or the
	// package is well-formed JSON but a field had to be coerced
	// (protocol.Defect), in which case it is still handled as stock does.
	InvalidBody = "body"
)

// InvalidCounts counts invalid packages by reason: those that could not be
// parsed (dropped) and those that needed coercion (handled).
type InvalidCounts struct {
	Header uint64
	Body   uint64
}

// coerced counts a package received on c whose fields a handler had to
// coerce, unless route already counted it for its header.
func (n *Node) coerced(now time.Time, c *conn, def protocol.Defect) {
	if def.Kind != protocol.DefectNone && c != nil && !n.counted {
		n.invalid(now, c, InvalidBody, def)
	}
}

// maxInvalidErr bounds the parser error an event carries: it may quote
// the peer's input.
const maxInvalidErr = 200

// invalid counts a package that could not be parsed and reports it as an
// InvalidPackage event, at most once per connection per
// InvalidReportInterval; what is held back is counted in the next event.
// c is nil for packages the node sent itself.
func (n *Node) invalid(now time.Time, c *conn, reason string, err error) {
	n.stats.ParseErrors++
	if reason == InvalidHeader {
		n.stats.InvalidPackages.Header++
	} else {
		n.stats.InvalidPackages.Body++
	}
	if c == nil {
		return
	}
	if !c.invalidReportedAt.IsZero() && now.Sub(c.invalidReportedAt) < InvalidReportInterval {
		c.invalidSuppressed++
		return
	}
	msg := err.Error()
	if len(msg) > maxInvalidErr {
		msg = msg[:maxInvalidErr] + "..."
	}
	ev := InvalidPackage{Conn: c.id, NodeID: c.nodeID, Reason: reason, Err: msg, Suppressed: c.invalidSuppressed}
	c.invalidReportedAt, c.invalidSuppressed = now, 0
	n.Emit(ev)
}
