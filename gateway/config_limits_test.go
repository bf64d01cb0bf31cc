package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshfleet/meshfleet/transport/tcp"
)

// node.max_connections bounds the mesh listener; it defaults to the
// driver's limit and must allow at least one connection.
func TestConfigMaxConnections(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n  listen: ':5555'\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Node.MaxConnections != tcp.DefaultMaxConnections {
		t.Errorf("default max_connections %d, want %d", cfg.Node.MaxConnections, tcp.DefaultMaxConnections)
	}
	cfg, err = LoadConfig(writeConfig(t, "node:\n  id: 1\n  listen: ':5555'\n  max_connections: 4\n"), nil, nil)
	if err != nil || cfg.Node.MaxConnections != 4 {
		t.Fatalf("max_connections: 4 gives %d, %v", cfg.Node.MaxConnections, err)
	}
	for _, v := range []string{"0", "-1"} {
		_, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n  listen: ':5555'\n"), nil, []string{"node.max_connections=" + v})
		if err == nil || !strings.Contains(err.Error(), "node.max_connections") {
			t.Errorf("max_connections %s: %v, want an error naming the key", v, err)
		}
	}
}

// http.stream bounds the dashboard's event stream; each bad value is
// refused naming its key.
func TestConfigStreamLimits(t *testing.T) {
	base := writeConfig(t, "node:\n  id: 1\n  listen: ':5555'\n")
	cfg, err := LoadConfig(base, nil, []string{"http.stream.max_clients=3", "http.stream.interval=500ms", "http.stream.write_timeout=30s"})
	if err != nil {
		t.Fatal(err)
	}
	if st := cfg.HTTP.Stream; st.MaxClients != 3 || st.Interval.D() != 500*time.Millisecond || st.WriteTimeout.D() != 30*time.Second {
		t.Fatalf("http.stream %+v, want 3 clients, 500ms, 30s", st)
	}
	for _, set := range []string{"http.stream.max_clients=0", "http.stream.max_clients=5000", "http.stream.interval=10ms",
		"http.stream.interval=2m", "http.stream.write_timeout=0s", "http.stream.write_timeout=1h"} {
		key, _, _ := strings.Cut(set, "=")
		if _, err := LoadConfig(base, nil, []string{set}); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want an error naming %s", set, err, key)
		}
	}
}

// The gateway serves the stream within http.stream.max_clients.
func TestGatewayStreamMaxClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.MQTT.Enabled = false
	cfg.HTTP.Stream.MaxClients = 1
	g, _, done := startSimGateway(t, ctx, cfg, 2)
	defer func() { cancel(); <-done }()
	waitReady(t, ctx, g, done)
	open := func() *http.Response {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+g.HTTPAddr+"/api/v1/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := open()
	defer first.Body.Close()
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first stream: %d", first.StatusCode)
	}
	second := open()
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second stream with http.stream.max_clients 1: %d, want 503", second.StatusCode)
	}
}
