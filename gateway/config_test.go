package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
