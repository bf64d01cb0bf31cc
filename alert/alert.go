package alert

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Kind is what an alert is about. Kinds 1–8 correspond to the bits 0–7 of
// the alert flags a node reports (status.AlertFlags).
type Kind uint8

// Alert kinds.
const (
	KindLowMemory Kind = iota + 1
	KindHighLatency
	KindPacketLoss
	KindConnectionLost
	KindOTAFailed
	KindSensorError
	KindWeakWiFi
	KindRebootLoop
	KindNodeOffline
	KindAnomaly

	numKinds = int(KindAnomaly)
)

var kindNames = [...]string{"", "low_memory", "high_latency", "packet_loss", "connection_lost",
	"ota_failed", "sensor_error", "weak_wifi", "reboot_loop", "node_offline", "anomaly"}

func (k Kind) String() string {
	if k >= 1 && int(k) <= numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Flag is the node's alert bit of kinds 1–8, else 0.
func (k Kind) Flag() uint8 {
	if k >= KindLowMemory && k <= KindRebootLoop {
		return 1 << (k - 1)
	}
	return 0
}

// MarshalText writes the kind's name.
func (k Kind) MarshalText() ([]byte, error) {
	if k < 1 || int(k) > numKinds {
		return nil, fmt.Errorf("alert: kind %d", k)
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText reads a kind's name.
func (k *Kind) UnmarshalText(b []byte) error {
	for i := 1; i <= numKinds; i++ {
		if kindNames[i] == string(b) {
			*k = Kind(i)
			return nil
		}
	}
	return fmt.Errorf("alert: unknown kind %q", b)
}

// Severity of an alert (the numbering of MeshAlertPackage 602).
type Severity uint8

// Severities.
const (
	SeverityInfo Severity = iota
	SeverityWarning
	SeverityCritical
)

var severityNames = [...]string{"info", "warning", "critical"}

func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return "severity(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) {
	if int(s) >= len(severityNames) {
		return nil, fmt.Errorf("alert: severity %d", s)
	}
	return []byte(severityNames[s]), nil
}

// UnmarshalText reads a severity's name.
func (s *Severity) UnmarshalText(b []byte) error {
	i := slices.Index(severityNames[:], string(b))
	if i < 0 {
		return fmt.Errorf("alert: unknown severity %q", b)
	}
	*s = Severity(i)
	return nil
}

// Alert is one alert and its lifecycle. Alerts are de-duplicated by
// (Node, Kind, Metric): while one is active, the same condition updates it
// instead of raising another.
type Alert struct {
	ID        string    `json:"id"` // "<node>/<type>"
	Node      uint32    `json:"node_id"`
	Kind      Kind      `json:"kind"`
	Metric    string    `json:"metric,omitempty"` // the watched rate, for anomalies
	Severity  Severity  `json:"severity"`
	Active    bool      `json:"active"`
	Message   string    `json:"message"`
	Value     float64   `json:"value"`
	Threshold float64   `json:"threshold"`
	Raised    time.Time `json:"raised_at"`
	Updated   time.Time `json:"updated_at"`
	Cleared   time.Time `json:"cleared_at"` // zero while active
	Updates   int       `json:"updates"`
}

// Type is the alert's type name: the kind, or "anomaly_<metric>".
func (a *Alert) Type() string {
	if a.Kind == KindAnomaly {
		return "anomaly_" + a.Metric
	}
	return a.Kind.String()
}

// Transition is what happened to an alert.
type Transition uint8

// Transitions.
const (
	Raised Transition = iota + 1
	Updated
	Cleared
)

func (t Transition) String() string {
	switch t {
	case Raised:
		return "raised"
	case Updated:
		return "updated"
	case Cleared:
		return "cleared"
	}
	return "transition(" + strconv.Itoa(int(t)) + ")"
}

// Change is one transition and the alert after it.
type Change struct {
	Transition Transition
	Alert      Alert
}

// Anomaly metrics watched by the engine.
const (
	MetricDropRate    = "drop_rate"    // messages dropped per second
	MetricMemoryTrend = "memory_trend" // free memory change, bytes per second
)

// Sample is what one report of a node tells the rules: the status
// collector fills it from the node's metrics. Zero means unknown for
// FreeMemory, LatencyUs, RSSI and WiFi.
type Sample struct {
	Uptime          uint32 // seconds since the node started
	FreeMemory      uint32 // bytes
	LatencyUs       uint32 // one-way to the collector
	LossPermille    uint16
	RSSI            int8  // dBm
	WiFi            uint8 // signal 0..100, read when RSSI is unknown
	Flags           uint8 // the alert bits the node set itself (see Kind.Flag)
	OTAFailed       bool  // the node's last firmware update failed
	OTAState        string
	FirmwareVersion string
	MessagesDropped uint32 // counter, wrapping at 2^32
}
