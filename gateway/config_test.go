package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigDefaultsAndOverrides(t *testing.T) {
	p := writeConfig(t, `
node:
  id: 42
  listen: ":5555"
mqtt:
  prefix: site1
  publish_interval: 10s
status:
  low_memory_kb: 20
`)
	env := []string{"MESHFLEET_MQTT_URL=tcp://broker:1883", "MESHFLEET_STATUS_HIGH_LATENCY_MS=250", "PATH=/bin", "MESHFLEET_FIRMWARE_DIR_UNKNOWN=x"}
	cfg, err := LoadConfig(p, env, []string{"node.connect=10.1.2.1:5555,10.1.3.1:5555", "ota.mode=pipelined"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.ID != 42 || cfg.MQTT.Prefix != "site1" || cfg.MQTT.PublishInterval.D() != 10*time.Second {
		t.Fatalf("file values not applied: %+v", cfg)
	}
	if cfg.MQTT.URL != "tcp://broker:1883" || cfg.Status.HighLatencyMS != 250 || cfg.Status.LowMemoryKB != 20 {
		t.Fatalf("env overrides not applied: %+v", cfg)
	}
	if len(cfg.Node.Connect) != 2 || cfg.Node.Connect[1] != "10.1.3.1:5555" || cfg.OTA.Mode != "pipelined" {
		t.Fatalf("--set overrides not applied: %+v", cfg.Node)
	}
	if cfg.OTA.ChunkSize != 1024 || !cfg.MQTT.Topics.Nodes || cfg.MQTT.Topics.PerNode {
		t.Fatalf("defaults lost: %+v", cfg)
	}
}

func TestLoadConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		sets       []string
		want       string
	}{
		{"missing id", "node:\n  listen: ':5555'\n", nil, "node.id"},
		{"typo", "node:\n  id: 1\n  listen: ':5555'\nmqtt:\n  brokr: x\n", nil, `unknown key "mqtt.brokr"`},
		{"wrong type", "node:\n  id: banana\n  listen: ':5555'\n", nil, "banana"},
		{"bad duration", "node:\n  id: 1\n  listen: ':5555'\nmqtt:\n  publish_interval: soon\n", nil, "not a duration"},
		{"bad url", "node:\n  id: 1\n  listen: ':5555'\nmqtt:\n  url: 'http://x'\n", nil, "mqtt.url"},
		{"bad mode", "node:\n  id: 1\n  listen: ':5555'\n", []string{"ota.mode=fast"}, "ota.mode"},
		{"bad set key", "node:\n  id: 1\n  listen: ':5555'\n", []string{"ota.speed=1"}, `unknown key "ota.speed"`},
		{"set section", "node:\n  id: 1\n  listen: ':5555'\n", []string{"ota=1"}, "is a section"},
		{"bad connect", "node:\n  id: 1\n  connect: ['nohost']\n", nil, "node.connect[0]"},
		{"not a mapping", "- 1\n- 2\n", nil, "top level must be a mapping"},
		{"section scalar", "node: 5\n", nil, "node must be a mapping"},
		{"chunk", "node:\n  id: 1\n  listen: ':5555'\nota:\n  chunk_size: 10\n", nil, "ota.chunk_size"},
		{"keep campaigns", "node:\n  id: 1\n  listen: ':5555'\nota:\n  keep_campaigns: 0\n", nil, "ota.keep_campaigns"},
		{"lost after", "node:\n  id: 1\n  listen: ':5555'\n", []string{"ota.lost_after=5s"}, "ota.lost_after"},
		{"prefix", "node:\n  id: 1\n  listen: ':5555'\nmqtt:\n  prefix: 'a/#'\n", nil, "mqtt.prefix"},
		{"send size", "node:\n  id: 1\n  listen: ':5555'\n", []string{"send.max_size=2000000"}, "send.max_size"},
		{"send rate", "node:\n  id: 1\n  listen: ':5555'\n", []string{"send.rate=0"}, "send.rate"},
		{"send bytes", "node:\n  id: 1\n  listen: ':5555'\n", []string{"send.rate_bytes=-5"}, "send.rate_bytes"},
		{"send share", "node:\n  id: 1\n  listen: ':5555'\n", []string{"send.per_client_share=1.5"}, "send.per_client_share"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, c.yaml), nil, c.sets)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want mention of %q", err, c.want)
			}
		})
	}
	cfg, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateTCP(); err == nil || !strings.Contains(err.Error(), "node.listen") {
		t.Fatalf("joining nothing: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"), nil, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := LoadConfig("../gateway.example.yaml", nil, []string{"node.id=7", "node.listen=:5555"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.ValidateTCP(); err != nil {
		t.Fatal(err)
	}
	def := DefaultConfig()
	def.Node.ID, def.Node.Listen = 7, ":5555"
	def.Node.Connect = []string{}
	if fmt.Sprintf("%+v", cfg) != fmt.Sprintf("%+v", def) {
		t.Fatalf("the example documents other values than the defaults:\n%+v\n%+v", cfg, def)
	}
}

// An empty override means the empty string (for http.listen: HTTP off), not
// YAML null, which would keep the default.
func TestLoadConfigEmptyOverrideMeansEmpty(t *testing.T) {
	p := writeConfig(t, "node:\n  id: 1\n  listen: ':5555'\n")
	cfg, err := LoadConfig(p, nil, []string{"http.listen="})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != "" {
		t.Fatalf("--set http.listen= gave http.listen %q, want empty (HTTP off)", cfg.HTTP.Listen)
	}
	cfg, err = LoadConfig(p, []string{"MESHFLEET_HTTP_LISTEN=", "MESHFLEET_HTTP_TOKEN=null"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != "" || cfg.HTTP.Token != "null" {
		t.Fatalf("MESHFLEET_HTTP_LISTEN= and MESHFLEET_HTTP_TOKEN=null gave listen %q, token %q; want empty and the literal null", cfg.HTTP.Listen, cfg.HTTP.Token)
	}
	// Where empty is not a value of the key's type, it is an error, not
	// the default.
	if _, err := LoadConfig(p, nil, []string{"status.offline_after="}); err == nil ||
		err.Error() != `config: status.offline_after (from --set): "" is not a duration (e.g. 30s, 2m, or seconds)` {
		t.Fatalf("--set status.offline_after=: %v", err)
	}
}

// Every value of the wrong type is reported with its key, where it came
// from, the value and what was expected.
func TestLoadConfigTypeErrors(t *testing.T) {
	base := "node:\n  id: 1\n  listen: ':5555'\n"
	cases := []struct {
		name, yaml string
		env, sets  []string
		want       string
	}{
		{"duration in file", base + "status:\n  offline_after: soon\n", nil, nil,
			`config: status.offline_after (gateway.yaml line 5): "soon" is not a duration (e.g. 30s, 2m, or seconds)`},
		{"negative node id", "node:\n  id: -3\n  listen: ':5555'\n", nil, nil,
			`config: node.id (gateway.yaml line 2): -3 is not a node id (1..4294967295)`},
		{"node id too large", "node:\n  id: 4294967296\n", nil, nil,
			`config: node.id (gateway.yaml line 2): 4294967296 is not a node id (1..4294967295)`},
		{"node id from env", base, []string{"MESHFLEET_NODE_ID=abc"}, nil,
			`config: node.id (from MESHFLEET_NODE_ID): "abc" is not a node id (1..4294967295)`},
		{"int from set", base, nil, []string{"ota.chunk_size=big"},
			`config: ota.chunk_size (from --set): "big" is not a whole number`},
		{"bool in file", base + "mqtt:\n  enabled: maybe\n", nil, nil,
			`config: mqtt.enabled (gateway.yaml line 5): "maybe" is not true or false`},
		{"bool from env", base, []string{"MESHFLEET_HTTP_METRICS=2"}, nil,
			`config: http.metrics (from MESHFLEET_HTTP_METRICS): 2 is not true or false`},
		{"list as string", base + "mqtt:\n  url: [a, b]\n", nil, nil,
			`config: mqtt.url (gateway.yaml line 5): a list is not a string`},
		{"string as list", "node:\n  id: 1\n  connect: 10.0.0.1:5555\n", nil, nil,
			`config: node.connect (gateway.yaml line 3): "10.0.0.1:5555" is not a list (e.g. [a, b]; in an override a,b)`},
		{"size", base + "firmware:\n  max_upload_size: 16MiB\n", nil, nil,
			`config: firmware.max_upload_size (gateway.yaml line 5): "16MiB" is not a whole number`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "gateway.yaml")
			if err := os.WriteFile(p, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(p, c.env, c.sets)
			if err == nil {
				t.Fatalf("no error, want %s", c.want)
			}
			if got := strings.ReplaceAll(err.Error(), p, "gateway.yaml"); got != c.want {
				t.Fatalf("error\n %s\nwant\n %s", got, c.want)
			}
		})
	}
}

// Values inside lists of mappings and behind pointers are reported with
// the item's key and the pointed-to type.
func TestDecodeKeysNamesItemsOfLists(t *testing.T) {
	type item struct {
		Name string `yaml:"name"`
		Max  int    `yaml:"max"`
	}
	type section struct {
		Items []item `yaml:"items"`
		On    *bool  `yaml:"on"`
	}
	type doc struct {
		S section `yaml:"s"`
	}
	source := func(n *yaml.Node) string { return fmt.Sprintf("line %d", n.Line) }
	for _, c := range []struct{ text, want string }{
		{"s:\n  items:\n    - name: a\n      max: 3\n    - name: b\n      max: lots\n",
			`config: s.items[1].max (line 6): "lots" is not a whole number`},
		{"s:\n  items:\n    - name: [x]\n", `config: s.items[0].name (line 3): a list is not a string`},
		{"s:\n  items:\n    - just-a-name\n", `config: s.items[0] (line 3): "just-a-name" is not a mapping of keys`},
		{"s:\n  items: 5\n", `config: s.items (line 2): 5 is not a list of mappings of keys`},
		{"s:\n  on: maybe\n", `config: s.on (line 2): "maybe" is not true or false`},
	} {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(c.text), &root); err != nil {
			t.Fatal(err)
		}
		var d doc
		err := decodeKeys(root.Content[0], reflect.ValueOf(&d).Elem(), "", source)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: error %v, want %s", c.text, err, c.want)
		}
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte("s:\n  items:\n    - name: a\n      max: 3\n  on: true\n"), &root); err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := decodeKeys(root.Content[0], reflect.ValueOf(&d).Elem(), "", source); err != nil {
		t.Fatal(err)
	}
	if len(d.S.Items) != 1 || d.S.Items[0] != (item{"a", 3}) || d.S.On == nil || !*d.S.On {
		t.Fatalf("decoded %+v", d)
	}
}
