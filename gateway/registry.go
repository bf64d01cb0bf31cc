package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/registry"
	"github.com/meshfleet/meshfleet/status"
)

// The device registry (package registry) is fed from the status model at
// every snapshot and once per saveEvery, and saved to registryFile: at
// once when an entry came, went or changed, and at most every
// registryTouchedEvery when only last-seen times moved (a fleet reporting
// every few seconds would otherwise rewrite the file every second).
const (
	registryFile         = "registry.json"
	registryTouchedEvery = time.Minute
	// registryFullLogEvery spaces the warnings that new nodes found no
	// room in the registry.
	registryFullLogEvery = 10 * time.Minute
)

// registryState is the gateway's hold on the registry file.
type registryState struct {
	reg *registry.Registry

	// Its own lock: observe runs in the node's loop, which must never wait
	// for g.mu.
	mu       sync.Mutex
	lastSave time.Time
	fullLog  time.Time
}

// loadRegistry reads the registry a previous run saved. A corrupt file is
// an error naming it, as for the other state files.
func (g *Gateway) loadRegistry() error {
	g.registry = &registryState{reg: registry.New(registry.Limits{})}
	p := filepath.Join(g.cfg.StateDir, registryFile)
	data, err := os.ReadFile(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("state: %w", err)
	}
	if err := g.registry.reg.Restore(data); err != nil {
		return fmt.Errorf("state file %s is corrupt (%v); move it away to start with an empty device registry", p, err)
	}
	return nil
}

// saveRegistry writes the registry when it changed, or when only last-seen
// times moved and registryTouchedEvery passed (always, with final).
func (g *Gateway) saveRegistry(final bool) error {
	rs := g.registry
	changed, touched := rs.reg.Changes()
	rs.mu.Lock()
	due := changed || touched && (final || time.Since(rs.lastSave) >= registryTouchedEvery)
	if due {
		rs.lastSave = time.Now()
	}
	rs.mu.Unlock()
	if !due {
		return nil
	}
	data, err := rs.reg.MarshalJSON()
	if err == nil {
		err = writeFileAtomic(filepath.Join(g.cfg.StateDir, registryFile), append(data, '\n'))
	}
	if err != nil {
		rs.reg.Unsaved()
		return fmt.Errorf("device registry: %w", err)
	}
	return nil
}

func sightings(states []status.NodeState) []registry.Sighting {
	out := make([]registry.Sighting, 0, len(states))
	for _, st := range states {
		m := st.Metrics
		out = append(out, registry.Sighting{ID: st.ID, At: st.LastSeen, Role: m.Role, Hardware: m.Hardware,
			FirmwareVersion: m.FirmwareVersion, FwMD5: m.FirmwareMD5})
	}
	return out
}

// observe feeds the registry what the model knows at now; it runs in the
// node's loop, so a forget (also in the loop) is never undone by a
// sighting read before it.
func (g *Gateway) observe(now time.Time, states []status.NodeState) {
	rs := g.registry
	refused := rs.reg.Observe(now, sightings(states))
	if refused == 0 {
		return
	}
	rs.mu.Lock()
	logNow := time.Since(rs.fullLog) >= registryFullLogEvery
	if logNow {
		rs.fullLog = time.Now()
	}
	rs.mu.Unlock()
	if logNow {
		g.log.Warn("device registry full: new nodes are listed without a registry entry; forget dead nodes (DELETE /api/v1/nodes/{id})",
			"max_nodes", rs.reg.Limits().MaxNodes, "refused", refused)
	}
}

// observeNow feeds the registry from the running node.
func (g *Gateway) observeNow(ctx context.Context) error {
	return g.do(ctx, func(now time.Time, _ *mesh.Node, c *status.Collector, _ *ota.Distributor) {
		g.observe(now, c.Model().Nodes())
	})
}

// registered gives node documents their registry entries and adds the
// nodes only the registry knows (seen in an earlier run, not since), as
// offline; out is ordered by node id.
func registered(nodes []fleet.Node, entries []registry.Entry) []fleet.Node {
	byID := make(map[uint32]int, len(nodes))
	for i, n := range nodes {
		byID[n.ID] = i
	}
	added := false
	for _, e := range entries {
		i, ok := byID[e.ID]
		if !ok {
			n := fleet.Node{ID: e.ID, Status: "offline", LastSeen: e.LastSeen, Role: e.Role, Hardware: e.Hardware}
			if k := len(e.Firmware); k > 0 {
				n.Firmware, n.FirmwareMD5 = e.Firmware[k-1].Version, e.Firmware[k-1].MD5
			}
			nodes = append(nodes, n)
			i, added = len(nodes)-1, true
		}
		n := &nodes[i]
		n.Name, n.Tags, n.Notes, n.FirstSeen = e.Name, e.Tags, e.Notes, e.FirstSeen
	}
	if added {
		slices.SortFunc(nodes, func(a, b fleet.Node) int {
			switch {
			case a.ID < b.ID:
				return -1
			case a.ID > b.ID:
				return 1
			}
			return 0
		})
	}
	return nodes
}

// UpdateNode implements fleet.Registry.
func (g *Gateway) UpdateNode(ctx context.Context, id uint32, p fleet.NodePatch) (fleet.Node, error) {
	var perr error
	if err := g.do(ctx, func(now time.Time, _ *mesh.Node, c *status.Collector, _ *ota.Distributor) {
		_, live := c.Model().Node(id)
		if _, ok := g.registry.reg.Get(id); !ok && !live {
			perr = fmt.Errorf("node %d: never seen by this gateway: %w", id, fleet.ErrNotFound)
			return
		}
		_, perr = g.registry.reg.Patch(now, id, p)
	}); err != nil {
		return fleet.Node{}, err
	}
	if perr != nil {
		return fleet.Node{}, perr
	}
	g.fan.publish(fleet.Event{Registry: &fleet.RegistryChange{NodeID: id}})
	// Done: its result is read even if ctx ends meanwhile (do bounds it).
	return g.Node(context.WithoutCancel(ctx), id)
}

// ForgetNode implements fleet.Registry: the registry entry and what the
// status collector holds of the node go. A node still in the mesh comes
// back, as a new node, when it is next heard from.
func (g *Gateway) ForgetNode(ctx context.Context, id uint32, force bool) error {
	var ferr error
	if err := g.do(ctx, func(now time.Time, n *mesh.Node, c *status.Collector, _ *ota.Distributor) {
		if id == n.ID() {
			ferr = fmt.Errorf("node %d is this gateway's own node: %w", id, fleet.ErrConflict)
			return
		}
		st, live := c.Model().Node(id)
		_, known := g.registry.reg.Get(id)
		switch {
		case !live && !known:
			ferr = fmt.Errorf("node %d: %w", id, fleet.ErrNotFound)
			return
		case live && st.Online && !force:
			ferr = fmt.Errorf("node %d is online (last seen %s); forget a node once it is gone for good, or force it (?force=1, MQTT \"force\": true): %w",
				id, st.LastSeen.UTC().Format(time.RFC3339), fleet.ErrConflict)
			return
		}
		if live {
			c.Forget(id)
		}
		g.registry.reg.Forget(id)
	}); err != nil {
		return err
	}
	if ferr == nil {
		g.fan.publish(fleet.Event{Registry: &fleet.RegistryChange{NodeID: id, Forgotten: true}})
	}
	return ferr
}

// NodeFirmware implements fleet.Registry.
func (g *Gateway) NodeFirmware(ctx context.Context, id uint32) (fleet.FirmwareHistory, error) {
	if err := g.observeNow(ctx); err != nil {
		return fleet.FirmwareHistory{}, err
	}
	e, ok := g.registry.reg.Get(id)
	if !ok {
		return fleet.FirmwareHistory{}, fmt.Errorf("node %d: not in the device registry: %w", id, fleet.ErrNotFound)
	}
	return fleet.FirmwareHistory{NodeID: id, Firmware: append([]fleet.FirmwareRecord{}, e.Firmware...)}, nil
}
