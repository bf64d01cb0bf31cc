package status

import (
	"math/bits"
	"strings"
)

// AlertFlags is the alert bit set a node reports (EnhancedStatusPackage
// "alerts", telemetry frames). The bits are the table of the OTA/status
// enhancement reference (docs/protocol.md §9.5, second table): stock code gives
// them no meaning, so a mesh whose nodes use the other documented table
// will read differently.
type AlertFlags uint8

// The alert bits.
const (
	FlagLowMemory      AlertFlags = 1 << 0 // free heap < 10 KB
	FlagHighLatency    AlertFlags = 1 << 1 // average latency > 500 ms
	FlagPacketLoss     AlertFlags = 1 << 2 // loss rate > 10 %
	FlagConnectionLost AlertFlags = 1 << 3 // lost the connection to the root
	FlagOTAFailed      AlertFlags = 1 << 4 // an OTA update failed
	FlagSensorError    AlertFlags = 1 << 5 // sensor malfunction
	FlagWiFiWeak       AlertFlags = 1 << 6 // WiFi RSSI < -80 dBm
	FlagRebootLoop     AlertFlags = 1 << 7 // multiple reboots detected
)

var flagNames = [8]string{
	"LOW_MEMORY", "HIGH_LATENCY", "PACKET_LOSS", "CONNECTION_LOST",
	"OTA_FAILED", "SENSOR_ERROR", "WIFI_WEAK", "REBOOT_LOOP",
}

// Has reports whether every bit of g is set in f.
func (f AlertFlags) Has(g AlertFlags) bool { return f&g == g }

// Count is the number of bits set.
func (f AlertFlags) Count() int { return bits.OnesCount8(uint8(f)) }

// names lists the names of the bits set, lowest bit first.
func (f AlertFlags) names() []string {
	var out []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String is the set bits' names joined by "|", or "none".
func (f AlertFlags) String() string {
	if f == 0 {
		return "none"
	}
	return strings.Join(f.names(), "|")
}
