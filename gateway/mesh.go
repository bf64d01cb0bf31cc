package gateway

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
)

// Several meshes, each with its own gateway, share one MQTT broker and
// one Prometheus: mesh.id keeps them apart. With it set, every topic of
// the gateway is under <mqtt.prefix>/<mesh.id>/, its MQTT client id and
// Home Assistant ids carry it, and every Prometheus series has the label
// mesh="<mesh.id>". Without it, the topics are those of a single mesh
// (<mqtt.prefix>/...), as in earlier versions, and the mesh is named by
// the gateway's node id.

// meshIDRE: a mesh id is one MQTT topic level that is also safe in a Home
// Assistant discovery topic ([a-zA-Z0-9_-]) and in a client id.
var meshIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// reservedMeshIDs are the topic levels right under the prefix that the
// single-mesh layout and the shared control topic use: a mesh named so
// would put its topics among theirs.
var reservedMeshIDs = map[string]bool{
	mqttbridge.SharedSegment: true, "bridge": true, "status": true, "ota": true, "registry": true, "from": true, "to": true,
}

func checkMeshID(id string) error {
	if id == "" {
		return nil
	}
	if !meshIDRE.MatchString(id) {
		return fmt.Errorf("%q is not a mesh id: 1 to 64 letters, digits, _ or - (it is an MQTT topic level and part of Home Assistant ids)", id)
	}
	if reservedMeshIDs[id] {
		return fmt.Errorf("%q is a topic level meshfleet uses under mqtt.prefix; pick another mesh id", id)
	}
	return nil
}

// MeshID is the mesh's id: mesh.id, else the gateway's node id.
func (c Config) MeshID() string {
	if c.Mesh.ID != "" {
		return c.Mesh.ID
	}
	return strconv.FormatUint(uint64(c.Node.ID), 10)
}

// TopicRoot is where the gateway's topics start: <mqtt.prefix>/<mesh.id>,
// or <mqtt.prefix> alone when no mesh id is set.
func (c Config) TopicRoot() string {
	if c.Mesh.ID != "" {
		return c.MQTT.Prefix + "/" + c.Mesh.ID
	}
	return c.MQTT.Prefix
}

// MQTTClientID is mqtt.client_id, else meshfleet-gateway, with the mesh
// id after it when one is set: two gateways with one client id would
// throw each other off the broker.
func (c Config) MQTTClientID() string {
	switch {
	case c.MQTT.ClientID != "":
		return c.MQTT.ClientID
	case c.Mesh.ID != "":
		return "meshfleet-gateway-" + c.Mesh.ID
	}
	return "meshfleet-gateway"
}
