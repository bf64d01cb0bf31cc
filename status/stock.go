package status

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"github.com/meshfleet/meshfleet/protocol"
)

// Stock status packages (docs/protocol.md §9.4–9.7) carry some of the Metrics
// fields, in their own units. The functions below turn each into an update
// for Model.Observe: fields the package does not carry are left as they
// are, so a node that sends several kinds builds up one picture.

func sat16(v uint32) uint16 { return uint16(min(v, math.MaxUint16)) }

// kbToBytes turns a "mem" field (KB) into bytes; 0 stays unknown.
func kbToBytes(kb uint16) uint32 { return uint32(kb) * 1024 }

// applyEnhancedStatus sets the fields of an EnhancedStatusPackage (604).
func (m *Metrics) applyEnhancedStatus(p *protocol.EnhancedStatus) {
	m.DeviceStatus = p.DeviceStatus
	m.Uptime = p.Uptime
	m.FreeMemory = kbToBytes(p.FreeMemoryKB)
	m.WiFi = p.WiFi
	m.FirmwareVersion = p.Firmware
	m.FirmwareMD5 = p.FirmwareMD5
	m.Nodes = p.Nodes
	m.Connections = p.Conns
	m.MessagesRx = p.MsgRx
	m.MessagesTx = p.MsgTx
	m.MessagesDropped = p.MsgDrop
	m.LatencyUs = uint32(p.Latency) * 1000
	m.LossPermille = uint16(min(int(p.Loss)*10, 1000))
	m.Throughput = uint32(p.Throughput)
	m.Alerts = AlertFlags(p.Alerts)
	m.LastError = p.LastErr
}

// applyStatus sets the fields of a StatusPackage (202).
func (m *Metrics) applyStatus(p *protocol.Status) {
	m.DeviceStatus = p.DeviceStatus
	m.Uptime = p.Uptime
	m.FreeMemory = kbToBytes(p.FreeMemoryKB)
	m.WiFi = p.WiFi
	m.FirmwareVersion = p.Firmware
}

// applyMetrics sets the fields of a MetricsPackage (204). Its packet
// counters are 16-bit; they replace the message counters (rate rules treat
// the wrap as a counter reset).
func (m *Metrics) applyMetrics(p *protocol.Metrics) {
	m.FreeMemory = p.Heap
	m.RSSI = p.RSSI
	if p.RSSI != 0 {
		m.WiFi = WiFiPercent(p.RSSI)
	}
	m.LatencyUs = uint32(p.AvgLat) * 1000
	m.Throughput = uint32(p.Throughput)
	m.MessagesRx = uint32(p.PktsRx)
	m.MessagesTx = uint32(p.PktsTx)
	m.MessagesDropped = uint32(p.PktsDrop)
	if p.Interval != 0 {
		m.ReportInterval = sat16((p.Interval + 999) / 1000)
	}
}

// HealthCheckPackage problem bits that have an alert flag counterpart.
const (
	problemLowMemory  = 0x0001
	problemPacketLoss = 0x0008
)

// applyHealthCheck sets the fields of a HealthCheckPackage (605): uptime,
// loss, and the LOW_MEMORY and PACKET_LOSS bits from its problem flags.
func (m *Metrics) applyHealthCheck(p *protocol.HealthCheck) {
	m.Uptime = p.Uptime
	m.LossPermille = uint16(min(int(p.Loss)*10, 1000))
	m.Alerts &^= FlagLowMemory | FlagPacketLoss
	if p.Problems&problemLowMemory != 0 {
		m.Alerts |= FlagLowMemory
	}
	if p.Problems&problemPacketLoss != 0 {
		m.Alerts |= FlagPacketLoss
	}
}

// enhancedStatus is m as a stock EnhancedStatusPackage (604) from node
// from, broadcast; values too large for the stock fields saturate.
func (m *Metrics) enhancedStatus(from uint32) *protocol.EnhancedStatus {
	p := protocol.NewEnhancedStatus(from)
	p.DeviceStatus = m.DeviceStatus
	p.Uptime = m.Uptime
	p.FreeMemoryKB = sat16(m.FreeMemory / 1024)
	p.WiFi = m.WiFi
	p.Firmware = m.FirmwareVersion
	p.FirmwareMD5 = m.FirmwareMD5
	p.Nodes = m.Nodes
	p.Conns = m.Connections
	p.MsgRx = m.MessagesRx
	p.MsgTx = m.MessagesTx
	p.MsgDrop = m.MessagesDropped
	p.Latency = sat16((m.LatencyUs + 500) / 1000)
	p.Loss = uint8((min(m.LossPermille, 1000) + 5) / 10)
	p.Throughput = sat16(m.Throughput)
	p.Alerts = uint8(m.Alerts)
	p.LastErr = m.LastError
	return p
}

// addressTo turns the JSON of a stock broadcast-base package (it starts
// {"from":N,"routing":R,...) into one addressed to dest: "dest" goes after
// "from" and routing becomes 1, the key order of a C++ SinglePackage. Stock
// readers of the package ignore both keys.
func addressTo(msg []byte, dest uint32) ([]byte, error) {
	const fromKey = `{"from":`
	if !bytes.HasPrefix(msg, []byte(fromKey)) {
		return nil, fmt.Errorf("status: address package: unexpected start %.20q", msg)
	}
	i := bytes.IndexByte(msg, ',')
	const routingKey = `"routing":`
	if i < 0 || !bytes.HasPrefix(msg[i+1:], []byte(routingKey)) {
		return nil, fmt.Errorf("status: address package: no routing after from in %.40q", msg)
	}
	j := i + 1 + len(routingKey)
	k := j
	for k < len(msg) && (msg[k] == '-' || msg[k] >= '0' && msg[k] <= '9') {
		k++
	}
	out := make([]byte, 0, len(msg)+24)
	out = append(out, msg[:i+1]...)
	out = append(out, `"dest":`...)
	out = strconv.AppendUint(out, uint64(dest), 10)
	out = append(out, `,"routing":1`...)
	return append(out, msg[k:]...), nil
}
