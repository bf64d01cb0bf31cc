package gateway

import (
	"strings"
	"testing"

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
