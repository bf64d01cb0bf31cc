package protocol

// Alteriom packages (docs/protocol.md §9). Field comments give the JSON key
// where it differs from the field name. Every decoder mirrors the C++
// constructor's reads (see fields.go), which the conformance vectors pin
// down, including their quirks: `| default` reads wrap into the field
// width (message_type 123456 → 57920), plain reads give 0 when out of range.

// Sensor (type 200) is an environmental reading.
type Sensor struct {
	BroadcastBase
	Temp        float64 // °C
	Humidity    float64 // "hum", %RH
	Pressure    float64 // "press", hPa
	SensorID    uint32  // "sid"
	TS          uint32  // "ts"; the example fills in node time
	Battery     uint8   // "bat", %
	MessageType uint16  // "message_type"
}

// NewSensor returns a Sensor with the C++ defaults.
func NewSensor(from uint32) *Sensor {
	return &Sensor{BroadcastBase: bcast(from), MessageType: TypeSensor}
}

func bcast(from uint32) BroadcastBase { return BroadcastBase{From: from, Routing: RouteBroadcast} }

func single(from, dest uint32) SingleBase {
	return SingleBase{From: from, Dest: dest, Routing: RouteSingle}
}

// PackageType implements Package.
func (p *Sensor) PackageType() int { return TypeSensor }

// AppendJSON implements Package.
func (p *Sensor) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeSensor)
	dst = appendDoubleField(dst, "temp", p.Temp)
	dst = appendDoubleField(dst, "hum", p.Humidity)
	dst = appendDoubleField(dst, "press", p.Pressure)
	dst = appendUintField(dst, "sid", uint64(p.SensorID))
	dst = appendUintField(dst, "ts", uint64(p.TS))
	dst = appendUintField(dst, "bat", uint64(p.Battery))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) sensor() *Sensor {
	return &Sensor{
		BroadcastBase: f.broadcastBase(),
		Temp:          f.f64("temp"),
		Humidity:      f.f64("hum"),
		Pressure:      f.f64("press"),
		SensorID:      f.u32("sid"),
		TS:            f.u32("ts"),
		Battery:       f.u8("bat"),
		MessageType:   uint16(f.intOr("message_type", TypeSensor)),
	}
}

// Command (type 400) asks one node to do something. Params is a JSON
// document carried as a string.
type Command struct {
	SingleBase
	Cmd         uint8  // "cmd"; codes are application-defined (0–255 only)
	Target      uint32 // "target"
	Params      string // "params"
	CommandID   uint32 // "cid"
	MessageType uint16
}

// NewCommand returns a Command with the C++ defaults.
func NewCommand(from, dest uint32) *Command {
	return &Command{SingleBase: single(from, dest), MessageType: TypeCommand}
}

// PackageType implements Package.
func (p *Command) PackageType() int { return TypeCommand }

// AppendJSON implements Package.
func (p *Command) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeCommand)
	dst = appendUintField(dst, "cmd", uint64(p.Cmd))
	dst = appendUintField(dst, "target", uint64(p.Target))
	dst = appendStringField(dst, "params", p.Params)
	dst = appendUintField(dst, "cid", uint64(p.CommandID))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) command() *Command {
	return &Command{
		SingleBase:  f.singleBase(),
		Cmd:         f.u8("cmd"),
		Target:      f.u32("target"),
		Params:      f.str("params"),
		CommandID:   f.u32("cid"),
		MessageType: uint16(f.intOr("message_type", TypeCommand)),
	}
}

// Status (type 202) is a device status report; the nested objects are
// always written. Durations are milliseconds; the encoder also writes the
// _s variants (ms / 1000) as the C++ does, the decoder reads only _ms.
type Status struct {
	BroadcastBase
	DeviceStatus uint8  // "status"
	Uptime       uint32 // seconds
	FreeMemoryKB uint16 // "mem"
	WiFi         uint8  // "wifi", signal 0–100
	Firmware     string // "fw"
	RespTo       uint32 // "respTo": written with RespMsg only when > 0
	RespMsg      string // "respMsg"
	Organization Organization
	Sensors      SensorConfig
	Inventory    SensorInventory // "sensor_inventory"
	Display      DisplayConfig   // "display_config"
	Power        PowerConfig     // "power_config"
	MQTTRetry    MQTTRetry       // "mqtt_retry"
	MessageType  uint16
}

// Organization is Status "organization".
type Organization struct {
	OrganizationID  string // "organizationId"
	CustomerID      string // "customerId"
	DeviceGroup     string // "deviceGroup"
	DeviceName      string // "device_name"
	DeviceLocation  string // "device_location"
	DeviceSecretSet bool   // "device_secret_set"
}

// SensorConfig is Status "sensors".
type SensorConfig struct {
	ReadIntervalMs         uint32 // "read_interval_ms"
	TransmissionIntervalMs uint32 // "transmission_interval_ms"
	TemperatureOffset      float64
	HumidityOffset         float64
	PressureOffset         float64
}

// SensorInventory is Status "sensor_inventory".
type SensorInventory struct {
	Count    uint8
	TypeMask uint8 // "type_mask"
}

// DisplayConfig is Status "display_config".
type DisplayConfig struct {
	Enabled    bool
	Brightness uint8
	TimeoutMs  uint32 // "timeout_ms" (an old "timeout" is read when missing)
}

// PowerConfig is Status "power_config".
type PowerConfig struct {
	DeepSleepEnabled    bool   // "deep_sleep_enabled"
	DeepSleepIntervalMs uint32 // "deep_sleep_interval_ms" (or old "deep_sleep_interval")
	BatteryPercent      uint8  // "battery_percent"
}

// MQTTRetry is Status "mqtt_retry".
type MQTTRetry struct {
	MaxAttempts        uint8   // "max_attempts"
	CircuitBreakerMs   uint32  // "circuit_breaker_ms"
	HourlyRetryEnabled bool    // "hourly_retry_enabled"
	InitialRetryMs     uint32  // "initial_retry_ms"
	MaxRetryMs         uint32  // "max_retry_ms"
	BackoffMultiplier  float32 // "backoff_multiplier" (a C++ float)
}

// NewStatus returns a Status with the C++ defaults.
func NewStatus(from uint32) *Status {
	return &Status{BroadcastBase: bcast(from), MessageType: TypeStatus}
}

// PackageType implements Package.
func (p *Status) PackageType() int { return TypeStatus }

// AppendJSON implements Package.
func (p *Status) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeStatus)
	dst = appendUintField(dst, "status", uint64(p.DeviceStatus))
	dst = appendUintField(dst, "uptime", uint64(p.Uptime))
	dst = appendUintField(dst, "mem", uint64(p.FreeMemoryKB))
	dst = appendUintField(dst, "wifi", uint64(p.WiFi))
	dst = appendStringField(dst, "fw", p.Firmware)
	if p.RespTo > 0 {
		dst = appendUintField(dst, "respTo", uint64(p.RespTo))
		dst = appendStringField(dst, "respMsg", p.RespMsg)
	}
	o := &p.Organization
	dst = append(appendKey(dst, "organization"), '{')
	dst = appendStringField(dst, "organizationId", o.OrganizationID)
	dst = appendStringField(dst, "customerId", o.CustomerID)
	dst = appendStringField(dst, "deviceGroup", o.DeviceGroup)
	dst = appendStringField(dst, "device_name", o.DeviceName)
	dst = appendStringField(dst, "device_location", o.DeviceLocation)
	dst = appendBoolField(dst, "device_secret_set", o.DeviceSecretSet)
	s := &p.Sensors
	dst = append(appendKey(append(dst, '}'), "sensors"), '{')
	dst = appendUintField(dst, "read_interval_ms", uint64(s.ReadIntervalMs))
	dst = appendUintField(dst, "read_interval_s", uint64(s.ReadIntervalMs/1000))
	dst = appendUintField(dst, "transmission_interval_ms", uint64(s.TransmissionIntervalMs))
	dst = appendUintField(dst, "transmission_interval_s", uint64(s.TransmissionIntervalMs/1000))
	dst = append(appendKey(dst, "calibration"), '{')
	dst = appendDoubleField(dst, "temperature_offset", s.TemperatureOffset)
	dst = appendDoubleField(dst, "humidity_offset", s.HumidityOffset)
	dst = appendDoubleField(dst, "pressure_offset", s.PressureOffset)
	dst = append(dst, '}', '}')
	dst = append(appendKey(dst, "sensor_inventory"), '{')
	dst = appendUintField(dst, "count", uint64(p.Inventory.Count))
	dst = appendUintField(dst, "type_mask", uint64(p.Inventory.TypeMask))
	d := &p.Display
	dst = append(appendKey(append(dst, '}'), "display_config"), '{')
	dst = appendBoolField(dst, "enabled", d.Enabled)
	dst = appendUintField(dst, "brightness", uint64(d.Brightness))
	dst = appendUintField(dst, "timeout_ms", uint64(d.TimeoutMs))
	dst = appendUintField(dst, "timeout_s", uint64(d.TimeoutMs/1000))
	w := &p.Power
	dst = append(appendKey(append(dst, '}'), "power_config"), '{')
	dst = appendBoolField(dst, "deep_sleep_enabled", w.DeepSleepEnabled)
	dst = appendUintField(dst, "deep_sleep_interval_ms", uint64(w.DeepSleepIntervalMs))
	dst = appendUintField(dst, "deep_sleep_interval_s", uint64(w.DeepSleepIntervalMs/1000))
	dst = appendUintField(dst, "battery_percent", uint64(w.BatteryPercent))
	m := &p.MQTTRetry
	dst = append(appendKey(append(dst, '}'), "mqtt_retry"), '{')
	dst = appendUintField(dst, "max_attempts", uint64(m.MaxAttempts))
	dst = appendUintField(dst, "circuit_breaker_ms", uint64(m.CircuitBreakerMs))
	dst = appendUintField(dst, "circuit_breaker_s", uint64(m.CircuitBreakerMs/1000))
	dst = appendBoolField(dst, "hourly_retry_enabled", m.HourlyRetryEnabled)
	dst = appendUintField(dst, "initial_retry_ms", uint64(m.InitialRetryMs))
	dst = appendUintField(dst, "initial_retry_s", uint64(m.InitialRetryMs/1000))
	dst = appendUintField(dst, "max_retry_ms", uint64(m.MaxRetryMs))
	dst = appendUintField(dst, "max_retry_s", uint64(m.MaxRetryMs/1000))
	dst = appendFloatField(dst, "backoff_multiplier", m.BackoffMultiplier)
	dst = append(dst, '}')
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) status() *Status {
	p := &Status{
		BroadcastBase: f.broadcastBase(),
		DeviceStatus:  f.u8("status"),
		Uptime:        f.u32("uptime"),
		FreeMemoryKB:  f.u16("mem"),
		WiFi:          f.u8("wifi"),
		Firmware:      f.str("fw"),
		RespTo:        uint32(f.intOr("respTo", 0)),
		RespMsg:       f.str("respMsg"),
	}
	// Sub-objects are read only when they are objects; otherwise the C++
	// member defaults ("" and 0) stay.
	if o, ok := f.object("organization"); ok {
		p.Organization = Organization{
			OrganizationID:  o.str("organizationId"),
			CustomerID:      o.str("customerId"),
			DeviceGroup:     o.str("deviceGroup"),
			DeviceName:      o.str("device_name"),
			DeviceLocation:  o.str("device_location"),
			DeviceSecretSet: o.boolOr("device_secret_set", false),
		}
	}
	if s, ok := f.object("sensors"); ok {
		p.Sensors.ReadIntervalMs = uint32(s.intOr("read_interval_ms", 0))
		p.Sensors.TransmissionIntervalMs = uint32(s.intOr("transmission_interval_ms", 0))
		if c, ok := s.object("calibration"); ok {
			p.Sensors.TemperatureOffset = c.floatOr("temperature_offset", 0)
			p.Sensors.HumidityOffset = c.floatOr("humidity_offset", 0)
			p.Sensors.PressureOffset = c.floatOr("pressure_offset", 0)
		}
	}
	if s, ok := f.object("sensor_inventory"); ok {
		p.Inventory.Count = uint8(s.intOr("count", 0))
		p.Inventory.TypeMask = uint8(s.intOr("type_mask", 0))
	}
	if s, ok := f.object("display_config"); ok {
		p.Display.Enabled = s.boolOr("enabled", false)
		p.Display.Brightness = uint8(s.intOr("brightness", 0))
		p.Display.TimeoutMs = uint32(s.d.intOr(s.orMember("timeout_ms", "timeout"), 0))
	}
	if s, ok := f.object("power_config"); ok {
		p.Power.DeepSleepEnabled = s.boolOr("deep_sleep_enabled", false)
		p.Power.DeepSleepIntervalMs = uint32(s.d.intOr(s.orMember("deep_sleep_interval_ms", "deep_sleep_interval"), 0))
		p.Power.BatteryPercent = uint8(s.intOr("battery_percent", 0))
	}
	if s, ok := f.object("mqtt_retry"); ok {
		p.MQTTRetry = MQTTRetry{
			MaxAttempts:        uint8(s.intOr("max_attempts", 0)),
			CircuitBreakerMs:   uint32(s.intOr("circuit_breaker_ms", 0)),
			HourlyRetryEnabled: s.boolOr("hourly_retry_enabled", false),
			InitialRetryMs:     uint32(s.intOr("initial_retry_ms", 0)),
			MaxRetryMs:         uint32(s.intOr("max_retry_ms", 0)),
			BackoffMultiplier:  float32(s.floatOr("backoff_multiplier", 0)),
		}
	}
	p.MessageType = uint16(f.intOr("message_type", TypeStatus))
	return p
}

// Metrics (type 204) is a performance report.
type Metrics struct {
	BroadcastBase
	CPU         uint8  // "cpu", %
	Loops       uint32 // loop iterations per second
	Tasks       uint16
	Heap        uint32
	MinHeap     uint32 // "minHeap"
	FragHeap    uint32 // "fragHeap", %
	MaxHeap     uint32 // "maxHeap", largest block
	BytesRx     uint32 // "bytesRx"
	BytesTx     uint32 // "bytesTx"
	PktsRx      uint16 // "pktsRx"
	PktsTx      uint16 // "pktsTx"
	PktsDrop    uint16 // "pktsDrop"
	Throughput  uint16 // B/s
	AvgResp     uint32 // "avgResp", µs
	MaxResp     uint32 // "maxResp", µs
	AvgLat      uint16 // "avgLat", ms
	ConnQual    uint8  // "connQual", 0–100
	RSSI        int8   // "rssi", dBm
	TS          uint32 // "ts"
	Interval    uint32 // ms
	MessageType uint16
}

// NewMetrics returns a Metrics package with the C++ defaults.
func NewMetrics(from uint32) *Metrics {
	return &Metrics{BroadcastBase: bcast(from), MessageType: TypeMetrics}
}

// PackageType implements Package.
func (p *Metrics) PackageType() int { return TypeMetrics }

// AppendJSON implements Package.
func (p *Metrics) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeMetrics)
	dst = appendUintField(dst, "cpu", uint64(p.CPU))
	dst = appendUintField(dst, "loops", uint64(p.Loops))
	dst = appendUintField(dst, "tasks", uint64(p.Tasks))
	dst = appendUintField(dst, "heap", uint64(p.Heap))
	dst = appendUintField(dst, "minHeap", uint64(p.MinHeap))
	dst = appendUintField(dst, "fragHeap", uint64(p.FragHeap))
	dst = appendUintField(dst, "maxHeap", uint64(p.MaxHeap))
	dst = appendUintField(dst, "bytesRx", uint64(p.BytesRx))
	dst = appendUintField(dst, "bytesTx", uint64(p.BytesTx))
	dst = appendUintField(dst, "pktsRx", uint64(p.PktsRx))
	dst = appendUintField(dst, "pktsTx", uint64(p.PktsTx))
	dst = appendUintField(dst, "pktsDrop", uint64(p.PktsDrop))
	dst = appendUintField(dst, "throughput", uint64(p.Throughput))
	dst = appendUintField(dst, "avgResp", uint64(p.AvgResp))
	dst = appendUintField(dst, "maxResp", uint64(p.MaxResp))
	dst = appendUintField(dst, "avgLat", uint64(p.AvgLat))
	dst = appendUintField(dst, "connQual", uint64(p.ConnQual))
	dst = appendIntField(dst, "rssi", int64(p.RSSI))
	dst = appendUintField(dst, "ts", uint64(p.TS))
	dst = appendUintField(dst, "interval", uint64(p.Interval))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) metrics() *Metrics {
	return &Metrics{
		BroadcastBase: f.broadcastBase(),
		CPU:           f.u8("cpu"),
		Loops:         f.u32("loops"),
		Tasks:         f.u16("tasks"),
		Heap:          f.u32("heap"),
		MinHeap:       f.u32("minHeap"),
		FragHeap:      f.u32("fragHeap"),
		MaxHeap:       f.u32("maxHeap"),
		BytesRx:       f.u32("bytesRx"),
		BytesTx:       f.u32("bytesTx"),
		PktsRx:        f.u16("pktsRx"),
		PktsTx:        f.u16("pktsTx"),
		PktsDrop:      f.u16("pktsDrop"),
		Throughput:    f.u16("throughput"),
		AvgResp:       f.u32("avgResp"),
		MaxResp:       f.u32("maxResp"),
		AvgLat:        f.u16("avgLat"),
		ConnQual:      f.u8("connQual"),
		RSSI:          f.i8("rssi"),
		TS:            f.u32("ts"),
		Interval:      f.u32("interval"),
		MessageType:   uint16(f.intOr("message_type", TypeMetrics)),
	}
}

// MPPT (type 205) is solar charge controller telemetry. The voltages and
// currents are C++ floats.
type MPPT struct {
	BroadcastBase
	SolarVoltage   float32 // "sv", V
	SolarCurrent   float32 // "sc", A
	SolarPower     uint16  // "sp", W
	BatteryVoltage float32 // "bv", V
	BatterySOC     uint8   // "bsoc", %
	LoadVoltage    float32 // "lv", V
	LoadCurrent    float32 // "lc", A
	ChargeState    uint8   // "cs": 0 off, 1 normal, 2 MPPT, 3 equalize, 4 boost, 5 float, 6 limited
	ControllerTemp int8    // "ct", °C
	DeviceID       uint32  // "did"
	TS             uint32  // "ts", Unix seconds
	MessageType    uint16
}

// NewMPPT returns an MPPT package with the C++ defaults.
func NewMPPT(from uint32) *MPPT {
	return &MPPT{BroadcastBase: bcast(from), MessageType: TypeMPPT}
}

// PackageType implements Package.
func (p *MPPT) PackageType() int { return TypeMPPT }

// AppendJSON implements Package.
func (p *MPPT) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeMPPT)
	dst = appendFloatField(dst, "sv", p.SolarVoltage)
	dst = appendFloatField(dst, "sc", p.SolarCurrent)
	dst = appendUintField(dst, "sp", uint64(p.SolarPower))
	dst = appendFloatField(dst, "bv", p.BatteryVoltage)
	dst = appendUintField(dst, "bsoc", uint64(p.BatterySOC))
	dst = appendFloatField(dst, "lv", p.LoadVoltage)
	dst = appendFloatField(dst, "lc", p.LoadCurrent)
	dst = appendUintField(dst, "cs", uint64(p.ChargeState))
	dst = appendIntField(dst, "ct", int64(p.ControllerTemp))
	dst = appendUintField(dst, "did", uint64(p.DeviceID))
	dst = appendUintField(dst, "ts", uint64(p.TS))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) mppt() *MPPT {
	return &MPPT{
		BroadcastBase:  f.broadcastBase(),
		SolarVoltage:   f.f32("sv"),
		SolarCurrent:   f.f32("sc"),
		SolarPower:     f.u16("sp"),
		BatteryVoltage: f.f32("bv"),
		BatterySOC:     f.u8("bsoc"),
		LoadVoltage:    f.f32("lv"),
		LoadCurrent:    f.f32("lc"),
		ChargeState:    f.u8("cs"),
		ControllerTemp: f.i8("ct"),
		DeviceID:       f.u32("did"),
		TS:             f.u32("ts"),
		MessageType:    uint16(f.intOr("message_type", TypeMPPT)),
	}
}

// MeshNodeInfo is one entry of MeshNodeList.
type MeshNodeInfo struct {
	NodeID   uint32 // "nodeId"
	Status   uint8  // 0 offline, 1 online, 2 unreachable
	LastSeen uint32 // "lastSeen", Unix seconds
	RSSI     int8   // "rssi"
}

// MeshNodeList (type 600) lists the mesh's nodes. The C++ receiver keeps
// at most 50 entries (counting them in a uint8), and so does Decode;
// nodeCount is written as the number of entries.
type MeshNodeList struct {
	BroadcastBase
	Nodes       []MeshNodeInfo
	MeshID      string // "meshId"
	MessageType uint16
}

// Receiver limits of the C++ inventory packages.
const (
	MaxMeshNodeListNodes       = 50
	MaxMeshTopologyConnections = 100
	MaxMeshAlerts              = 20
)

// NewMeshNodeList returns a MeshNodeList with the C++ defaults.
func NewMeshNodeList(from uint32) *MeshNodeList {
	return &MeshNodeList{BroadcastBase: bcast(from), MessageType: TypeMeshNodeList}
}

// PackageType implements Package.
func (p *MeshNodeList) PackageType() int { return TypeMeshNodeList }

// AppendJSON implements Package.
func (p *MeshNodeList) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeMeshNodeList)
	dst = append(appendKey(dst, "nodes"), '[')
	for i := range p.Nodes {
		n := &p.Nodes[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendUintField(dst, "nodeId", uint64(n.NodeID))
		dst = appendUintField(dst, "status", uint64(n.Status))
		dst = appendUintField(dst, "lastSeen", uint64(n.LastSeen))
		dst = appendIntField(dst, "rssi", int64(n.RSSI))
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	dst = appendUintField(dst, "nodeCount", uint64(uint8(len(p.Nodes))))
	dst = appendStringField(dst, "meshId", p.MeshID)
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

// limitCount reproduces `uint8_t count = array.size(); if (count > max)
// count = max;`: the size wraps at 256 before the cap is applied.
func limitCount(n, max int) int {
	c := int(uint8(n))
	if c > max {
		c = max
	}
	return c
}

func (f fields) meshNodeList() *MeshNodeList {
	p := &MeshNodeList{BroadcastBase: f.broadcastBase()}
	el := f.elements("nodes")
	el = el[:limitCount(len(el), MaxMeshNodeListNodes)]
	if len(el) > 0 {
		p.Nodes = make([]MeshNodeInfo, len(el))
	}
	for i, e := range el {
		n := f.at(e)
		p.Nodes[i] = MeshNodeInfo{NodeID: n.u32("nodeId"), Status: n.u8("status"), LastSeen: n.u32("lastSeen"), RSSI: n.i8("rssi")}
	}
	p.MeshID = f.str("meshId")
	p.MessageType = uint16(f.intOr("message_type", TypeMeshNodeList))
	return p
}

// MeshConnection is one entry of MeshTopology.
type MeshConnection struct {
	From    uint32  // "from"
	To      uint32  // "to"
	Quality float32 // 0.0–1.0 (a C++ float)
	Latency uint16  // ms
	Hops    uint8
}

// MeshTopology (type 601) lists the mesh's links (at most 100 are kept).
type MeshTopology struct {
	BroadcastBase
	Connections []MeshConnection
	RootNode    uint32 // "rootNode"
	MessageType uint16
}

// NewMeshTopology returns a MeshTopology with the C++ defaults.
func NewMeshTopology(from uint32) *MeshTopology {
	return &MeshTopology{BroadcastBase: bcast(from), MessageType: TypeMeshTopology}
}

// PackageType implements Package.
func (p *MeshTopology) PackageType() int { return TypeMeshTopology }

// AppendJSON implements Package.
func (p *MeshTopology) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeMeshTopology)
	dst = append(appendKey(dst, "connections"), '[')
	for i := range p.Connections {
		c := &p.Connections[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendUintField(dst, "from", uint64(c.From))
		dst = appendUintField(dst, "to", uint64(c.To))
		dst = appendFloatField(dst, "quality", c.Quality)
		dst = appendUintField(dst, "latency", uint64(c.Latency))
		dst = appendUintField(dst, "hops", uint64(c.Hops))
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	dst = appendUintField(dst, "totalConnections", uint64(uint8(len(p.Connections))))
	dst = appendUintField(dst, "rootNode", uint64(p.RootNode))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) meshTopology() *MeshTopology {
	p := &MeshTopology{BroadcastBase: f.broadcastBase()}
	el := f.elements("connections")
	el = el[:limitCount(len(el), MaxMeshTopologyConnections)]
	if len(el) > 0 {
		p.Connections = make([]MeshConnection, len(el))
	}
	for i, e := range el {
		c := f.at(e)
		p.Connections[i] = MeshConnection{From: c.u32("from"), To: c.u32("to"), Quality: c.f32("quality"), Latency: c.u16("latency"), Hops: c.u8("hops")}
	}
	p.RootNode = f.u32("rootNode")
	p.MessageType = uint16(f.intOr("message_type", TypeMeshTopology))
	return p
}

// MeshAlertEntry is one alert of MeshAlert.
type MeshAlertEntry struct {
	Type      uint8   // "type": 0 low_memory, 1 node_offline, 2 connection_lost, ...
	Severity  uint8   // 0 info, 1 warning, 2 critical
	Msg       string  // "msg"
	NodeID    uint32  // "nodeId"
	Value     float32 // "value" (a C++ float)
	Threshold float32 // (a C++ float)
	AlertID   uint32  // "alertId"
}

// MeshAlert (type 602) carries alerts (at most 20 are kept).
type MeshAlert struct {
	BroadcastBase
	Alerts      []MeshAlertEntry
	MessageType uint16
}

// NewMeshAlert returns a MeshAlert with the C++ defaults.
func NewMeshAlert(from uint32) *MeshAlert {
	return &MeshAlert{BroadcastBase: bcast(from), MessageType: TypeMeshAlert}
}

// PackageType implements Package.
func (p *MeshAlert) PackageType() int { return TypeMeshAlert }

// AppendJSON implements Package.
func (p *MeshAlert) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeMeshAlert)
	dst = append(appendKey(dst, "alerts"), '[')
	for i := range p.Alerts {
		a := &p.Alerts[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		dst = appendUintField(dst, "type", uint64(a.Type))
		dst = appendUintField(dst, "severity", uint64(a.Severity))
		dst = appendStringField(dst, "msg", a.Msg)
		dst = appendUintField(dst, "nodeId", uint64(a.NodeID))
		dst = appendFloatField(dst, "value", a.Value)
		dst = appendFloatField(dst, "threshold", a.Threshold)
		dst = appendUintField(dst, "alertId", uint64(a.AlertID))
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	dst = appendUintField(dst, "alertCount", uint64(uint8(len(p.Alerts))))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) meshAlert() *MeshAlert {
	p := &MeshAlert{BroadcastBase: f.broadcastBase()}
	el := f.elements("alerts")
	el = el[:limitCount(len(el), MaxMeshAlerts)]
	if len(el) > 0 {
		p.Alerts = make([]MeshAlertEntry, len(el))
	}
	for i, e := range el {
		a := f.at(e)
		p.Alerts[i] = MeshAlertEntry{
			Type: a.u8("type"), Severity: a.u8("severity"), Msg: a.str("msg"), NodeID: a.u32("nodeId"),
			Value: a.f32("value"), Threshold: a.f32("threshold"), AlertID: a.u32("alertId"),
		}
	}
	p.MessageType = uint16(f.intOr("message_type", TypeMeshAlert))
	return p
}

// MeshBridge (type 603) encapsulates a message of another mesh protocol.
type MeshBridge struct {
	BroadcastBase
	Protocol    uint8  // 0 painlessMesh, 1 ESP-NOW, 2 BLE mesh, ...
	FromNode    uint32 // "fromNode"
	ToNode      uint32 // "toNode", 0 = broadcast
	MeshType    uint16 // "meshType"
	Payload     string // hex or base64
	RSSI        int8   // "rssi"
	Hops        uint8
	MeshTS      uint32 // "meshTs"
	Gateway     uint32
	MeshID      string // "meshId"
	MessageType uint16
}

// NewMeshBridge returns a MeshBridge with the C++ defaults.
func NewMeshBridge(from uint32) *MeshBridge {
	return &MeshBridge{BroadcastBase: bcast(from), MessageType: TypeMeshBridge}
}

// PackageType implements Package.
func (p *MeshBridge) PackageType() int { return TypeMeshBridge }

// AppendJSON implements Package.
func (p *MeshBridge) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeMeshBridge)
	dst = appendUintField(dst, "protocol", uint64(p.Protocol))
	dst = appendUintField(dst, "fromNode", uint64(p.FromNode))
	dst = appendUintField(dst, "toNode", uint64(p.ToNode))
	dst = appendUintField(dst, "meshType", uint64(p.MeshType))
	dst = appendStringField(dst, "payload", p.Payload)
	dst = appendIntField(dst, "rssi", int64(p.RSSI))
	dst = appendUintField(dst, "hops", uint64(p.Hops))
	dst = appendUintField(dst, "meshTs", uint64(p.MeshTS))
	dst = appendUintField(dst, "gateway", uint64(p.Gateway))
	dst = appendStringField(dst, "meshId", p.MeshID)
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) meshBridge() *MeshBridge {
	return &MeshBridge{
		BroadcastBase: f.broadcastBase(),
		Protocol:      f.u8("protocol"),
		FromNode:      f.u32("fromNode"),
		ToNode:        f.u32("toNode"),
		MeshType:      f.u16("meshType"),
		Payload:       f.str("payload"),
		RSSI:          f.i8("rssi"),
		Hops:          f.u8("hops"),
		MeshTS:        f.u32("meshTs"),
		Gateway:       f.u32("gateway"),
		MeshID:        f.str("meshId"),
		MessageType:   uint16(f.intOr("message_type", TypeMeshBridge)),
	}
}

// EnhancedStatus (type 604) is an extended status report. It has no
// message_type key.
type EnhancedStatus struct {
	BroadcastBase
	DeviceStatus uint8  // "status"
	Uptime       uint32 // seconds
	FreeMemoryKB uint16 // "mem"
	WiFi         uint8  // "wifi"
	Firmware     string // "fw"
	FirmwareMD5  string // "fwMD5"
	Nodes        uint16 // known nodes
	Conns        uint8  // direct connections
	MsgRx        uint32 // "msgRx"
	MsgTx        uint32 // "msgTx"
	MsgDrop      uint32 // "msgDrop"
	Latency      uint16 // ms
	Loss         uint8  // %
	Throughput   uint16 // B/s
	Alerts       uint8  // bit flags; meaning not fixed by the C++ code
	LastErr      string // "lastErr"
}

// NewEnhancedStatus returns an EnhancedStatus routed as broadcast.
func NewEnhancedStatus(from uint32) *EnhancedStatus {
	return &EnhancedStatus{BroadcastBase: bcast(from)}
}

// PackageType implements Package.
func (p *EnhancedStatus) PackageType() int { return TypeEnhancedStatus }

// AppendJSON implements Package.
func (p *EnhancedStatus) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeEnhancedStatus)
	dst = appendUintField(dst, "status", uint64(p.DeviceStatus))
	dst = appendUintField(dst, "uptime", uint64(p.Uptime))
	dst = appendUintField(dst, "mem", uint64(p.FreeMemoryKB))
	dst = appendUintField(dst, "wifi", uint64(p.WiFi))
	dst = appendStringField(dst, "fw", p.Firmware)
	dst = appendStringField(dst, "fwMD5", p.FirmwareMD5)
	dst = appendUintField(dst, "nodes", uint64(p.Nodes))
	dst = appendUintField(dst, "conns", uint64(p.Conns))
	dst = appendUintField(dst, "msgRx", uint64(p.MsgRx))
	dst = appendUintField(dst, "msgTx", uint64(p.MsgTx))
	dst = appendUintField(dst, "msgDrop", uint64(p.MsgDrop))
	dst = appendUintField(dst, "latency", uint64(p.Latency))
	dst = appendUintField(dst, "loss", uint64(p.Loss))
	dst = appendUintField(dst, "throughput", uint64(p.Throughput))
	dst = appendUintField(dst, "alerts", uint64(p.Alerts))
	dst = appendStringField(dst, "lastErr", p.LastErr)
	return append(dst, '}')
}

func (f fields) enhancedStatus() *EnhancedStatus {
	return &EnhancedStatus{
		BroadcastBase: f.broadcastBase(),
		DeviceStatus:  f.u8("status"),
		Uptime:        f.u32("uptime"),
		FreeMemoryKB:  f.u16("mem"),
		WiFi:          f.u8("wifi"),
		Firmware:      f.str("fw"),
		FirmwareMD5:   f.str("fwMD5"),
		Nodes:         f.u16("nodes"),
		Conns:         f.u8("conns"),
		MsgRx:         f.u32("msgRx"),
		MsgTx:         f.u32("msgTx"),
		MsgDrop:       f.u32("msgDrop"),
		Latency:       f.u16("latency"),
		Loss:          f.u8("loss"),
		Throughput:    f.u16("throughput"),
		Alerts:        f.u8("alerts"),
		LastErr:       f.str("lastErr"),
	}
}

// HealthCheck (type 605) is a health assessment.
type HealthCheck struct {
	BroadcastBase
	Health      uint8  // 0 critical, 1 warning, 2 healthy
	Problems    uint16 // bit flags (0x0001 low memory ... 0x0200 configuration error)
	MemHealth   uint8  // "memHealth", 0–100
	MemTrend    uint32 // "memTrend", bytes/hour lost
	NetHealth   uint8  // "netHealth"
	Loss        uint8  // %
	Reconn      uint8  // reconnections in the last hour
	PerfHealth  uint8  // "perfHealth"
	Missed      uint32 // missed deadlines
	MaxLoop     uint16 // "maxLoop", ms
	Temp        int8   // °C
	TempHealth  uint8  // "tempHealth"
	Uptime      uint32 // seconds
	Crashes     uint16
	Reboot      uint32 // last reboot reason
	ETTF        uint16 // "ettf", estimated hours to failure (0 unknown)
	Recommend   string
	TS          uint32 // "ts"
	NextCheck   uint32 // "nextCheck"
	MessageType uint16
}

// NewHealthCheck returns a HealthCheck with the C++ defaults (healthy,
// scores 100).
func NewHealthCheck(from uint32) *HealthCheck {
	return &HealthCheck{
		BroadcastBase: bcast(from), Health: 2, MemHealth: 100, NetHealth: 100,
		PerfHealth: 100, TempHealth: 100, MessageType: TypeHealthCheck,
	}
}

// PackageType implements Package.
func (p *HealthCheck) PackageType() int { return TypeHealthCheck }

// AppendJSON implements Package.
func (p *HealthCheck) AppendJSON(dst []byte) []byte {
	dst = p.appendBase(dst, TypeHealthCheck)
	dst = appendUintField(dst, "health", uint64(p.Health))
	dst = appendUintField(dst, "problems", uint64(p.Problems))
	dst = appendUintField(dst, "memHealth", uint64(p.MemHealth))
	dst = appendUintField(dst, "memTrend", uint64(p.MemTrend))
	dst = appendUintField(dst, "netHealth", uint64(p.NetHealth))
	dst = appendUintField(dst, "loss", uint64(p.Loss))
	dst = appendUintField(dst, "reconn", uint64(p.Reconn))
	dst = appendUintField(dst, "perfHealth", uint64(p.PerfHealth))
	dst = appendUintField(dst, "missed", uint64(p.Missed))
	dst = appendUintField(dst, "maxLoop", uint64(p.MaxLoop))
	dst = appendIntField(dst, "temp", int64(p.Temp))
	dst = appendUintField(dst, "tempHealth", uint64(p.TempHealth))
	dst = appendUintField(dst, "uptime", uint64(p.Uptime))
	dst = appendUintField(dst, "crashes", uint64(p.Crashes))
	dst = appendUintField(dst, "reboot", uint64(p.Reboot))
	dst = appendUintField(dst, "ettf", uint64(p.ETTF))
	dst = appendStringField(dst, "recommend", p.Recommend)
	dst = appendUintField(dst, "ts", uint64(p.TS))
	dst = appendUintField(dst, "nextCheck", uint64(p.NextCheck))
	dst = appendUintField(dst, "message_type", uint64(p.MessageType))
	return append(dst, '}')
}

func (f fields) healthCheck() *HealthCheck {
	return &HealthCheck{
		BroadcastBase: f.broadcastBase(),
		Health:        f.u8("health"),
		Problems:      f.u16("problems"),
		MemHealth:     f.u8("memHealth"),
		MemTrend:      f.u32("memTrend"),
		NetHealth:     f.u8("netHealth"),
		Loss:          f.u8("loss"),
		Reconn:        f.u8("reconn"),
		PerfHealth:    f.u8("perfHealth"),
		Missed:        f.u32("missed"),
		MaxLoop:       f.u16("maxLoop"),
		Temp:          f.i8("temp"),
		TempHealth:    f.u8("tempHealth"),
		Uptime:        f.u32("uptime"),
		Crashes:       f.u16("crashes"),
		Reboot:        f.u32("reboot"),
		ETTF:          f.u16("ettf"),
		Recommend:     f.str("recommend"),
		TS:            f.u32("ts"),
		NextCheck:     f.u32("nextCheck"),
		MessageType:   uint16(f.intOr("message_type", TypeHealthCheck)),
	}
}
