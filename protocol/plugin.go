package protocol

// BroadcastBase holds the keys a C++ plugin::BroadcastPackage writes first:
// from, routing, type (docs/protocol.md §7). Routing is kept as read so a
// decoded package re-encodes unchanged; constructors set RouteBroadcast.
type BroadcastBase struct {
	From    uint32
	Routing Routing
}

// SingleBase holds the keys a C++ plugin::SinglePackage writes first:
// from, dest, routing, type. Constructors set RouteSingle.
type SingleBase struct {
	From    uint32
	Dest    uint32
	Routing Routing
}

func (b *BroadcastBase) appendBase(dst []byte, typ int) []byte {
	dst = append(dst, '{')
	dst = appendUintField(dst, "from", uint64(b.From))
	dst = appendIntField(dst, "routing", int64(b.Routing))
	return appendIntField(dst, "type", int64(typ))
}

func (b *SingleBase) appendBase(dst []byte, typ int) []byte {
	dst = append(dst, '{')
	dst = appendUintField(dst, "from", uint64(b.From))
	dst = appendUintField(dst, "dest", uint64(b.Dest))
	dst = appendIntField(dst, "routing", int64(b.Routing))
	return appendIntField(dst, "type", int64(typ))
}

// The C++ base constructors read from with as<uint32_t>(), dest likewise
// and routing with as<int>().
func (f fields) broadcastBase() BroadcastBase {
	return BroadcastBase{From: f.u32("from"), Routing: Routing(f.i32("routing"))}
}

func (f fields) singleBase() SingleBase {
	return SingleBase{From: f.u32("from"), Dest: f.u32("dest"), Routing: Routing(f.i32("routing"))}
}

// --- OTA (10, 11, 12) ----------------------------------------------------------

// Announce (type 10) offers a firmware image (§8.1). Forced and Compressed
// are written only when true, Broadcasted always.
type Announce struct {
	From        uint32
	Routing     Routing
	MD5         string // lowercase hex MD5 of the image
	Hardware    string // "ESP32" or "ESP8266" for ESP receivers
	Role        string
	Forced      bool
	NoPart      uint32 // number of chunks
	Broadcasted bool
	Compressed  bool
}

// DataRequest (type 11) asks the distributor (Dest) for chunk PartNo.
type DataRequest struct {
	Announce
	Dest   uint32
	PartNo uint32
}

// Data (type 12) carries chunk PartNo as standard base64.
type Data struct {
	DataRequest
	Base64 string // "data"
}

// NewAnnounce returns an Announce with the C++ defaults (routing broadcast).
func NewAnnounce(from uint32) *Announce {
	return &Announce{From: from, Routing: RouteBroadcast}
}

// NewDataRequest returns a DataRequest with routing single.
func NewDataRequest(from, dest uint32) *DataRequest {
	return &DataRequest{Announce: Announce{From: from, Routing: RouteSingle}, Dest: dest}
}

// NewData returns a Data package with routing single.
func NewData(from, dest uint32) *Data {
	return &Data{DataRequest: *NewDataRequest(from, dest)}
}

// PackageType implements Package.
func (p *Announce) PackageType() int { return TypeOTAAnnounce }

// PackageType implements Package.
func (p *DataRequest) PackageType() int { return TypeOTADataRequest }

// PackageType implements Package.
func (p *Data) PackageType() int { return TypeOTAData }

func (p *Announce) appendMembers(dst []byte, typ int) []byte {
	dst = append(dst, '{')
	dst = appendUintField(dst, "from", uint64(p.From))
	dst = appendIntField(dst, "routing", int64(p.Routing))
	dst = appendIntField(dst, "type", int64(typ))
	dst = appendStringField(dst, "md5", p.MD5)
	dst = appendStringField(dst, "hardware", p.Hardware)
	dst = appendStringField(dst, "role", p.Role)
	if p.Forced {
		dst = append(dst, `,"forced":true`...)
	}
	dst = appendUintField(dst, "noPart", uint64(p.NoPart))
	dst = appendBoolField(dst, "broadcasted", p.Broadcasted)
	if p.Compressed {
		dst = append(dst, `,"compressed":true`...)
	}
	return dst
}

func (p *DataRequest) appendMembers(dst []byte, typ int) []byte {
	dst = p.Announce.appendMembers(dst, typ)
	dst = appendUintField(dst, "dest", uint64(p.Dest))
	return appendUintField(dst, "partNo", uint64(p.PartNo))
}

// AppendJSON implements Package.
func (p *Announce) AppendJSON(dst []byte) []byte {
	return append(p.appendMembers(dst, TypeOTAAnnounce), '}')
}

// AppendJSON implements Package.
func (p *DataRequest) AppendJSON(dst []byte) []byte {
	return append(p.appendMembers(dst, TypeOTADataRequest), '}')
}

// AppendJSON implements Package.
func (p *Data) AppendJSON(dst []byte) []byte {
	dst = p.DataRequest.appendMembers(dst, TypeOTAData)
	dst = appendStringField(dst, "data", p.Base64)
	return append(dst, '}')
}

// Bytes returns the chunk, decoded as leniently as the C++ receiver does.
func (p *Data) Bytes() []byte { return DecodeBase64Lenient(p.Base64) }

// SetBytes stores chunk as standard padded base64.
func (p *Data) SetBytes(chunk []byte) { p.Base64 = EncodeBase64(chunk) }

// noPart and partNo are size_t in C++ (32 bits on ESP); they are read as
// u32 here, so values above 2^32-1 read as 0 as they do on the nodes.
func (f fields) announce() Announce {
	return Announce{
		From:        f.u32("from"),
		Routing:     Routing(f.i32("routing")),
		MD5:         f.str("md5"),
		Hardware:    f.str("hardware"),
		Role:        f.str("role"),
		Forced:      f.boolIfBool("forced", false),
		Broadcasted: f.boolIfBool("broadcasted", false),
		Compressed:  f.boolIfBool("compressed", false),
		NoPart:      f.u32("noPart"),
	}
}

func (f fields) dataRequest() DataRequest {
	return DataRequest{Announce: f.announce(), Dest: f.u32("dest"), PartNo: f.u32("partNo")}
}

// --- Performance (13) and remote log (14) ---------------------------------

// Performance is the optional performance plugin's broadcast (type 13).
// All numbers are C++ int; Time is node time cast to int, so it is
// negative for times above 2^31.
type Performance struct {
	BroadcastBase
	ID         int32
	Time       int32
	Stability  int32
	FreeMemory int32
	Hardware   string
}

// NewPerformance returns a Performance package routed as broadcast.
func NewPerformance(from uint32) *Performance {
	return &Performance{BroadcastBase: BroadcastBase{From: from, Routing: RouteBroadcast}}
}

// PackageType implements Package.
func (p *Performance) PackageType() int { return TypePerformance }

// AppendJSON implements Package.
func (p *Performance) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypePerformance)
	dst = appendIntField(dst, "id", int64(p.ID))
	dst = appendIntField(dst, "time", int64(p.Time))
	dst = appendIntField(dst, "stability", int64(p.Stability))
	dst = appendIntField(dst, "freeMemory", int64(p.FreeMemory))
	dst = appendStringField(dst, "hardware", p.Hardware)
	return append(dst, '}')
}

// LogEntry is one line of a RemoteLog: a sequence number and the text.
type LogEntry struct {
	Seq  uint32 // "first"
	Line string // "second"
}

// RemoteLog is the remote-log plugin's package (type 14), sent to one node.
type RemoteLog struct {
	SingleBase
	Log []LogEntry
}

// NewRemoteLog returns a RemoteLog routed as single.
func NewRemoteLog(from, dest uint32) *RemoteLog {
	return &RemoteLog{SingleBase: SingleBase{From: from, Dest: dest, Routing: RouteSingle}}
}

// PackageType implements Package.
func (p *RemoteLog) PackageType() int { return TypeRemoteLog }

// AppendJSON implements Package.
func (p *RemoteLog) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeRemoteLog)
	dst = append(appendKey(dst, "log"), '[')
	for i, e := range p.Log {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendUintField(dst, "first", uint64(e.Seq))
		dst = appendStringField(dst, "second", e.Line)
		dst = append(dst, '}')
	}
	return append(dst, ']', '}')
}

// --- Gateway (620, 621) ------------------------------------------------------

// GatewayData (type 620) asks a gateway (Dest) to deliver Payload to URL.
type GatewayData struct {
	SingleBase
	MsgID    uint32 // (origin & 0xFFFF) << 16 | counter
	Origin   uint32
	TS       uint32 // node time
	Priority uint8  // 0 critical .. 3 low
	URL      string // "dest_url"
	Payload  string // non-empty: POST, empty: GET
	Content  string // content type
	Retry    uint8
	Ack      bool
}

// NewGatewayData returns a GatewayData with the C++ defaults: routing
// single, priority 2, content "application/json".
func NewGatewayData(from, dest uint32) *GatewayData {
	return &GatewayData{
		SingleBase: SingleBase{From: from, Dest: dest, Routing: RouteSingle},
		Priority:   2,
		Content:    "application/json",
	}
}

// PackageType implements Package.
func (p *GatewayData) PackageType() int { return TypeGatewayData }

// AppendJSON implements Package.
func (p *GatewayData) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeGatewayData)
	dst = appendUintField(dst, "msgId", uint64(p.MsgID))
	dst = appendUintField(dst, "origin", uint64(p.Origin))
	dst = appendUintField(dst, "ts", uint64(p.TS))
	dst = appendUintField(dst, "prio", uint64(p.Priority))
	dst = appendStringField(dst, "dest_url", p.URL)
	dst = appendStringField(dst, "payload", p.Payload)
	dst = appendStringField(dst, "content", p.Content)
	dst = appendUintField(dst, "retry", uint64(p.Retry))
	dst = appendBoolField(dst, "ack", p.Ack)
	return append(dst, '}')
}

// GatewayAck (type 621) reports the outcome of a GatewayData to its origin.
type GatewayAck struct {
	SingleBase
	MsgID   uint32
	Origin  uint32
	Success bool
	HTTP    uint16 // HTTP status, 0 if none
	Err     string
	TS      uint32
}

// NewGatewayAck returns a GatewayAck routed as single.
func NewGatewayAck(from, dest uint32) *GatewayAck {
	return &GatewayAck{SingleBase: SingleBase{From: from, Dest: dest, Routing: RouteSingle}}
}

// PackageType implements Package.
func (p *GatewayAck) PackageType() int { return TypeGatewayAck }

// AppendJSON implements Package.
func (p *GatewayAck) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeGatewayAck)
	dst = appendUintField(dst, "msgId", uint64(p.MsgID))
	dst = appendUintField(dst, "origin", uint64(p.Origin))
	dst = appendBoolField(dst, "success", p.Success)
	dst = appendUintField(dst, "http", uint64(p.HTTP))
	dst = appendStringField(dst, "err", p.Err)
	dst = appendUintField(dst, "ts", uint64(p.TS))
	return append(dst, '}')
}
