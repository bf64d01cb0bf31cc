package protocol

// Routing is the painlessMesh router type of a package (docs/protocol.md §5.1).
type Routing int

// Routing values as the C++ router::Type enum defines them.
const (
	RouteError     Routing = -1
	RouteNeighbour Routing = 0
	RouteSingle    Routing = 1
	RouteBroadcast Routing = 2
)

func (r Routing) String() string {
	switch r {
	case RouteNeighbour:
		return "neighbour"
	case RouteSingle:
		return "single"
	case RouteBroadcast:
		return "broadcast"
	case RouteError:
		return "error"
	}
	return "unknown"
}

// Package type codes (docs/protocol.md §2).
const (
	TypeTimeDelay        = 3
	TypeTimeSync         = 4
	TypeNodeSyncRequest  = 5
	TypeNodeSyncReply    = 6
	TypeControl          = 7
	TypeBroadcast        = 8
	TypeSingle           = 9
	TypeOTAAnnounce      = 10
	TypeOTADataRequest   = 11
	TypeOTAData          = 12
	TypePerformance      = 13
	TypeRemoteLog        = 14
	TypeSensor           = 200
	TypeStatus           = 202
	TypeMetrics          = 204
	TypeMPPT             = 205
	TypeCommand          = 400
	TypeMeshNodeList     = 600
	TypeMeshTopology     = 601
	TypeMeshAlert        = 602
	TypeMeshBridge       = 603
	TypeEnhancedStatus   = 604
	TypeHealthCheck      = 605
	TypeBridgeStatus     = 610
	TypeBridgeElection   = 611
	TypeBridgeTakeover   = 612
	TypeBridgeCoordinate = 613
	TypeNTPTimeSync      = 614
	TypeGatewayData      = 620
	TypeGatewayAck       = 621
	TypeGatewayHeartbeat = 622
)

// Package is one decoded wire package. Every concrete type in this package
// implements it, and so can extension packages defined elsewhere (OTA and
// status extensions): anything that can append its own JSON can be sent.
type Package interface {
	// PackageType is the value of the "type" key.
	PackageType() int
	// AppendJSON appends the package's JSON encoding (no NUL terminator).
	AppendJSON(dst []byte) []byte
}

// Header is what the router needs from a package, read without decoding
// the rest of it.
type Header struct {
	Type    int     // "type" read like the C++ as<int>(): 0 when missing or not a number
	Routing Routing // explicit integer "routing", else derived from Type
	Dest    uint32  // "dest" if an integer in u32 range, else 0
	From    uint32  // "from" if an integer in u32 range, else 0
}

// NodeTree is one node of a mesh layout: the node itself and the subtrees
// reachable through its other neighbours (docs/protocol.md §3.3).
type NodeTree struct {
	NodeID           uint32
	Root             bool
	HasTimeAuthority bool
	Subs             []NodeTree
}

// NodeSync is a NODE_SYNC_REQUEST (5) or NODE_SYNC_REPLY (6): the sender's
// layout minus the receiver's branch, plus type, dest and from (§4.1).
type NodeSync struct {
	NodeTree
	Type int // TypeNodeSyncRequest or TypeNodeSyncReply
	Dest uint32
	From uint32
}

// Time-sync message kinds carried in TimeSync.Msg.Type (§6.2).
const (
	TimeSyncError   = -1
	TimeSyncRequest = 0
	TimeRequest     = 1
	TimeReply       = 2
)

// TimeMsg is the inner "msg" object of TIME_SYNC and TIME_DELAY packages.
// T0 is written iff Type >= 1, T1 and T2 iff Type >= 2.
type TimeMsg struct {
	Type       int
	T0, T1, T2 uint32
}

// TimeSync is a TIME_SYNC (4) or TIME_DELAY (3) package.
type TimeSync struct {
	Type int // TypeTimeSync or TypeTimeDelay
	Dest uint32
	From uint32
	Msg  TimeMsg
}

// Single is an application message to one node (type 9).
type Single struct {
	Dest uint32
	From uint32
	Msg  string
}

// Broadcast is an application message to every node (type 8); Dest is 0
// on the wire for stock senders but is carried as read.
type Broadcast struct {
	Dest uint32
	From uint32
	Msg  string
}

// Raw is a package whose type this package does not decode (or that the
// caller asked to keep opaque). Relays forward it unchanged.
type Raw struct {
	Header
	JSON []byte // the exact bytes received
}
