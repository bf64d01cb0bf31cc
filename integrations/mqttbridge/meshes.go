package mqttbridge

import (
	"context"
	"fmt"
	"strings"
)

// Several meshes, each with its own gateway, share one broker: each
// bridge's topics are under its own root (BridgeConfig.Prefix), and every
// bridge also listens on one shared control topic, where a request names
// the meshes it is for and only their gateways run it and answer.

// AllMeshes in a request's meshes addresses every mesh.
const AllMeshes = "*"

// SharedControlTopic is the control topic every gateway under prefix (the
// bare mqtt.prefix) listens on: <prefix>/all/ota/control. "all" is
// therefore not a mesh id.
func SharedControlTopic(prefix string) string {
	return prefix + "/" + SharedSegment + "/" + TopicOTAControl
}

// SharedResponseTopic is where answers to the shared control topic go.
func SharedResponseTopic(prefix string) string {
	return prefix + "/" + SharedSegment + "/" + TopicOTAResponse
}

// SharedSegment is the topic level after the prefix that addresses every
// mesh at once.
const SharedSegment = "all"

// named reports whether meshes names this gateway's mesh.
func (b *Bridge) named(meshes []string) bool {
	for _, m := range meshes {
		if m == AllMeshes || m == b.meshID() {
			return true
		}
	}
	return false
}

// handleSharedControl takes a request on the shared control topic: run
// here only when its meshes name this mesh; uploads stay per mesh, as the
// upload's id and staging file belong to one gateway.
func (b *Bridge) handleSharedControl(ctx context.Context, m Message) {
	b.handleControlOn(ctx, m, true)
}

// addressed checks req's meshes: on the shared topic, whether this mesh
// should run it at all (false: stay silent, another mesh's request), and
// either way whether it is well formed.
func (b *Bridge) addressed(req ControlRequest, shared bool) (run bool, err error) {
	if !shared {
		if len(req.Meshes) > 0 && !b.named(req.Meshes) {
			return true, fmt.Errorf("meshes %q does not name this mesh (%s); to address several meshes publish on %s", req.Meshes, b.meshID(), SharedControlTopic(b.cfg.SharedPrefix))
		}
		return true, nil
	}
	if len(req.Meshes) == 0 {
		return true, fmt.Errorf("meshes is required on %s: the mesh ids the request is for, or [\"*\"] for every mesh", SharedControlTopic(b.cfg.SharedPrefix))
	}
	if !b.named(req.Meshes) {
		return false, nil
	}
	if strings.HasPrefix(req.Action, "upload_") {
		return true, fmt.Errorf("%s: uploads go to each mesh's own control topic (%s), not the shared one", req.Action, b.topic(TopicOTAControl))
	}
	return true, nil
}
