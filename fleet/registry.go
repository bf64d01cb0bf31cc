package fleet

import (
	"context"
	"time"
)

// NodePatch changes what the device registry says about a node: a field
// left out (nil) stays as it is; "" clears a name or notes, an empty list
// the tags.
type NodePatch struct {
	Name  *string   `json:"name,omitempty"`
	Tags  *[]string `json:"tags,omitempty"`
	Notes *string   `json:"notes,omitempty"`
}

// FirmwareRecord is one firmware a node ran, from when the gateway first
// saw it report that version and md5 until it last did.
type FirmwareRecord struct {
	Version   string    `json:"version"`
	MD5       string    `json:"md5"` // "" when the node does not say
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// FirmwareHistory is a node's firmware history, oldest first.
type FirmwareHistory struct {
	NodeID   uint32           `json:"node_id"`
	Firmware []FirmwareRecord `json:"firmware"`
}

// Registry is the gateway's device registry: what operators say about a
// node (name, tags, notes) and what the gateway has seen of it (first
// seen, firmware history). Names and tags are shown in the node document.
type Registry interface {
	// UpdateNode applies p to node id's registry entry and returns its
	// node document. ErrNotFound: the gateway never saw the node;
	// ErrInvalid: a field is out of bounds; ErrConflict: the name is
	// another node's, or the registry is full.
	UpdateNode(ctx context.Context, id uint32, p NodePatch) (Node, error)
	// ForgetNode drops node id from the registry and the live node list.
	// An online node is refused with ErrConflict unless force.
	ForgetNode(ctx context.Context, id uint32, force bool) error
	// NodeFirmware is node id's firmware history.
	NodeFirmware(ctx context.Context, id uint32) (FirmwareHistory, error)
}
