package gateway

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/meshfleet/meshfleet/transport/tcp"
)

// Config is the gateway's whole configuration: one YAML file, every key
// documented in gateway.example.yaml, overridable by environment variables
// (MESHFLEET_SECTION_KEY) and by --set section.key=value flags.
type Config struct {
	Node     NodeConfig     `yaml:"node"`
	Mesh     MeshConfig     `yaml:"mesh"`
	MQTT     MQTTConfig     `yaml:"mqtt"`
	HTTP     HTTPConfig     `yaml:"http"`
	Firmware FirmwareConfig `yaml:"firmware"`
	OTA      OTAConfig      `yaml:"ota"`
	Status   StatusConfig   `yaml:"status"`
	Send     SendConfig     `yaml:"send"`
	History  HistoryConfig  `yaml:"history"`
	StateDir string         `yaml:"state_dir"`
	Log      LogConfig      `yaml:"log"`
}

// NodeConfig is how the gateway joins the mesh.
type NodeConfig struct {
	ID             uint32   `yaml:"id"`
	Root           bool     `yaml:"root"`
	TimeAuthority  bool     `yaml:"time_authority"`
	Listen         string   `yaml:"listen"`
	Connect        []string `yaml:"connect"`
	MaxMessageSize int      `yaml:"max_message_size"`
	MaxConnections int      `yaml:"max_connections"`
}

// MeshConfig names the mesh, for deployments of several meshes (each
// with its own gateway) into one broker and one Prometheus (mesh.go).
type MeshConfig struct {
	// ID is the mesh's id: a topic level (<mqtt.prefix>/<id>/...), the
	// mesh label of every Prometheus series, part of Home Assistant ids.
	// "": the gateway's node id, with the topics of a single mesh.
	ID string `yaml:"id"`
}

// MQTTConfig selects the broker and what the bridge publishes.
type MQTTConfig struct {
	Enabled         bool                `yaml:"enabled"`
	Embedded        EmbeddedBroker      `yaml:"embedded"`
	URL             string              `yaml:"url"`
	Username        string              `yaml:"username"`
	Password        string              `yaml:"password"`
	TLS             TLSConfig           `yaml:"tls"`
	ClientID        string              `yaml:"client_id"`
	Prefix          string              `yaml:"prefix"`
	PublishInterval Duration            `yaml:"publish_interval"`
	Topics          TopicSwitches       `yaml:"topics"`
	HomeAssistant   HomeAssistantConfig `yaml:"homeassistant"`
	// Security (security.go).
	Uploads MQTTUploads `yaml:"uploads"`
}

// EmbeddedBroker runs an MQTT broker inside the gateway (used when url is empty).
type EmbeddedBroker struct {
	Listen string `yaml:"listen"`
	// Security (security.go): with no users the broker is anonymous, which
	// beyond loopback needs insecure: true.
	Users    []BrokerUser `yaml:"users"`
	TLS      BrokerTLS    `yaml:"tls"`
	Insecure bool         `yaml:"insecure"`
}

// TLSConfig is for an external broker reached over TLS (mqtts:// or ssl://).
type TLSConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// TopicSwitches turns the status bridge's topics on and off.
type TopicSwitches struct {
	Nodes    bool `yaml:"nodes"`
	Topology bool `yaml:"topology"`
	Metrics  bool `yaml:"metrics"`
	Alerts   bool `yaml:"alerts"`
	PerNode  bool `yaml:"per_node"`
	Messages bool `yaml:"messages"`
}

// HomeAssistantConfig enables MQTT discovery of per-node sensors.
type HomeAssistantConfig struct {
	Enabled bool   `yaml:"enabled"`
	Prefix  string `yaml:"prefix"`
}

// HTTPConfig serves the REST API and Prometheus /metrics.
type HTTPConfig struct {
	Listen  string `yaml:"listen"`
	Token   string `yaml:"token"`
	Metrics bool   `yaml:"metrics"`
	// Security (security.go): beyond loopback a token is needed unless
	// insecure; metrics_auth unset means "when beyond loopback with a token".
	Insecure    bool  `yaml:"insecure"`
	MetricsAuth *bool `yaml:"metrics_auth"`
	// Stream bounds GET /api/v1/stream, the dashboard's live feed.
	Stream StreamConfig `yaml:"stream"`
}

// StreamConfig bounds the event stream (integrations/rest.StreamConfig).
type StreamConfig struct {
	MaxClients   int      `yaml:"max_clients"`   // streams open at once; more get 503
	Interval     Duration `yaml:"interval"`      // summary and changed nodes this often
	WriteTimeout Duration `yaml:"write_timeout"` // a client taking no event this long is dropped
}

// FirmwareConfig locates the firmware store and the signing keys.
type FirmwareConfig struct {
	Dir           string `yaml:"dir"`
	PublicKeyFile string `yaml:"public_key"`
	MaxUploadSize int64  `yaml:"max_upload_size"`
	// MaxConcurrentUploads bounds REST uploads in progress at once.
	MaxConcurrentUploads int `yaml:"max_concurrent_uploads"`
	// MaxStoreSize bounds the bytes of all stored images together.
	MaxStoreSize int64 `yaml:"max_store_size"`
}

// OTAConfig holds distribution defaults.
type OTAConfig struct {
	ChunkSize        int      `yaml:"chunk_size"`
	AnnounceInterval Duration `yaml:"announce_interval"`
	Mode             string   `yaml:"mode"`
	Compress         string   `yaml:"compress"`
	// KeepCampaigns is how many ended campaigns are listed and persisted;
	// the oldest are dropped. Running and paused ones are always kept.
	KeepCampaigns int `yaml:"keep_campaigns"`
	// LostAfter: a campaign's target that sends no news for this long
	// counts as lost, so a node gone for good does not keep its campaign
	// running. It takes part again if it reports.
	LostAfter Duration `yaml:"lost_after"`
}

// StatusConfig tunes the status collector and alert thresholds.
type StatusConfig struct {
	ReportInterval   Duration `yaml:"report_interval"`
	OfflineAfter     Duration `yaml:"offline_after"`
	LowMemoryKB      int      `yaml:"low_memory_kb"`
	HighLatencyMS    int      `yaml:"high_latency_ms"`
	PacketLossPct    int      `yaml:"packet_loss_pct"`
	WeakWiFiDBm      int      `yaml:"weak_wifi_dbm"`
	RebootLoopCount  int      `yaml:"reboot_loop_count"`
	RebootLoopWindow Duration `yaml:"reboot_loop_window"`
}

// SendConfig bounds application messages into the mesh (MQTT <prefix>/to/...,
// REST POST /api/v1/messages): the size of one package and an airtime
// budget, so a client cannot flood the radio links.
type SendConfig struct {
	MaxSize   int     `yaml:"max_size"`   // bytes of the encoded package
	Rate      float64 `yaml:"rate"`       // messages per second
	RateBytes float64 `yaml:"rate_bytes"` // bytes per second
	// PerClientShare is the fraction of the budget one sender (MQTT user,
	// anonymous client id, all of REST) may use.
	PerClientShare float64 `yaml:"per_client_share"`
}

// LogConfig selects slog's level and handler.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Duration reads "30s", "5m" or a plain number of seconds.
type Duration time.Duration

// UnmarshalYAML accepts Go duration strings and plain seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, or seconds)", s)
	}
	return v, nil
}

// DefaultConfig is what an empty file means: an embedded broker on
// 127.0.0.1:1883, REST and metrics on 127.0.0.1:8080, the stock OTA chunk
// size, and the seeds' 30 s status publish interval.
func DefaultConfig() Config {
	return Config{
		Node: NodeConfig{Root: true, MaxMessageSize: tcp.DefaultMaxMessageSize, MaxConnections: tcp.DefaultMaxConnections},
		MQTT: MQTTConfig{
			Enabled:         true,
			Embedded:        EmbeddedBroker{Listen: "127.0.0.1:1883"},
			Prefix:          "meshfleet",
			PublishInterval: Duration(30 * time.Second),
			Topics:          TopicSwitches{Nodes: true, Topology: true, Metrics: true, Alerts: true, Messages: true},
			HomeAssistant:   HomeAssistantConfig{Prefix: "homeassistant"},
			Uploads:         MQTTUploads{PerClient: 2, IdleTimeout: Duration(60 * time.Second)},
		},
		HTTP: HTTPConfig{Listen: "127.0.0.1:8080", Metrics: true,
			Stream: StreamConfig{MaxClients: 16, Interval: Duration(2 * time.Second), WriteTimeout: Duration(10 * time.Second)}},
		Firmware: FirmwareConfig{Dir: "firmware", MaxUploadSize: 16 << 20, MaxConcurrentUploads: 2, MaxStoreSize: 1 << 30},
		OTA: OTAConfig{
			ChunkSize:        1024,
			KeepCampaigns:    50,
			LostAfter:        Duration(10 * time.Minute),
			AnnounceInterval: Duration(60 * time.Second),
			Mode:             modeAuto,
			Compress:         "deflate",
		},
		Status: StatusConfig{
			ReportInterval:   Duration(time.Second),
			OfflineAfter:     Duration(5 * time.Second),
			LowMemoryKB:      10,
			HighLatencyMS:    500,
			PacketLossPct:    10,
			WeakWiFiDBm:      -80,
			RebootLoopCount:  3,
			RebootLoopWindow: Duration(10 * time.Minute),
		},
		// painlessMesh v6 nodes drop packages over MAX_MESSAGE_CAPACITY
		// (8192 bytes, docs/protocol.md §1.3); an ESP8266 link carries about 28
		// packages of 4.4 KB a second, so the budget leaves most of it to
		// the mesh's own traffic.
		Send:     SendConfig{MaxSize: 8192, Rate: 10, RateBytes: 16384, PerClientShare: 0.5},
		History:  defaultHistoryConfig(),
		StateDir: "state",
		Log:      LogConfig{Level: "info", Format: "text"},
	}
}

// EnvPrefix starts every environment override: MESHFLEET_MQTT_URL sets mqtt.url.
const EnvPrefix = "MESHFLEET_"

// LoadConfig reads path (empty: defaults only), then applies environment
// overrides from env (KEY=VALUE strings, normally os.Environ()), then the
// --set overrides ("mqtt.url=tcp://host:1883"), and validates the result.
// Errors name the offending key.
func LoadConfig(path string, env []string, sets []string) (Config, error) {
	var root yaml.Node
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if len(bytes.TrimSpace(data)) > 0 {
			if err := yaml.Unmarshal(data, &root); err != nil {
				return Config{}, fmt.Errorf("config %s: %w", path, err)
			}
		}
	}
	doc := documentMapping(&root)
	if doc == nil {
		return Config{}, fmt.Errorf("config %s: the top level must be a mapping of sections (node:, mqtt:, ...)", path)
	}
	if err := checkKeys(doc, reflect.TypeFor[Config](), ""); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	type override struct{ key, val, source string }
	var overrides []override
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		key, known := envKey(strings.TrimPrefix(k, EnvPrefix))
		if !known {
			continue // other MESHFLEET_ variables (e.g. the firmware dir of the CLI) are not ours
		}
		overrides = append(overrides, override{key, v, "from " + k})
	}
	// Environment order is not meaningful; make it deterministic.
	sort.Slice(overrides, func(i, j int) bool { return overrides[i].key < overrides[j].key })
	for _, o := range sets {
		key, val, ok := strings.Cut(o, "=")
		if !ok {
			return Config{}, fmt.Errorf("override %q: want key=value, e.g. mqtt.url=tcp://broker:1883", o)
		}
		overrides = append(overrides, override{strings.TrimSpace(key), val, "from --set"})
	}
	// Where each value came from, for errors: a file line or an override.
	sources := map[*yaml.Node]string{}
	for _, o := range overrides {
		n, err := setKey(doc, reflect.TypeFor[Config](), o.key, o.val)
		if err != nil {
			return Config{}, err
		}
		sources[n] = o.source
	}
	source := func(n *yaml.Node) string {
		if s, ok := sources[n]; ok {
			return s
		}
		return fmt.Sprintf("%s line %d", path, n.Line)
	}
	cfg := DefaultConfig()
	if err := decodeKeys(doc, reflect.ValueOf(&cfg).Elem(), "", source); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func documentMapping(root *yaml.Node) *yaml.Node {
	if root.Kind == 0 {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil
	}
	return root
}

// fields maps yaml keys to struct fields of t.
func fields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = f
		}
	}
	return m
}

var durationType = reflect.TypeFor[Duration]()

func isSection(t reflect.Type) bool { return t.Kind() == reflect.Struct && t != durationType }

// checkKeys rejects keys the configuration does not have, naming them with
// their full path, so a typo is an error instead of a silent default.
func checkKeys(n *yaml.Node, t reflect.Type, prefix string) error {
	fs := fields(t)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		path := prefix + k.Value
		f, ok := fs[k.Value]
		if !ok {
			return fmt.Errorf("line %d: unknown key %q (known keys here: %s)", k.Line, path, strings.Join(sortedKeys(fs), ", "))
		}
		if et := f.Type; et.Kind() == reflect.Slice && isSection(et.Elem()) && v.Kind == yaml.SequenceNode {
			for j, item := range v.Content {
				if item.Kind != yaml.MappingNode {
					return fmt.Errorf("line %d: %s[%d] must be a mapping of keys", item.Line, path, j)
				}
				if err := checkKeys(item, et.Elem(), fmt.Sprintf("%s[%d].", path, j)); err != nil {
					return err
				}
			}
		}
		if isSection(f.Type) {
			if v.Kind != yaml.MappingNode {
				if v.Tag == "!!null" {
					continue
				}
				return fmt.Errorf("line %d: %s must be a mapping of keys", v.Line, path)
			}
			if err := checkKeys(v, f.Type, path+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys(fs map[string]reflect.StructField) []string {
	ks := make([]string, 0, len(fs))
	for k := range fs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// envKey turns MQTT_URL into mqtt.url, or STATUS_LOW_MEMORY_KB into
// status.low_memory_kb, by matching against the known keys.
func envKey(s string) (string, bool) {
	s = strings.ToLower(s)
	var walk func(t reflect.Type, rest, prefix string) (string, bool)
	walk = func(t reflect.Type, rest, prefix string) (string, bool) {
		for name, f := range fields(t) {
			switch {
			case rest == name && !isSection(f.Type):
				return prefix + name, true
			case isSection(f.Type) && strings.HasPrefix(rest, name+"_"):
				if k, ok := walk(f.Type, strings.TrimPrefix(rest, name+"_"), prefix+name+"."); ok {
					return k, true
				}
			}
		}
		return "", false
	}
	return walk(reflect.TypeFor[Config](), s, "")
}

// setKey writes one dotted key into the YAML tree, creating sections as
// needed, and returns the value's node. The value is taken literally for
// strings (empty is the empty string, not YAML null, so that
// http.listen= turns HTTP off); other types read it as YAML (true, 30s,
// 1024), where empty is an error, not the default. Lists take
// comma-separated values.
func setKey(doc *yaml.Node, t reflect.Type, key, val string) (*yaml.Node, error) {
	parts := strings.Split(key, ".")
	n := doc
	for i, p := range parts {
		fs := fields(t)
		f, ok := fs[p]
		if !ok {
			return nil, fmt.Errorf("override %s: unknown key %q (known keys here: %s)", key, strings.Join(parts[:i+1], "."), strings.Join(sortedKeys(fs), ", "))
		}
		last := i == len(parts)-1
		if last == isSection(f.Type) {
			if last {
				return nil, fmt.Errorf("override %s: %s is a section; set one of its keys: %s", key, key, strings.Join(sortedKeys(fields(f.Type)), ", "))
			}
			return nil, fmt.Errorf("override %s: %s is not a section", key, strings.Join(parts[:i+1], "."))
		}
		var child *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == p {
				child = n.Content[j+1]
				break
			}
		}
		if last {
			var nv *yaml.Node
			if f.Type.Kind() == reflect.Slice {
				nv = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
				for _, item := range strings.Split(val, ",") {
					if item = strings.TrimSpace(item); item != "" {
						nv.Content = append(nv.Content, overrideScalar(f.Type.Elem(), item))
					}
				}
			} else {
				nv = overrideScalar(f.Type, val)
			}
			if child != nil {
				*child = *nv
				return child, nil
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: p}, nv)
			return nv, nil
		}
		if child == nil || child.Kind != yaml.MappingNode {
			nm := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if child != nil {
				*child = *nm
				nm = child
			} else {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: p}, nm)
			}
			child = nm
		}
		n, t = child, f.Type
	}
	return nil, nil
}

// overrideScalar is an override's value for a key of type t.
func overrideScalar(t reflect.Type, val string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: val}
	if t.Kind() == reflect.String || val == "" {
		n.Tag = "!!str"
	}
	return n
}

// decodeKeys decodes the mapping n into the struct v key by key, so that
// a value of the wrong type is reported with its key, its source (a file
// line or an override), the value and what the key takes.
func decodeKeys(n *yaml.Node, v reflect.Value, prefix string, source func(*yaml.Node) string) error {
	fs := fields(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		f, ok := fs[k.Value]
		if !ok {
			continue // checkKeys and setKey have refused unknown keys
		}
		key := prefix + k.Value
		fv := v.FieldByIndex(f.Index)
		if isSection(f.Type) {
			if val.Kind == yaml.MappingNode {
				if err := decodeKeys(val, fv, key+".", source); err != nil {
					return err
				}
			}
			continue // a null section keeps its defaults; checkKeys refused other kinds
		}
		if err := decodeValue(val, fv, key, source); err != nil {
			return err
		}
	}
	return nil
}

// decodeValue decodes one key's value into v. A list of mappings is
// decoded item by item, so that an error names the item's key
// (mqtt.embedded.users[1].name).
func decodeValue(val *yaml.Node, v reflect.Value, key string, source func(*yaml.Node) string) error {
	t := v.Type()
	if t.Kind() == reflect.Slice && isSection(t.Elem()) && val.Kind == yaml.SequenceNode &&
		!reflect.PointerTo(t.Elem()).Implements(reflect.TypeFor[yaml.Unmarshaler]()) {
		items := reflect.MakeSlice(t, len(val.Content), len(val.Content))
		for i, item := range val.Content {
			itemKey := fmt.Sprintf("%s[%d]", key, i)
			if item.Kind != yaml.MappingNode {
				return fmt.Errorf("config: %s (%s): %s is not a mapping of keys", itemKey, source(item), describeValue(item))
			}
			if err := decodeKeys(item, items.Index(i), itemKey+".", source); err != nil {
				return err
			}
		}
		v.Set(items)
		return nil
	}
	if err := val.Decode(v.Addr().Interface()); err != nil {
		return fmt.Errorf("config: %s (%s): %s is not %s", key, source(val), describeValue(val), keyFormat(key, t))
	}
	return nil
}

// keyFormats describes keys whose values are narrower than their Go type.
var keyFormats = map[string]string{
	"node.id": "a node id (1..4294967295)",
}

// keyFormat says what a key of type t takes, for errors.
func keyFormat(key string, t reflect.Type) string {
	if f, ok := keyFormats[key]; ok {
		return f
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		return "a duration (e.g. 30s, 2m, or seconds)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return "a whole number (0 or more)"
	case t.Kind() == reflect.Slice && isSection(t.Elem()):
		return "a list of mappings of keys"
	case t.Kind() == reflect.Slice:
		return "a list (e.g. [a, b]; in an override a,b)"
	case t.Kind() == reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

// describeValue shows a YAML value in an error: strings quoted, other
// scalars as written.
func describeValue(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.ShortTag() == "!!str" {
		return strconv.Quote(n.Value)
	}
	return n.Value
}

// Validate checks every key and returns the first problem, naming the key.
func (c Config) Validate() error {
	bad := func(key, format string, a ...any) error {
		return fmt.Errorf("config: %s: %s", key, fmt.Sprintf(format, a...))
	}
	if c.Node.ID == 0 {
		return bad("node.id", "must be a non-zero mesh node id (1..4294967295), unique in the mesh")
	}
	if err := checkMeshID(c.Mesh.ID); err != nil {
		return bad("mesh.id", "%v", err)
	}
	if c.Node.Listen != "" {
		if err := checkHostPort(c.Node.Listen); err != nil {
			return bad("node.listen", "%v", err)
		}
	}
	for i, a := range c.Node.Connect {
		if err := checkHostPort(a); err != nil {
			return bad(fmt.Sprintf("node.connect[%d]", i), "%v", err)
		}
	}
	if c.Node.MaxMessageSize < 1024 {
		return bad("node.max_message_size", "must be at least 1024 bytes (an OTA data package is ~1.5 KB), got %d", c.Node.MaxMessageSize)
	}
	if c.Node.MaxConnections < 1 {
		return bad("node.max_connections", "must be at least 1, got %d", c.Node.MaxConnections)
	}
	if c.Send.MaxSize < 64 || c.Send.MaxSize > c.Node.MaxMessageSize {
		return bad("send.max_size", "must be 64..node.max_message_size (%d) bytes, got %d", c.Node.MaxMessageSize, c.Send.MaxSize)
	}
	if !(c.Send.Rate > 0) {
		return bad("send.rate", "must be a positive number of messages per second, got %v", c.Send.Rate)
	}
	if !(c.Send.RateBytes > 0) {
		return bad("send.rate_bytes", "must be a positive number of bytes per second, got %v", c.Send.RateBytes)
	}
	if !(c.Send.PerClientShare > 0 && c.Send.PerClientShare <= 1) {
		return bad("send.per_client_share", "must be a fraction of the budget above 0 and at most 1, got %v", c.Send.PerClientShare)
	}
	if c.MQTT.Enabled {
		if c.MQTT.URL == "" {
			if err := checkHostPort(c.MQTT.Embedded.Listen); err != nil {
				return bad("mqtt.embedded.listen", "%v", err)
			}
		} else {
			u, err := url.Parse(c.MQTT.URL)
			if err != nil || u.Host == "" {
				return bad("mqtt.url", "%q is not a broker URL (want e.g. tcp://broker:1883 or mqtts://broker:8883)", c.MQTT.URL)
			}
			switch u.Scheme {
			case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
			default:
				return bad("mqtt.url", "scheme %q is not supported (tcp, mqtt, ssl, tls, mqtts, ws, wss)", u.Scheme)
			}
		}
		if (c.MQTT.TLS.CertFile == "") != (c.MQTT.TLS.KeyFile == "") {
			return bad("mqtt.tls.cert_file", "cert_file and key_file go together")
		}
		if c.MQTT.Prefix == "" || strings.ContainsAny(c.MQTT.Prefix, "+#") || strings.HasSuffix(c.MQTT.Prefix, "/") {
			return bad("mqtt.prefix", "%q must be non-empty, without + or # and without a trailing /", c.MQTT.Prefix)
		}
		if c.MQTT.PublishInterval.D() < 100*time.Millisecond {
			return bad("mqtt.publish_interval", "must be at least 100ms, got %s", c.MQTT.PublishInterval.D())
		}
	}
	if c.HTTP.Listen != "" {
		if err := checkHostPort(c.HTTP.Listen); err != nil {
			return bad("http.listen", "%v", err)
		}
	}
	if st := c.HTTP.Stream; st.MaxClients < 1 || st.MaxClients > 1024 {
		return bad("http.stream.max_clients", "must be between 1 and 1024, got %d", st.MaxClients)
	}
	if d := c.HTTP.Stream.Interval.D(); d < 100*time.Millisecond || d > time.Minute {
		return bad("http.stream.interval", "must be between 100ms and 1m, got %s", d)
	}
	if d := c.HTTP.Stream.WriteTimeout.D(); d < time.Second || d > 5*time.Minute {
		return bad("http.stream.write_timeout", "must be between 1s and 5m, got %s", d)
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	if c.Firmware.Dir == "" {
		return bad("firmware.dir", "must name a directory for the firmware store")
	}
	if c.Firmware.MaxUploadSize <= 0 {
		return bad("firmware.max_upload_size", "must be positive")
	}
	if c.OTA.KeepCampaigns < 1 || c.OTA.KeepCampaigns > 10000 {
		return bad("ota.keep_campaigns", "must be between 1 and 10000, got %d", c.OTA.KeepCampaigns)
	}
	if c.Firmware.MaxConcurrentUploads <= 0 {
		return bad("firmware.max_concurrent_uploads", "must be at least 1, got %d", c.Firmware.MaxConcurrentUploads)
	}
	if c.Firmware.MaxStoreSize < c.Firmware.MaxUploadSize {
		return bad("firmware.max_store_size", "must hold at least one image of firmware.max_upload_size (%d bytes), got %d", c.Firmware.MaxUploadSize, c.Firmware.MaxStoreSize)
	}
	if c.OTA.ChunkSize < 64 || c.OTA.ChunkSize > 16384 {
		return bad("ota.chunk_size", "must be between 64 and 16384 bytes (stock uses 1024), got %d", c.OTA.ChunkSize)
	}
	if c.OTA.AnnounceInterval.D() < time.Second {
		return bad("ota.announce_interval", "must be at least 1s (stock: 60s)")
	}
	if c.OTA.LostAfter.D() < time.Minute {
		// Receivers report every 10 s while they download and a trial
		// boot takes seconds; less would call nodes at work lost.
		return bad("ota.lost_after", "must be at least 1m, got %s", c.OTA.LostAfter.D())
	}
	switch c.OTA.Mode {
	case modeAuto, "stock", "stock-turbo", "pipelined", "broadcast":
	default:
		return bad("ota.mode", "%q is not one of auto, stock, stock-turbo, pipelined, broadcast", c.OTA.Mode)
	}
	switch c.OTA.Compress {
	case "none", "deflate", "heatshrink":
	default:
		return bad("ota.compress", "%q is not one of none, deflate, heatshrink", c.OTA.Compress)
	}
	if c.Status.ReportInterval.D() <= 0 || c.Status.OfflineAfter.D() <= 0 {
		return bad("status.report_interval", "report_interval and offline_after must be positive")
	}
	if err := c.validateHistory(); err != nil {
		return err
	}
	if c.StateDir == "" {
		return bad("state_dir", "must name a directory for campaign and alert state")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	return nil
}

// ValidateTCP adds what joining a real mesh needs to Validate.
func (c Config) ValidateTCP() error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Node.Listen == "" && len(c.Node.Connect) == 0 {
		return fmt.Errorf("config: node.listen: set node.listen (accept mesh connections) and/or node.connect (join via a node's AP address, e.g. 10.x.y.1:5555)")
	}
	return nil
}

func checkHostPort(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. :5555 or 10.0.1.1:5555)", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port must be 0..65535", a)
	}
	return nil
}
