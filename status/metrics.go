package status

import (
	"hash/fnv"

	"github.com/meshfleet/meshfleet/status/telemetry"
)

// OTAState is where a node's firmware update stands, as its OTA receiver
// reports it.
type OTAState uint8

// OTA states (the names are the fleet API's).
const (
	OTAIdle OTAState = iota
	OTADownloading
	OTAVerifying
	OTASwitching
	OTAConfirmed
	OTAFailed
	OTARolledBack
)

var otaNames = [...]string{"idle", "downloading", "verifying", "switching", "confirmed", "failed", "rolled_back"}

func (s OTAState) String() string {
	if int(s) < len(otaNames) {
		return otaNames[s]
	}
	return "unknown"
}

// Metrics is one node's status: what a Reporter measures, what the
// extension packages carry, and what the Model keeps per node. Zero means
// unknown for FreeMemory, LatencyUs, RSSI and ReportInterval.
type Metrics struct {
	Uptime          uint32     `json:"uptime"`     // seconds since start
	FreeMemory      uint32     `json:"freeMemory"` // bytes
	MessagesRx      uint32     `json:"msgRx"`      // counters, wrapping at 2^32
	MessagesTx      uint32     `json:"msgTx"`
	MessagesDropped uint32     `json:"msgDrop"`
	LatencyUs       uint32     `json:"latencyUs"`    // one-way to the collector
	Throughput      uint32     `json:"throughput"`   // bytes/s in + out, last interval
	LossPermille    uint16     `json:"lossPermille"` // dropped/(sent+dropped), last interval
	Nodes           uint16     `json:"nodes"`        // known nodes, self excluded
	Connections     uint8      `json:"conns"`        // direct connections
	RSSI            int8       `json:"rssi"`         // dBm
	WiFi            uint8      `json:"wifi"`         // signal 0..100
	Alerts          AlertFlags `json:"alerts"`
	DeviceStatus    uint8      `json:"status"` // application status byte
	OTAState        OTAState   `json:"otaState"`
	OTAProgress     uint8      `json:"otaProgress"` // percent
	FirmwareVersion string     `json:"fw"`
	FirmwareMD5     string     `json:"fwMD5"`
	FirmwareHash    uint32     `json:"fwHash"` // FirmwareHash(version, md5)
	LastError       string     `json:"lastErr"`
	ReportInterval  uint16     `json:"interval"` // seconds until the next regular report
	// Role and Hardware are the node's OTA role and hardware; like the
	// firmware strings they are in full reports only (omitted when unknown).
	Role     string `json:"role,omitempty"`
	Hardware string `json:"hw,omitempty"`
}

// FirmwareHash is the 32-bit id of a firmware that telemetry frames carry
// instead of its version and MD5 strings: FNV-1a over version, a NUL, md5.
// Zero when both are empty.
func FirmwareHash(version, md5 string) uint32 {
	if version == "" && md5 == "" {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(version))
	h.Write([]byte{0})
	h.Write([]byte(md5))
	return h.Sum32()
}

// WiFiPercent maps an RSSI to the 0..100 signal scale of the status
// packages (2·(dBm+100), clamped); 0 dBm means unknown and maps to 0.
func WiFiPercent(rssi int8) uint8 {
	if rssi == 0 {
		return 0
	}
	p := 2 * (int(rssi) + 100)
	return uint8(min(max(p, 0), 100))
}

// Values is m as a telemetry frame carries it.
func (m *Metrics) Values() telemetry.Values {
	return telemetry.Values{
		Uptime:          m.Uptime,
		FreeMemory:      m.FreeMemory,
		MessagesRx:      m.MessagesRx,
		MessagesTx:      m.MessagesTx,
		MessagesDropped: m.MessagesDropped,
		Latency:         m.LatencyUs,
		Throughput:      m.Throughput,
		Nodes:           m.Nodes,
		LossPermille:    m.LossPermille,
		Interval:        m.ReportInterval,
		Connections:     m.Connections,
		RSSI:            m.RSSI,
		WiFi:            m.WiFi,
		Alerts:          uint8(m.Alerts),
		DeviceStatus:    m.DeviceStatus,
		OTAState:        uint8(m.OTAState),
		OTAProgress:     m.OTAProgress,
		FirmwareHash:    m.FirmwareHash,
	}
}

// applyValues sets the fields a telemetry frame carries. The firmware
// strings and LastError are not in frames: they are kept while the hash
// is unchanged and cleared when it changes.
func (m *Metrics) applyValues(v telemetry.Values) {
	if v.FirmwareHash != m.FirmwareHash {
		m.FirmwareVersion, m.FirmwareMD5, m.Role, m.Hardware = "", "", "", ""
	}
	m.Uptime = v.Uptime
	m.FreeMemory = v.FreeMemory
	m.MessagesRx = v.MessagesRx
	m.MessagesTx = v.MessagesTx
	m.MessagesDropped = v.MessagesDropped
	m.LatencyUs = v.Latency
	m.Throughput = v.Throughput
	m.Nodes = v.Nodes
	m.LossPermille = v.LossPermille
	m.ReportInterval = v.Interval
	m.Connections = v.Connections
	m.RSSI = v.RSSI
	m.WiFi = v.WiFi
	m.Alerts = AlertFlags(v.Alerts)
	m.DeviceStatus = v.DeviceStatus
	m.OTAState = OTAState(v.OTAState)
	m.OTAProgress = v.OTAProgress
	m.FirmwareHash = v.FirmwareHash
}

// Thresholds are the limits a node checks its own metrics against to set
// its alert flags (and the Reporter to send a frame at once). The zero
// value takes the defaults of the flag table.
type Thresholds struct {
	LowMemory   uint32 // bytes; default 10 KB
	HighLatency uint32 // µs; default 500 ms
	PacketLoss  uint16 // permille; default 100 (10 %)
	WeakRSSI    int8   // dBm; default -80
}

func (t Thresholds) withDefaults() Thresholds {
	if t.LowMemory == 0 {
		t.LowMemory = 10 * 1024
	}
	if t.HighLatency == 0 {
		t.HighLatency = 500_000
	}
	if t.PacketLoss == 0 {
		t.PacketLoss = 100
	}
	if t.WeakRSSI == 0 {
		t.WeakRSSI = -80
	}
	return t
}

// flags is the alert bits m's values call for under t (unknown values set
// nothing). CONNECTION_LOST, SENSOR_ERROR and REBOOT_LOOP need knowledge
// the metrics do not hold and are left to the caller.
func (t Thresholds) flags(m *Metrics) AlertFlags {
	t = t.withDefaults()
	var f AlertFlags
	if m.FreeMemory != 0 && m.FreeMemory < t.LowMemory {
		f |= FlagLowMemory
	}
	if m.LatencyUs > t.HighLatency {
		f |= FlagHighLatency
	}
	if m.LossPermille > t.PacketLoss {
		f |= FlagPacketLoss
	}
	if m.RSSI != 0 && m.RSSI < t.WeakRSSI {
		f |= FlagWiFiWeak
	}
	if m.OTAState == OTAFailed {
		f |= FlagOTAFailed
	}
	return f
}
