package history

import (
	"time"

	"github.com/meshfleet/meshfleet/fleet"
)

// metric is one series a sample carries: its name (fleet.HistoryMetrics),
// its column, and the factor from the stored integer to the unit of its
// name. Columns hold integers so that a row stays small on disk.
type metric struct {
	name  string
	col   string
	scale float64
	sum   bool // a count per step (reboots), not a level: v is the sum
}

// metrics are in the order of fleet.HistoryMetrics and Sample.values.
var metrics = []metric{
	{"free_memory_bytes", "free_memory", 1, false},
	{"latency_ms", "latency_us", 0.001, false},
	{"messages_rx", "messages_rx", 1, false},
	{"messages_tx", "messages_tx", 1, false},
	{"messages_dropped", "messages_dropped", 1, false},
	{"health", "health", 1, false},
	{"uptime_s", "uptime", 1, false},
	{"rssi_dbm", "rssi", 1, false},
	{"wifi_pct", "wifi", 1, false},
	{"packet_loss_pct", "loss_permille", 0.1, false},
	{"connections", "connections", 1, false},
	{"hops", "hops", 1, false},
	{"reboots", "reboots", 1, true},
}

const numMetrics = 13

func metricByName(name string) (metric, bool) {
	for _, m := range metrics {
		if m.name == name {
			return m, true
		}
	}
	return metric{}, false
}

// Sample is one node's status at one time, as the status collector
// decoded it. Zero means unknown where the node document says so (free
// memory, latency, RSSI, WiFi); Hops is -1 when the node is not in the
// layout. Unknown values are stored as NULL and left out of means.
type Sample struct {
	Node            uint32
	T               time.Time
	FreeMemory      uint32 // bytes
	LatencyUs       uint32
	MessagesRx      uint32
	MessagesTx      uint32
	MessagesDropped uint32
	Health          int // 0..100
	Uptime          uint32
	RSSI            int8
	WiFi            uint8
	LossPermille    uint16
	Connections     uint8
	Hops            int
	Reboots         int // restarts seen since the node's previous sample
}

// values are the sample's metrics in the order of metrics; known[i] is
// false for an unknown value.
func (s *Sample) values() (v [numMetrics]int64, known [numMetrics]bool) {
	v = [numMetrics]int64{int64(s.FreeMemory), int64(s.LatencyUs), int64(s.MessagesRx), int64(s.MessagesTx),
		int64(s.MessagesDropped), int64(s.Health), int64(s.Uptime), int64(s.RSSI), int64(s.WiFi),
		int64(s.LossPermille), int64(s.Connections), int64(s.Hops), int64(s.Reboots)}
	for i := range known {
		known[i] = true
	}
	known[0] = s.FreeMemory != 0
	known[1] = s.LatencyUs != 0
	known[7] = s.RSSI != 0
	known[8] = s.WiFi != 0
	known[11] = s.Hops >= 0
	return v, known
}

var _ = fleet.HistoryMetrics // metrics follows its order (TestMetricsMatchFleet)
