package gateway

import (
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/scenario"
)

// NewSimMesh builds a simulated fleet with the gateway's node as root (id
// cfg.Node.ID, the gateway's plugins) and the devices in a random tree
// below it: the demo, and tests that need a whole fleet without hardware.
func (g *Gateway) NewSimMesh(lc scenario.LiveConfig) (*scenario.Live, error) {
	return scenario.NewLive(lc, scenario.Root{
		ID:            g.cfg.Node.ID,
		TimeAuthority: g.cfg.Node.TimeAuthority,
		Plugins:       func(now time.Time, _ uint32) []mesh.Plugin { return g.Plugins(now) },
	}, g.log)
}
