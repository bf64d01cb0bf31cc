package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// History is what the gateway remembers of the fleet over time: per-node
// status samples, events, alerts and OTA campaigns (package history keeps
// them in SQLite). Every query is bounded in time and count.
type History interface {
	// NodeHistory is one metric of one node over a time range in steps.
	// A node with no history has no points (no error).
	NodeHistory(ctx context.Context, q SeriesQuery) (Series, error)
	// Events are the recorded events matching q, newest first.
	Events(ctx context.Context, q EventQuery) ([]HistoryEvent, error)
	// AlertHistory is every alert raised or cleared in q's range (Kind is
	// ignored), newest first, each in its latest state.
	AlertHistory(ctx context.Context, q EventQuery) ([]Alert, error)
	// CampaignHistory is the latest OTA campaigns with their per-node
	// outcomes, newest first.
	CampaignHistory(ctx context.Context, limit int) ([]Campaign, error)
}

// ErrHistoryUnavailable: the history is off, or its database cannot be
// used (corrupt, locked, unwritable); the live state is unaffected
// (REST 503 "history unavailable: ...").
var ErrHistoryUnavailable = errors.New("history unavailable")

// HistoryMetrics are the metrics NodeHistory knows: the numeric fields of
// the node document by their JSON names, and reboots (restarts seen in a
// step: the uptime went back, also across a time offline).
var HistoryMetrics = []string{
	"free_memory_bytes", "latency_ms", "messages_rx", "messages_tx", "messages_dropped", "health",
	"uptime_s", "rssi_dbm", "wifi_pct", "packet_loss_pct", "connections", "hops", "reboots",
}

// HistoryEventKinds are the values of HistoryEvent.Kind.
var HistoryEventKinds = []string{"topology", "node", "alert", "ota", "action", "rollout"}

// SeriesQuery selects a node's metric. Zero From/To/Step take the
// defaults: the last 24 h, and a step giving at most about 1500 points.
type SeriesQuery struct {
	Node     uint32
	Metric   string
	From, To time.Time
	Step     time.Duration
}

// Series is a metric of a node in steps: each point is the mean (v), min
// and max of the samples in [t, t+step); steps without samples are left
// out. For reboots, v is the number of restarts in the step.
type Series struct {
	NodeID uint32    `json:"node_id"`
	Metric string    `json:"metric"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	StepS  int64     `json:"step_s"`
	Points []Point   `json:"points"`
}

// Point is one step of a Series; T is unix seconds.
type Point struct {
	T   int64   `json:"t"`
	V   float64 `json:"v"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// EventQuery selects events. Zero From/To: the last 24 h; Node 0: every
// node; Kind "": every kind; Limit 0: the default (100).
type EventQuery struct {
	From, To time.Time
	Node     uint32
	Kind     string
	Limit    int
}

// HistoryEvent is one recorded event: a topology change, a node joining
// or leaving, an alert raised or cleared, a campaign or one node's
// outcome in it, an operator action (who, through which interface).
type HistoryEvent struct {
	T       time.Time       `json:"t"`
	Kind    string          `json:"kind"`
	NodeID  uint32          `json:"node_id,omitempty"`
	Summary string          `json:"summary"`
	Data    json.RawMessage `json:"data,omitempty"`
}
