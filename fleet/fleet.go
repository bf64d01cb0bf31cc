// Package fleet is the gateway's view of the mesh as its integrations see
// it: nodes, topology, alerts, firmware and OTA campaigns, with the JSON
// shapes the MQTT bridge, the REST API and the metrics exporter publish.
// One model, one place: MQTT and REST return the same documents.
//
// The gateway implements Service; integrations (mqttbridge, rest, prom)
// depend only on this package, never on each other.
package fleet

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/meshfleet/meshfleet/protocol"
)

// Node is one mesh node as the gateway knows it: the one node document of
// REST (/api/v1/nodes), MQTT (status/nodes, status/node/<id>) and the
// metrics exporter. Values the gateway does not know are left out of the
// JSON (omitempty/omitzero), never sent as 0-dates or sentinels.
type Node struct {
	ID          uint32    `json:"node_id"`
	Status      string    `json:"status"` // "online" | "offline"
	Root        bool      `json:"root,omitempty"`
	Gateway     bool      `json:"gateway,omitempty"`  // this is the gateway's own node
	LastSeen    time.Time `json:"last_seen,omitzero"` // zero until the node was heard from
	Hops        *int      `json:"hops,omitempty"`     // from the gateway, 0 for itself; nil when not in the layout
	Role        string    `json:"role,omitempty"`
	Hardware    string    `json:"hardware,omitempty"`
	Firmware    string    `json:"firmware_version,omitempty"`
	FirmwareMD5 string    `json:"firmware_md5,omitempty"`
	UptimeS     uint64    `json:"uptime_s"`
	FreeMemory  uint64    `json:"free_memory_bytes,omitzero"` // 0: unknown
	RSSI        int       `json:"rssi_dbm,omitzero"`          // 0: unknown
	WiFi        int       `json:"wifi_pct,omitzero"`          // 0..100; 0: unknown
	LatencyMS   float64   `json:"latency_ms,omitzero"`        // 0: unknown
	LossPct     float64   `json:"packet_loss_pct"`
	Connections int       `json:"connections"`
	MessagesRx  uint64    `json:"messages_rx"`
	MessagesTx  uint64    `json:"messages_tx"`
	Dropped     uint64    `json:"messages_dropped"`
	AlertFlags  uint8     `json:"alert_flags"`
	Health      int       `json:"health"`           // 0..100
	Source      string    `json:"source,omitempty"` // what the latest data came from: telemetry, query, status-202, status-604, ...
	OTA         *Progress `json:"ota,omitempty"`
	// The device registry's entry (fleet.Registry).
	Name      string    `json:"name,omitempty"`
	Tags      []string  `json:"tags,omitempty"`
	Notes     string    `json:"notes,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
}

// CountNodes is the one definition of the node counts everywhere (REST
// summary, MQTT status/nodes and status/metrics, /metrics): every node
// listed, and those of them online.
func CountNodes(nodes []Node) (total, online int) {
	for _, n := range nodes {
		if n.Status == "online" {
			online++
		}
	}
	return len(nodes), online
}

// Summary is the mesh as a whole.
type Summary struct {
	NodeCount      int       `json:"node_count"`   // CountNodes of Nodes()
	OnlineCount    int       `json:"online_count"` // CountNodes of Nodes()
	HealthScore    int       `json:"health_score"` // 0..100, formula in the README
	ActiveAlerts   int       `json:"active_alerts"`
	MaxHops        int       `json:"max_hops"`
	GatewayID      uint32    `json:"gateway_node_id"`
	GatewayUptimeS uint64    `json:"gateway_uptime_s"`
	Timestamp      time.Time `json:"timestamp"`
}

// Alert is one alert with its lifecycle.
type Alert struct {
	ID        string     `json:"alert_id"`
	NodeID    uint32     `json:"node_id"`
	Type      string     `json:"alert_type"` // low_memory, high_latency, packet_loss, weak_wifi, reboot_loop, node_offline, ota_failed, anomaly_...
	Severity  string     `json:"severity"`   // info | warning | critical
	Message   string     `json:"message"`
	Value     float64    `json:"metric_value"`
	Threshold float64    `json:"threshold"`
	State     string     `json:"state"` // raised | updated | cleared
	Raised    time.Time  `json:"raised_at"`
	Updated   time.Time  `json:"updated_at"`
	Cleared   *time.Time `json:"cleared_at,omitempty"`
	AckedBy   string     `json:"acked_by,omitempty"` // who acknowledged it (AlertAcker)
	AckedAt   *time.Time `json:"acked_at,omitempty"`
}

// MeshfleetFirmware is the firmware_version a node running meshfleet
// itself reports (the gateway's own node, a Linux node without an
// installed image): "meshfleet v1.2.0", "meshfleet (devel)".
func MeshfleetFirmware(version string) string { return "meshfleet " + version }

// AlertSeverities are the values of Alert.Severity, least severe first.
var AlertSeverities = []string{"info", "warning", "critical"}

// Image is one firmware image in the store.
type Image struct {
	ID       string    `json:"id"`
	Role     string    `json:"role"`
	Hardware string    `json:"hardware"`
	Version  string    `json:"version"`
	MD5      string    `json:"md5"`
	Size     int64     `json:"size"`
	Signed   bool      `json:"signed"`
	Variants []string  `json:"variants,omitempty"` // compressed transfer encodings stored
	Added    time.Time `json:"added"`
}

// ImageUpload is what a sender says about an image it uploads.
type ImageUpload struct {
	Role, Hardware, Version string
	MD5                     string // hex, optional: the image must have this MD5
	Size                    int64  // declared length in bytes, 0 if unknown: limits are checked before reading
}

// CampaignRequest starts an OTA distribution of a stored image.
type CampaignRequest struct {
	Image    string   `json:"image"`              // image id (or md5)
	Mode     string   `json:"mode,omitempty"`     // stock | pipelined | broadcast (default from config)
	Compress string   `json:"compress,omitempty"` // none | deflate | heatshrink (default from config)
	Role     string   `json:"role,omitempty"`     // default: the image's role
	Hardware string   `json:"hardware,omitempty"` // default: the image's hardware
	Nodes    []uint32 `json:"nodes,omitempty"`    // restrict to these nodes (empty: all matching)
	Forced   bool     `json:"forced,omitempty"`
	// Targets from the device registry, added to Nodes: the nodes having
	// any of Tags, and those named Names.
	Tags  []string `json:"tags,omitempty"`
	Names []string `json:"names,omitempty"`
	// Outdated selects, among the targets (all nodes of the role and
	// hardware when none are listed), the nodes whose firmware md5 is not
	// the image's.
	Outdated bool `json:"outdated,omitempty"`
	// MaxConcurrent updates at most this many listed nodes at a time; the
	// others wait in the campaign's queue (0: all at once).
	MaxConcurrent int `json:"max_concurrent,omitempty"`
}

// Campaign is an OTA distribution and its progress.
type Campaign struct {
	ID        string              `json:"id"`
	Image     Image               `json:"image"`
	Mode      string              `json:"mode"`
	Compress  string              `json:"compress"`
	State     string              `json:"state"`            // running | paused | completed | failed | aborted | superseded
	Reason    string              `json:"reason,omitempty"` // why it failed, was aborted or superseded
	Started   time.Time           `json:"started_at"`
	Finished  *time.Time          `json:"finished_at,omitempty"`
	Targets   []uint32            `json:"targets,omitempty"`
	Nodes     map[string]Progress `json:"nodes"` // by decimal node id
	Completed int                 `json:"completed"`
	Failed    int                 `json:"failed"`
	Total     int                 `json:"total"`
	// A campaign with max_concurrent: the nodes still waiting for their
	// turn, and how many.
	MaxConcurrent int      `json:"max_concurrent,omitempty"`
	Queued        int      `json:"queued"`
	Queue         []uint32 `json:"queue,omitempty"`
}

// CampaignStates are the values of Campaign.State; a campaign that is not
// running or paused has finished.
var CampaignStates = []string{"running", "paused", "completed", "aborted", "failed", "superseded"}

// ProgressStates are the values of Progress.State.
var ProgressStates = []string{"idle", "downloading", "verifying", "switching", "confirmed", "failed", "rolled_back", "refused", "installed", "lost"}

// Progress is one node's OTA state.
type Progress struct {
	NodeID   uint32    `json:"node_id"`
	Campaign string    `json:"campaign,omitempty"`
	State    string    `json:"state"` // idle | downloading | verifying | switching | confirmed | failed | rolled_back | refused | lost (no news for ota.lost_after; Error says why); stock receivers: downloading | installed | lost
	Chunks   int       `json:"chunks_done"`
	Total    int       `json:"chunks_total"`
	Bytes    int64     `json:"bytes"`       // transfer bytes held
	BytesAll int64     `json:"bytes_total"` // transfer bytes in all
	RateBps  float64   `json:"rate_bps"`    // transfer bytes per second
	ETAS     float64   `json:"eta_s"`
	Error    string    `json:"error,omitempty"`
	Updated  time.Time `json:"updated_at"`
	// Estimated: inferred from a stock receiver's requests, which is all a
	// stock node sends; not the node's own report.
	Estimated bool `json:"estimated,omitempty"`
}

// Message is an application message from a mesh node (type 8/9 payloads,
// and other packages no plugin consumed, as their JSON).
type Message struct {
	From      uint32    `json:"from"`
	Broadcast bool      `json:"broadcast"`
	Type      int       `json:"type"`
	Payload   string    `json:"payload"`
	Received  time.Time `json:"received_at"`
}

// Event is what Subscribe delivers: exactly one field is set.
type Event struct {
	Message  *Message  `json:"message,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	Alert    *Alert    `json:"alert,omitempty"`
	Campaign *Campaign `json:"campaign,omitempty"`
	Rollout  *Rollout  `json:"rollout,omitempty"`
	// Registry: an operator changed a node's registry entry (name, tags,
	// notes) or forgot the node; its documents are to be published again.
	Registry *RegistryChange `json:"registry,omitempty"`
}

// RegistryChange is the node whose registry entry changed.
type RegistryChange struct {
	NodeID    uint32 `json:"node_id"`
	Forgotten bool   `json:"forgotten,omitempty"`
}

// Errors a Service returns; integrations map them to responses
// (REST 404/400/409, MQTT error replies).
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid request")
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: the request exceeds a size limit (REST 413).
	ErrTooLarge = errors.New("too large")
	// ErrRateLimited: the request exceeds a rate budget; retry later (REST 429).
	ErrRateLimited = errors.New("rate limited")
	// ErrStoreFull: the firmware store has no room for an image (REST 507).
	ErrStoreFull = errors.New("firmware store full")
	// ErrUnavailable: the gateway did not answer before the caller's
	// context (or its own bound) ended; retry later (REST 503).
	ErrUnavailable = errors.New("gateway node loop busy or stopped")
)

// Service is what the gateway offers its integrations. Every method is
// safe for concurrent use. A method that waits for the gateway takes a
// ctx that bounds the wait and returns an error rather than empty data
// when it gets no answer (ErrUnavailable, wrapping the context's error).
type Service interface {
	Nodes(ctx context.Context) ([]Node, error)
	Node(ctx context.Context, id uint32) (Node, error)
	Topology(ctx context.Context) (protocol.NodeTree, error)
	Summary(ctx context.Context) (Summary, error)
	Alerts(ctx context.Context, includeCleared bool) ([]Alert, error)

	Images(ctx context.Context) ([]Image, error)
	// AddImage streams an image from r into the firmware store. existed
	// reports that this very image (same bytes, role, hardware and version)
	// was stored already: nothing was written, and that is success. Other
	// bytes under a stored version, or the same bytes under another
	// version, are refused with ErrConflict.
	AddImage(ctx context.Context, up ImageUpload, r io.Reader) (img Image, existed bool, err error)
	// RemoveImage deletes an image no running or paused campaign uses.
	RemoveImage(ctx context.Context, id string) error

	StartCampaign(ctx context.Context, req CampaignRequest) (Campaign, error)
	Campaigns(ctx context.Context) ([]Campaign, error)
	Campaign(ctx context.Context, id string) (Campaign, error)
	PauseCampaign(ctx context.Context, id string) (Campaign, error)
	ResumeCampaign(ctx context.Context, id string) (Campaign, error)
	AbortCampaign(ctx context.Context, id string) (Campaign, error)

	// SendBroadcast and SendSingle refuse a message larger than the mesh
	// takes (ErrTooLarge) or beyond the airtime budget or the sender's
	// share of it (ErrRateLimited; the sender is SenderOf(ctx)).
	SendBroadcast(ctx context.Context, msg string) error
	SendSingle(ctx context.Context, dest uint32, msg string) error

	// Subscribe delivers events until ctx ends. A slow subscriber loses
	// the oldest events rather than stalling the gateway.
	Subscribe(ctx context.Context) <-chan Event

	AlertAcker
	History
	Registry
	Rollouts
}
