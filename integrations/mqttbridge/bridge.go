package mqttbridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/protocol"
)

// BridgeConfig selects what the bridge publishes and where.
type BridgeConfig struct {
	Prefix          string        // topic root: mqtt.prefix, or <mqtt.prefix>/<mesh id> when the mesh id is configured
	PublishInterval time.Duration // status topics (seeds: 30 s)
	Nodes           bool          // <prefix>/status/nodes
	Topology        bool          // <prefix>/status/topology
	Metrics         bool          // <prefix>/status/metrics
	Alerts          bool          // <prefix>/status/alerts
	PerNode         bool          // <prefix>/status/node/<id> (off by default, as in the seeds)
	Messages        bool          // <prefix>/from/<id> and <prefix>/to/...
	HomeAssistant   bool          // discovery configs under HAPrefix (implies per-node topics)
	HAPrefix        string        // "homeassistant"
	DeviceID        string        // envelope device_id: the gateway's node id
	// MeshID names the gateway's mesh (mesh.id; by default the gateway's
	// node id): mesh_id on status/nodes, mesh on control responses, and
	// what a request on the shared control topic must name to be run here.
	MeshID string
	// SharedPrefix is mqtt.prefix alone: <SharedPrefix>/all/ota/control is
	// the control topic every mesh's gateway listens on. "": none.
	SharedPrefix string
	// HAScope goes into Home Assistant ids (meshfleet_<scope>_<node>_...),
	// so nodes of two meshes never share an entity; "" (the default
	// layout, one mesh per broker) keeps the ids of earlier versions.
	HAScope       string
	Version       string // envelope firmware_version: the gateway node's (fleet.MeshfleetFirmware)
	MaxUploadSize int64  // firmware upload over MQTT
	Logger        *slog.Logger
	// Now is the clock for timestamps (tests and the simulator pass their own).
	Now func() time.Time

	// Security. TrustSender: the broker stamps Message.Sender itself (the
	// embedded one does); otherwise uploads are owned by whoever knows their
	// random id, and requests are audited as from an unknown sender.
	TrustSender bool
	// MayRead is the broker's read ACL (Broker.MayRead): a reply goes only
	// to a response topic the requesting user may read. nil: not checked.
	MayRead func(user, topic string) bool
	// UploadsPerClient bounds the uploads one sender has open (default 2);
	// UploadIdle drops an upload that got no chunk for that long (default 60 s).
	UploadsPerClient int
	UploadIdle       time.Duration
	// UploadDir holds the staging files of uploads in progress (see
	// PrepareUploadDir); "": a temporary directory of the bridge's own.
	// UploadRoom checks a declared size against the firmware store's quota
	// at upload_begin; nil: checked only when the image is stored.
	UploadDir  string
	UploadRoom func(size int64) error
}

// Bridge publishes the fleet's status to MQTT and takes OTA control
// requests and mesh messages from it.
type Bridge struct {
	svc     fleet.Service
	c       *Client
	cfg     BridgeConfig
	log     *slog.Logger
	uploads *uploads
	// subscribed is closed once Run has subscribed to the request topics:
	// a request published before then is not seen by the bridge.
	subscribed chan struct{}
	// cycle serializes status cycles (the ticker's, a reconnection's, a
	// caller's): interleaved, an older cycle's documents could be retained
	// last, and a node forgotten meanwhile would keep its document.
	cycle sync.Mutex

	mu        sync.Mutex
	announced map[uint32]bool // nodes with Home Assistant discovery published
	// haProgress is the update entity state last published per node
	// (progressKey), so per-chunk progress events publish only changes.
	haProgress map[uint32]string
	haNodes    map[uint32]fleet.Node // as of the latest status cycle, for progress events
	haImages   []fleet.Image         // as of the latest status cycle; nil: not known yet
	perNode    map[uint32]bool       // nodes with a retained status/node/<id> document
	refusals   refusalLog
	skips      refusalLog // status publishes skipped because the service did not answer
}

// refusalLogGap is the least time between two warnings about refused
// to/... messages: a client flooding the mesh gets one line per gap, with
// the number of refusals since the previous one.
const refusalLogGap = 10 * time.Second

// refusalLog throttles the warnings about refused to/... messages.
type refusalLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether a warning may be logged at now, and how many
// were held back since the last one.
func (r *refusalLog) allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < refusalLogGap {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

// Topic names under the prefix.
const (
	TopicState        = "bridge/state" // availability: online / offline (last will)
	TopicNodes        = "status/nodes"
	TopicTopology     = "status/topology"
	TopicMetrics      = "status/metrics"
	TopicAlerts       = "status/alerts"
	TopicNode         = "status/node/" // + decimal id
	TopicOTAAnnounce  = "ota/announce"
	TopicOTAStatus    = "ota/status"
	TopicOTAControl   = "ota/control"
	TopicOTAResponse  = "ota/control/response"
	TopicFrom         = "from/" // + decimal id
	TopicTo           = "to/"   // + decimal id or "broadcast"
	SchemaVersion     = 1
	availabilityOn    = "online"
	availabilityOff   = "offline"
	haComponentSensor = "sensor"
)

// WillTopic is the availability topic a client dialled for this bridge
// must use as its last will (payload "offline", retained).
func WillTopic(prefix string) string { return prefix + "/" + TopicState }

// WillPayload is the last-will payload.
func WillPayload() []byte { return []byte(availabilityOff) }

// NewBridge makes a bridge; Run starts it.
func NewBridge(svc fleet.Service, c *Client, cfg BridgeConfig) *Bridge {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PublishInterval <= 0 {
		cfg.PublishInterval = 30 * time.Second
	}
	if cfg.HAPrefix == "" {
		cfg.HAPrefix = "homeassistant"
	}
	if cfg.HomeAssistant {
		cfg.PerNode = true
	}
	if cfg.MaxUploadSize <= 0 {
		cfg.MaxUploadSize = 16 << 20
	}
	return &Bridge{svc: svc, c: c, cfg: cfg, log: cfg.Logger, announced: map[uint32]bool{}, haProgress: map[uint32]string{}, haNodes: map[uint32]fleet.Node{}, subscribed: make(chan struct{}),
		uploads: newUploads(cfg.UploadDir, cfg.MaxUploadSize, cfg.UploadsPerClient, cfg.UploadIdle, cfg.UploadRoom)}
}

func (b *Bridge) topic(s string) string { return b.cfg.Prefix + "/" + s }

// meshID is the mesh's id; without one configured, the gateway's node id
// (as status/nodes has always said).
func (b *Bridge) meshID() string {
	if b.cfg.MeshID != "" {
		return b.cfg.MeshID
	}
	return b.cfg.DeviceID
}

// haID is the Home Assistant id of node: its device identifier, and with a
// suffix its entities' unique ids.
func (b *Bridge) haID(node uint32) string { return b.haIDOf(id(node)) }

func (b *Bridge) haIDOf(node string) string {
	if b.cfg.HAScope != "" {
		return "meshfleet_" + b.cfg.HAScope + "_" + node
	}
	return "meshfleet_" + node
}

// Subscribed is closed once Run has subscribed to ota/control,
// registry/control and to/#.
func (b *Bridge) Subscribed() <-chan struct{} { return b.subscribed }

// Run subscribes, publishes status every interval and on events, and
// returns when ctx ends (publishing "offline" on the way out). Uploads
// in progress end with it, their staging files removed.
func (b *Bridge) Run(ctx context.Context) error {
	defer b.uploads.closeAll()
	if err := b.c.Subscribe(ctx, b.topic(TopicOTAControl), func(m Message) { b.handleControl(ctx, m) }); err != nil {
		return err
	}
	if err := b.c.Subscribe(ctx, b.topic(TopicRegistryControl), func(m Message) { b.handleRegistry(ctx, m) }); err != nil {
		// An external broker's ACL written before the registry existed
		// may refuse it: the rest still works.
		b.log.Warn("device registry requests over MQTT unavailable", "topic", b.topic(TopicRegistryControl), "err", err)
	}
	if b.cfg.SharedPrefix != "" {
		if err := b.c.Subscribe(ctx, SharedControlTopic(b.cfg.SharedPrefix), func(m Message) { b.handleSharedControl(ctx, m) }); err != nil {
			b.log.Warn("the control topic shared by every mesh is unavailable", "topic", SharedControlTopic(b.cfg.SharedPrefix), "err", err)
		}
	}
	if b.cfg.Messages {
		if err := b.c.Subscribe(ctx, b.topic(TopicTo+"+"), func(m Message) { b.handleTo(ctx, m) }); err != nil {
			return err
		}
	}
	if b.cfg.HomeAssistant {
		if err := b.c.Subscribe(ctx, b.topic(TopicOTAInstall+"+"), func(m Message) { b.handleInstall(ctx, m) }); err != nil {
			return err
		}
	}
	close(b.subscribed)
	events := b.svc.Subscribe(ctx)
	tick := time.NewTicker(b.cfg.PublishInterval)
	defer tick.Stop()
	b.PublishAll(ctx)
	for {
		select {
		case <-ctx.Done():
			off, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			b.c.Publish(off, b.topic(TopicState), []byte(availabilityOff), true)
			cancel()
			return nil
		case <-tick.C:
			b.PublishAll(ctx)
		case ev, ok := <-events:
			if !ok {
				// The service closes the stream because ctx is ending;
				// returning here could skip the "offline" goodbye.
				events = nil
				continue
			}
			b.handleEvent(ctx, ev)
		}
	}
}

// OnConnect republishes availability and retained state after a
// (re)connection; pass it as ClientConfig.OnUp.
func (b *Bridge) OnConnect(ctx context.Context) {
	b.mu.Lock()
	b.announced = map[uint32]bool{} // a new broker may not have our discovery configs
	b.mu.Unlock()
	select {
	case <-b.subscribed:
	default:
		// Run publishes everything once it has subscribed: a retained
		// status published before then would tell clients requests are
		// taken while ota/control still goes unheard.
		return
	}
	b.PublishAll(ctx)
}

func (b *Bridge) publishJSON(ctx context.Context, topic string, v any, retain bool) {
	data, err := marshal(v)
	if err != nil {
		b.log.Error("mqtt payload", "topic", topic, "err", err)
		return
	}
	if err := b.c.Publish(ctx, topic, data, retain); err != nil && err != ErrNotConnected {
		b.log.Warn("mqtt publish failed", "topic", topic, "err", err)
	}
}

func marshal(v any) ([]byte, error) {
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return []byte(strings.TrimSuffix(sb.String(), "\n")), nil
}

// envelope is the seeds' common first keys of every status payload.
type envelope struct {
	SchemaVersion   int    `json:"schema_version"`
	DeviceID        string `json:"device_id"`
	DeviceType      string `json:"device_type"`
	Timestamp       string `json:"timestamp"`
	FirmwareVersion string `json:"firmware_version"`
}

func (b *Bridge) env() envelope {
	return envelope{SchemaVersion: SchemaVersion, DeviceID: b.cfg.DeviceID, DeviceType: "gateway",
		Timestamp: b.cfg.Now().UTC().Format(time.RFC3339), FirmwareVersion: b.cfg.Version}
}

// NodesPayload is <prefix>/status/nodes: the node documents of the REST
// API (fleet.Node), and their count (fleet.CountNodes).
type NodesPayload struct {
	envelope
	Nodes     []fleet.Node `json:"nodes"`
	NodeCount int          `json:"node_count"`
	MeshID    string       `json:"mesh_id"`
}

// TopologyPayload is <prefix>/status/topology: the real tree, as
// painlessMesh's subConnectionJson, and its edges.
type TopologyPayload struct {
	envelope
	Tree             json.RawMessage `json:"tree"`
	Connections      []Connection    `json:"connections"`
	RootNode         string          `json:"root_node"`
	TotalConnections int             `json:"total_connections"`
}

// Connection is one mesh link.
type Connection struct {
	From string `json:"from_node"`
	To   string `json:"to_node"`
	Hops int    `json:"hop_count"` // of the farther end, from the gateway
}

// MetricsPayload is <prefix>/status/metrics.
type MetricsPayload struct {
	envelope
	Metrics MeshMetrics `json:"metrics"`
}

// MeshMetrics keeps the seeds' keys and adds the mesh-wide figures.
type MeshMetrics struct {
	UptimeS          uint64 `json:"uptime_s"`
	MeshNodes        int    `json:"mesh_nodes"`
	OnlineNodes      int    `json:"online_nodes"`
	ConnectedDevices int    `json:"connected_devices"`
	HealthScore      int    `json:"health_score"`
	ActiveAlerts     int    `json:"active_alerts"`
	MaxHops          int    `json:"max_hops"`
}

// AlertsPayload is <prefix>/status/alerts.
type AlertsPayload struct {
	envelope
	Alerts     []fleet.Alert `json:"alerts"`
	AlertCount int           `json:"alert_count"`
}

// PublishAll publishes availability and every enabled status topic now.
// When the service fails to answer, the rest of the cycle is skipped:
// empty documents would replace the retained state, which stays as last
// published until a later cycle.
func (b *Bridge) PublishAll(ctx context.Context) {
	b.cycle.Lock()
	defer b.cycle.Unlock()
	b.publish(ctx, b.topic(TopicState), []byte(availabilityOn), true)
	nodes, err := b.svc.Nodes(ctx)
	if err != nil {
		b.skipped(TopicNodes, err)
		return
	}
	if nodes == nil {
		nodes = []fleet.Node{}
	}
	// Counts come from the same list as the documents, so status/nodes and
	// status/metrics agree with each other and with REST.
	total, online := fleet.CountNodes(nodes)
	sum, err := b.svc.Summary(ctx)
	if err != nil {
		b.skipped(TopicMetrics, err)
		return
	}
	if b.cfg.Nodes {
		b.publishJSON(ctx, b.topic(TopicNodes), NodesPayload{envelope: b.env(), Nodes: nodes, NodeCount: total, MeshID: b.meshID()}, true)
	}
	if b.cfg.Topology {
		t, err := b.topology(ctx)
		if err != nil {
			b.skipped(TopicTopology, err)
			return
		}
		b.publishJSON(ctx, b.topic(TopicTopology), t, true)
	}
	if b.cfg.Metrics {
		b.publishJSON(ctx, b.topic(TopicMetrics), MetricsPayload{envelope: b.env(), Metrics: MeshMetrics{
			UptimeS: sum.GatewayUptimeS, MeshNodes: total, OnlineNodes: online,
			ConnectedDevices: max(total-1, 0), HealthScore: sum.HealthScore, ActiveAlerts: sum.ActiveAlerts, MaxHops: sum.MaxHops,
		}}, true)
	}
	if b.cfg.Alerts && !b.publishAlerts(ctx) {
		return
	}
	if b.cfg.PerNode {
		var imgs []fleet.Image // nil: update entity states not published this cycle
		if b.cfg.HomeAssistant {
			if imgs, err = b.svc.Images(ctx); err != nil {
				b.skipped(TopicNode+"<id>"+TopicNodeUpdate, err)
				imgs = nil
			} else if imgs == nil {
				imgs = []fleet.Image{}
			}
		}
		for _, n := range nodes {
			b.publishNode(ctx, n, imgs)
		}
		b.clearForgotten(ctx, nodes)
	}
	b.publishAnnounce(ctx)
}

// skipped logs, at most once per refusalLogGap, that topic and what
// follows it in the cycle were not published because the service failed.
func (b *Bridge) skipped(topic string, err error) {
	if ok, held := b.skips.allow(b.cfg.Now()); ok {
		b.log.Warn("mqtt status not published, the retained state stays as it was", "topic", b.topic(topic), "err", err, "skipped_since_last", held)
	}
}

func (b *Bridge) publish(ctx context.Context, topic string, payload []byte, retain bool) {
	if err := b.c.Publish(ctx, topic, payload, retain); err != nil && err != ErrNotConnected {
		b.log.Warn("mqtt publish failed", "topic", topic, "err", err)
	}
}

func id(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func (b *Bridge) topology(ctx context.Context) (TopologyPayload, error) {
	t, err := b.svc.Topology(ctx)
	if err != nil {
		return TopologyPayload{}, err
	}
	p := TopologyPayload{envelope: b.env(), Tree: json.RawMessage(t.AppendJSON(nil)), Connections: []Connection{}, RootNode: id(t.NodeID)}
	if r := findRoot(t); r != 0 {
		p.RootNode = id(r)
	}
	var walk func(n protocol.NodeTree, depth int)
	walk = func(n protocol.NodeTree, depth int) {
		for _, s := range n.Subs {
			p.Connections = append(p.Connections, Connection{From: id(s.NodeID), To: id(n.NodeID), Hops: depth + 1})
			walk(s, depth+1)
		}
	}
	walk(t, 0)
	p.TotalConnections = len(p.Connections)
	return p, nil
}

// findRoot is the node flagged root in the tree, if any.
func findRoot(t protocol.NodeTree) uint32 {
	if t.Root {
		return t.NodeID
	}
	for _, s := range t.Subs {
		if r := findRoot(s); r != 0 {
			return r
		}
	}
	return 0
}

// publishAlerts reports false when the service did not answer and
// nothing was published.
func (b *Bridge) publishAlerts(ctx context.Context) bool {
	as, err := b.svc.Alerts(ctx, false)
	if err != nil {
		b.skipped(TopicAlerts, err)
		return false
	}
	if as == nil {
		as = []fleet.Alert{}
	}
	b.publishJSON(ctx, b.topic(TopicAlerts), AlertsPayload{envelope: b.env(), Alerts: as, AlertCount: len(as)}, true)
	return true
}

// nodePayload is <prefix>/status/node/<id>: the envelope with that node's
// id, type and firmware version, then the fleet.Node document.
func nodePayload(e envelope, n fleet.Node) ([]byte, error) {
	e.FirmwareVersion = n.Firmware
	n.Firmware = "" // it is in the envelope; omitted from the node part
	head, err := marshal(e)
	if err != nil {
		return nil, err
	}
	body, err := marshal(n)
	if err != nil {
		return nil, err
	}
	// Splice two JSON objects into one, envelope keys first.
	return append(append(head[:len(head)-1:len(head)-1], ','), body[1:]...), nil
}

func (b *Bridge) publishNode(ctx context.Context, n fleet.Node, imgs []fleet.Image) {
	e := b.env()
	e.DeviceID, e.DeviceType = id(n.ID), "sensor"
	if n.Gateway {
		e.DeviceType = "gateway"
	}
	payload, err := nodePayload(e, n)
	if err != nil {
		b.log.Error("node payload", "node", n.ID, "err", err)
		return
	}
	b.publish(ctx, b.topic(TopicNode+id(n.ID)), payload, true)
	if b.cfg.HomeAssistant {
		b.discover(ctx, n)
		b.publishHAState(ctx, n, imgs)
	}
}

// haSensor is one Home Assistant MQTT discovery config.
type haSensor struct {
	Name              string           `json:"name"`
	UniqueID          string           `json:"unique_id"`
	StateTopic        string           `json:"state_topic"`
	ValueTemplate     string           `json:"value_template"`
	UnitOfMeasurement string           `json:"unit_of_measurement,omitempty"`
	DeviceClass       string           `json:"device_class,omitempty"`
	StateClass        string           `json:"state_class,omitempty"`
	Availability      []haAvailability `json:"availability"`
	AvailabilityMode  string           `json:"availability_mode"`
	Device            haDevice         `json:"device"`
}

type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model,omitempty"`
	SWVersion    string   `json:"sw_version,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
}

// haSensors are the per-node sensors offered to Home Assistant. An
// optional key is left out of the node document while its value is
// unknown (fleet.Node).
var haSensors = []struct {
	key, name, unit, class string
	optional               bool
}{
	{"rssi_dbm", "RSSI", "dBm", "signal_strength", true},
	{"free_memory_bytes", "Free memory", "B", "data_size", true},
	{"uptime_s", "Uptime", "s", "duration", false},
	{"latency_ms", "Latency", "ms", "duration", true},
	{"health", "Health", "%", "", false},
	{"connections", "Connections", "", "", false},
}

// haValueTemplate reads key from the node document. An absent key renders
// "None", which Home Assistant takes as the state unknown for a sensor with
// a unit or device class; without the default it logs a template error
// for every document.
func haValueTemplate(key string, optional bool) string {
	if optional {
		return "{{ value_json." + key + " | default(None) }}"
	}
	return "{{ value_json." + key + " }}"
}

func (b *Bridge) discover(ctx context.Context, n fleet.Node) {
	b.mu.Lock()
	done := b.announced[n.ID]
	b.announced[n.ID] = true
	b.mu.Unlock()
	if done {
		return
	}
	name := "Mesh node " + id(n.ID)
	if b.cfg.HAScope != "" {
		name = "Mesh " + b.cfg.HAScope + " node " + id(n.ID)
	}
	dev := haDevice{Identifiers: []string{b.haID(n.ID)}, Name: name, Manufacturer: "painlessMesh",
		Model: n.Hardware, SWVersion: n.Firmware}
	if !n.Gateway {
		dev.ViaDevice = b.haIDOf(b.cfg.DeviceID)
	}
	for _, s := range haSensors {
		uid := b.haID(n.ID) + "_" + s.key
		cfg := haSensor{Name: s.name, UniqueID: uid, StateTopic: b.topic(TopicNode + id(n.ID)),
			ValueTemplate: haValueTemplate(s.key, s.optional), UnitOfMeasurement: s.unit, DeviceClass: s.class,
			StateClass: "measurement", Availability: b.haAvailabilityOf(n.ID), AvailabilityMode: "all", Device: dev}
		b.publishJSON(ctx, b.cfg.HAPrefix+"/"+haComponentSensor+"/"+uid+"/config", cfg, true)
	}
	b.discoverUpdate(ctx, n, dev)
}

// AnnouncePayload is <prefix>/ota/announce: what is offered.
type AnnouncePayload struct {
	Images    []fleet.Image    `json:"images"`
	Campaigns []fleet.Campaign `json:"campaigns"`
	Timestamp string           `json:"timestamp"`
}

func (b *Bridge) publishAnnounce(ctx context.Context) {
	imgs, err := b.svc.Images(ctx)
	if err != nil {
		b.skipped(TopicOTAAnnounce, err)
		return
	}
	if imgs == nil {
		imgs = []fleet.Image{}
	}
	cs, err := b.svc.Campaigns(ctx)
	if err != nil {
		b.skipped(TopicOTAAnnounce, err)
		return
	}
	if cs == nil {
		cs = []fleet.Campaign{}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].ID < cs[j].ID })
	b.publishJSON(ctx, b.topic(TopicOTAAnnounce), AnnouncePayload{Images: imgs, Campaigns: cs, Timestamp: b.cfg.Now().UTC().Format(time.RFC3339)}, true)
}

func (b *Bridge) handleEvent(ctx context.Context, ev fleet.Event) {
	switch {
	case ev.Message != nil && b.cfg.Messages:
		b.publish(ctx, b.topic(TopicFrom+id(ev.Message.From)), []byte(ev.Message.Payload), false)
	case ev.Progress != nil:
		b.publishJSON(ctx, b.topic(TopicOTAStatus), ev.Progress, false)
		if b.cfg.HomeAssistant {
			b.publishHAProgress(ctx, *ev.Progress)
		}
	case ev.Campaign != nil:
		b.publishJSON(ctx, b.topic(TopicOTAStatus), map[string]any{"campaign": ev.Campaign}, false)
		b.publishAnnounce(ctx)
	case ev.Rollout != nil:
		b.publishJSON(ctx, b.topic(TopicOTAStatus), map[string]any{"rollout": ev.Rollout}, false)
	case ev.Alert != nil && b.cfg.Alerts:
		// Alerts are published as they change, not only every interval.
		b.publishAlerts(ctx)
	case ev.Registry != nil:
		// A name, tags or a forgotten node show at once (node documents,
		// Home Assistant), not at the next interval. Operators make these
		// changes by hand, so a whole cycle each is cheap.
		b.PublishAll(ctx)
	}
}

func (b *Bridge) handleTo(ctx context.Context, m Message) {
	dest := strings.TrimPrefix(m.Topic, b.topic(TopicTo))
	from := b.sender(m)
	ctx = fleet.WithSender(ctx, from.sendShare())
	var err error
	if dest == "broadcast" {
		err = b.svc.SendBroadcast(ctx, string(m.Payload))
	} else if v, perr := strconv.ParseUint(dest, 10, 32); perr != nil || v == 0 {
		err = fmt.Errorf("topic %s: %q is not a node id or \"broadcast\"", m.Topic, dest)
	} else {
		err = b.svc.SendSingle(ctx, uint32(v), string(m.Payload))
	}
	// A flood over the airtime budget is not audited line by line: the
	// rate-limited warning below counts it.
	if !errors.Is(err, fleet.ErrRateLimited) {
		fleet.Audit(b.log, fleet.AuditAction{Via: "mqtt", Who: from.who(b.cfg.TrustSender), Client: from.ClientID, Action: "message.send", Target: dest, Err: err})
	}
	if err == nil {
		return
	}
	if !errors.Is(err, fleet.ErrTooLarge) && !errors.Is(err, fleet.ErrRateLimited) {
		b.log.Warn("mqtt message into the mesh", "topic", m.Topic, "err", err)
		return
	}
	// Answer on the MQTT 5 response topic if the sender gave one at or
	// below ota/control/response, where replies go: anywhere else (a to/
	// topic, say) the answer could be sent on into the mesh.
	if m.ResponseTopic != "" && b.checkResponseTopic(m, from) == nil {
		payload, merr := marshal(SendResponse{Topic: m.Topic, OK: false, Error: err.Error()})
		if merr == nil {
			if rerr := b.c.Reply(ctx, m, "", payload); rerr == nil {
				return
			}
		}
	}
	if ok, held := b.refusals.allow(b.cfg.Now()); ok {
		b.log.Warn("mqtt message into the mesh refused", "topic", m.Topic, "err", err, "refused_since_last", held)
	}
}

// SendResponse answers a <prefix>/to/... message on its MQTT 5 response
// topic when the mesh refused it.
type SendResponse struct {
	Topic string `json:"topic"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}
