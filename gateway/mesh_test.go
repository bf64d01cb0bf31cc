package gateway

import (
	"strings"
	"testing"
)

// A mesh id is one topic level, safe in Home Assistant ids; a bad one is
// refused naming the key and what it takes.
func TestMeshIDErrors(t *testing.T) {
	for _, c := range []struct{ id, want string }{
		{"north/east", `config: mesh.id: "north/east" is not a mesh id: 1 to 64 letters, digits, _ or -`},
		{"a+b", `"a+b" is not a mesh id`},
		{"#", `"#" is not a mesh id`},
		{"site.1", `"site.1" is not a mesh id`},
		{strings.Repeat("m", 65), "is not a mesh id"},
		{"all", `config: mesh.id: "all" is a topic level meshfleet uses under mqtt.prefix`},
		{"status", `"status" is a topic level meshfleet uses`},
	} {
		_, err := LoadConfig(writeConfig(t, "node:\n  id: 1\n"), nil, []string{"mesh.id=" + c.id})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mesh.id %q: error %v, want %q", c.id, err, c.want)
		}
	}
}

// Without mesh.id the topics, client id and mesh name are those of a
// single mesh, as before; with it, all three carry the id.
func TestMeshIDDefaultsAndLayout(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "node:\n  id: 3907768579\n"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TopicRoot() != "meshfleet" || cfg.MQTTClientID() != "meshfleet-gateway" || cfg.MeshID() != "3907768579" {
		t.Fatalf("default: root %q, client %q, mesh %q", cfg.TopicRoot(), cfg.MQTTClientID(), cfg.MeshID())
	}
	cfg, err = LoadConfig(writeConfig(t, "node:\n  id: 7\nmesh:\n  id: barn-2\n"), []string{"MESHFLEET_MQTT_PREFIX=farm"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TopicRoot() != "farm/barn-2" || cfg.MQTTClientID() != "meshfleet-gateway-barn-2" || cfg.MeshID() != "barn-2" {
		t.Fatalf("mesh barn-2: root %q, client %q, mesh %q", cfg.TopicRoot(), cfg.MQTTClientID(), cfg.MeshID())
	}
	cfg, err = LoadConfig(writeConfig(t, "node:\n  id: 7\nmesh:\n  id: barn-2\nmqtt:\n  client_id: gw-a\n"), nil, nil)
	if err != nil || cfg.MQTTClientID() != "gw-a" {
		t.Fatalf("client id set: %q, %v", cfg.MQTTClientID(), err)
	}
	// The operator role reaches its mesh and the shared control topic.
	cfg.MQTT.Embedded.Users = []BrokerUser{{Name: "ops", PasswordHash: hashOf(t, "pw"), Role: "operator"}}
	users, err := cfg.brokerUsers()
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(users[0].Write, " ")
	r := strings.Join(users[0].Read, " ")
	if !strings.Contains(w, "meshfleet/barn-2/ota/control") || !strings.Contains(w, "meshfleet/all/ota/control") || !strings.Contains(r, "meshfleet/all/ota/control/response") {
		t.Fatalf("operator of mesh barn-2 reads %s, writes %s", r, w)
	}
}
