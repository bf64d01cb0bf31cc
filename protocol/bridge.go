package protocol

// Bridge packages 610–613 exist in two key orders on stock nodes: the
// library's own senders (src/arduino/wifi.hpp) build the JSON by hand with
// "type" first, while the Alteriom package classes write the plugin order
// (from, routing, type, ...). Parsers do not depend on order; LibraryForm
// records which order a decoded package had, so it re-encodes unchanged,
// and lets a sender choose to look exactly like the library.

// BridgeStatus (type 610) is a bridge's connectivity report. It is
// broadcast, or sent to one node with routing single and Dest set; Dest is
// written only when Routing is RouteSingle.
type BridgeStatus struct {
	BroadcastBase
	Dest              uint32
	InternetConnected bool   // the bridge's station has an IP
	RouterRSSI        int8   // "routerRSSI", dBm
	RouterChannel     uint8  // "routerChannel"
	Uptime            uint32 // ms
	GatewayIP         string // "gatewayIP"
	Timestamp         uint32 // node time, µs
	MessageType       uint16
	LibraryForm       bool // type, from, routing, dest?, timestamp, ... (wifi.hpp order)
}

// NewBridgeStatus returns a broadcast BridgeStatus in the library's key order.
func NewBridgeStatus(from uint32) *BridgeStatus {
	return &BridgeStatus{BroadcastBase: bcast(from), MessageType: TypeBridgeStatus, LibraryForm: true}
}

// PackageType implements Package.
func (p *BridgeStatus) PackageType() int { return TypeBridgeStatus }

// AppendJSON implements Package.
func (p *BridgeStatus) AppendJSON(dst []byte) []byte {
	if p.LibraryForm {
		dst = appendLibraryBase(dst, TypeBridgeStatus, p.From, p.Routing)
		if p.Routing == RouteSingle {
			dst = appendUintField(dst, "dest", uint64(p.Dest))
		}
		dst = appendUintField(dst, "timestamp", uint64(p.Timestamp))
	} else {
		dst = append(dst, '{')
		dst = appendUintField(dst, "from", uint64(p.From))
		if p.Routing == RouteSingle {
			dst = appendUintField(dst, "dest", uint64(p.Dest))
		}
		dst = appendIntField(dst, "routing", int64(p.Routing))
		dst = appendIntField(dst, "type", TypeBridgeStatus)
	}
	dst = appendBoolField(dst, "internetConnected", p.InternetConnected)
	dst = appendIntField(dst, "routerRSSI", int64(p.RouterRSSI))
	dst = appendUintField(dst, "routerChannel", uint64(p.RouterChannel))
	dst = appendUintField(dst, "uptime", uint64(p.Uptime))
	dst = appendStringField(dst, "gatewayIP", p.GatewayIP)
	if !p.LibraryForm {
		dst = appendUintField(dst, "timestamp", uint64(p.Timestamp))
	}
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func appendLibraryBase(dst []byte, typ int, from uint32, routing Routing) []byte {
	dst = append(dst, '{')
	dst = appendIntField(dst, "type", int64(typ))
	dst = appendUintField(dst, "from", uint64(from))
	return appendIntField(dst, "routing", int64(routing))
}

func (f fields) bridgeStatus() *BridgeStatus {
	return &BridgeStatus{
		BroadcastBase:     f.broadcastBase(),
		Dest:              f.u32("dest"),
		InternetConnected: f.boolOr("internetConnected", false),
		RouterRSSI:        int8(f.intOr("routerRSSI", 0)),
		RouterChannel:     uint8(f.intOr("routerChannel", 0)),
		Uptime:            uint32(f.intOr("uptime", 0)),
		GatewayIP:         f.str("gatewayIP"),
		Timestamp:         uint32(f.intOr("timestamp", 0)),
		MessageType:       uint16(f.intOr("message_type", TypeBridgeStatus)),
		LibraryForm:       f.firstKeyIs("type"),
	}
}

// BridgeElection (type 611) announces a node's candidacy to become bridge.
type BridgeElection struct {
	BroadcastBase
	RouterRSSI  int8   // "routerRSSI", dBm
	Uptime      uint32 // ms
	FreeMemory  uint32 // "freeMemory", bytes
	Timestamp   uint32 // node time
	RouterSSID  string // "routerSSID"
	MessageType uint16
	LibraryForm bool // type, from, routing, ... (wifi.hpp order)
}

// NewBridgeElection returns a BridgeElection in the library's key order.
func NewBridgeElection(from uint32) *BridgeElection {
	return &BridgeElection{BroadcastBase: bcast(from), MessageType: TypeBridgeElection, LibraryForm: true}
}

// PackageType implements Package.
func (p *BridgeElection) PackageType() int { return TypeBridgeElection }

// AppendJSON implements Package.
func (p *BridgeElection) AppendJSON(dst []byte) []byte {
	if p.LibraryForm {
		dst = appendLibraryBase(dst, TypeBridgeElection, p.From, p.Routing)
	} else {
		dst = p.appendBase(dst, TypeBridgeElection)
	}
	dst = appendIntField(dst, "routerRSSI", int64(p.RouterRSSI))
	dst = appendUintField(dst, "uptime", uint64(p.Uptime))
	dst = appendUintField(dst, "freeMemory", uint64(p.FreeMemory))
	dst = appendUintField(dst, "timestamp", uint64(p.Timestamp))
	dst = appendStringField(dst, "routerSSID", p.RouterSSID)
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) bridgeElection() *BridgeElection {
	return &BridgeElection{
		BroadcastBase: f.broadcastBase(),
		RouterRSSI:    int8(f.intOr("routerRSSI", 0)),
		Uptime:        uint32(f.intOr("uptime", 0)),
		FreeMemory:    uint32(f.intOr("freeMemory", 0)),
		Timestamp:     uint32(f.intOr("timestamp", 0)),
		RouterSSID:    f.str("routerSSID"),
		MessageType:   uint16(f.intOr("message_type", TypeBridgeElection)),
		LibraryForm:   f.firstKeyIs("type"),
	}
}

// BridgeTakeover (type 612) announces that a node has become the bridge.
type BridgeTakeover struct {
	BroadcastBase
	PreviousBridge uint32 // "previousBridge", 0 if none
	Reason         string
	RouterRSSI     int8   // "routerRSSI" (the library sends 0)
	Timestamp      uint32 // node time
	MessageType    uint16
	LibraryForm    bool // type, from, routing, ... (wifi.hpp order)
}

// NewBridgeTakeover returns a BridgeTakeover in the library's key order.
func NewBridgeTakeover(from uint32) *BridgeTakeover {
	return &BridgeTakeover{BroadcastBase: bcast(from), MessageType: TypeBridgeTakeover, LibraryForm: true}
}

// PackageType implements Package.
func (p *BridgeTakeover) PackageType() int { return TypeBridgeTakeover }

// AppendJSON implements Package.
func (p *BridgeTakeover) AppendJSON(dst []byte) []byte {
	if p.LibraryForm {
		dst = appendLibraryBase(dst, TypeBridgeTakeover, p.From, p.Routing)
	} else {
		dst = p.appendBase(dst, TypeBridgeTakeover)
	}
	dst = appendUintField(dst, "previousBridge", uint64(p.PreviousBridge))
	dst = appendStringField(dst, "reason", p.Reason)
	dst = appendIntField(dst, "routerRSSI", int64(p.RouterRSSI))
	dst = appendUintField(dst, "timestamp", uint64(p.Timestamp))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) bridgeTakeover() *BridgeTakeover {
	return &BridgeTakeover{
		BroadcastBase:  f.broadcastBase(),
		PreviousBridge: uint32(f.intOr("previousBridge", 0)),
		Reason:         f.str("reason"),
		RouterRSSI:     int8(f.intOr("routerRSSI", 0)),
		Timestamp:      uint32(f.intOr("timestamp", 0)),
		MessageType:    uint16(f.intOr("message_type", TypeBridgeTakeover)),
		LibraryForm:    f.firstKeyIs("type"),
	}
}

// BridgeCoordination (type 613) is multi-bridge coordination. Stock nodes
// send it wrapped in a type-8 broadcast; see Unwrap. The library
// form carries message_type (written before peerBridges); the class form
// has none.
type BridgeCoordination struct {
	BroadcastBase
	Priority    uint8  // 10 highest .. 1 lowest
	Role        string // "primary", "secondary", "standby"
	Load        uint8  // %
	Timestamp   uint32
	PeerBridges []uint32 // "peerBridges", always written
	MessageType uint16   // written in the library form only
	LibraryForm bool
}

// NewBridgeCoordination returns a BridgeCoordination with the C++
// defaults (priority 5, role "secondary") in the library's key order.
func NewBridgeCoordination(from uint32) *BridgeCoordination {
	return &BridgeCoordination{
		BroadcastBase: bcast(from), Priority: 5, Role: "secondary",
		MessageType: TypeBridgeCoordinate, LibraryForm: true,
	}
}

// PackageType implements Package.
func (p *BridgeCoordination) PackageType() int { return TypeBridgeCoordinate }

// AppendJSON implements Package.
func (p *BridgeCoordination) AppendJSON(dst []byte) []byte {
	if p.LibraryForm {
		dst = appendLibraryBase(dst, TypeBridgeCoordinate, p.From, p.Routing)
	} else {
		dst = p.appendBase(dst, TypeBridgeCoordinate)
	}
	dst = appendUintField(dst, "priority", uint64(p.Priority))
	dst = appendStringField(dst, "role", p.Role)
	dst = appendUintField(dst, "load", uint64(p.Load))
	dst = appendUintField(dst, "timestamp", uint64(p.Timestamp))
	if p.LibraryForm {
		dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	}
	dst = append(appendKey(dst, "peerBridges"), '[')
	for i, id := range p.PeerBridges {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendUint(dst, id)
	}
	return append(dst, ']', '}')
}

func (f fields) bridgeCoordination() *BridgeCoordination {
	p := &BridgeCoordination{
		BroadcastBase: f.broadcastBase(),
		Priority:      uint8(f.intOr("priority", 5)),
		Role:          f.str("role"),
		Load:          uint8(f.intOr("load", 0)),
		Timestamp:     uint32(f.intOr("timestamp", 0)),
		MessageType:   uint16(f.intOr("message_type", TypeBridgeCoordinate)),
		LibraryForm:   f.firstKeyIs("type"),
	}
	for _, e := range f.elements("peerBridges") {
		p.PeerBridges = append(p.PeerBridges, f.d.asU32(e))
	}
	return p
}

// NTPTimeSync (type 614) shares NTP time; no library code handles it.
type NTPTimeSync struct {
	BroadcastBase
	NTPTime     uint32 // "ntpTime", Unix seconds
	Accuracy    uint16 // ms
	Source      string
	Timestamp   uint32
	MessageType uint16
}

// NewNTPTimeSync returns an NTPTimeSync with the C++ defaults.
func NewNTPTimeSync(from uint32) *NTPTimeSync {
	return &NTPTimeSync{BroadcastBase: bcast(from), MessageType: TypeNTPTimeSync}
}

// PackageType implements Package.
func (p *NTPTimeSync) PackageType() int { return TypeNTPTimeSync }

// AppendJSON implements Package.
func (p *NTPTimeSync) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeNTPTimeSync)
	dst = appendUintField(dst, "ntpTime", uint64(p.NTPTime))
	dst = appendUintField(dst, "accuracy", uint64(p.Accuracy))
	dst = appendStringField(dst, "source", p.Source)
	dst = appendUintField(dst, "timestamp", uint64(p.Timestamp))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) ntpTimeSync() *NTPTimeSync {
	return &NTPTimeSync{
		BroadcastBase: f.broadcastBase(),
		NTPTime:       f.u32("ntpTime"),
		Accuracy:      f.u16("accuracy"),
		Source:        f.str("source"),
		Timestamp:     f.u32("timestamp"),
		MessageType:   uint16(f.intOr("message_type", TypeNTPTimeSync)),
	}
}
