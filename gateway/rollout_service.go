package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/rollout"
	"github.com/meshfleet/meshfleet/status"
)

// Bounds of a rollout request (the engine bounds the plan itself).
const (
	maxRolloutNodes  = 10_000
	maxRolloutTags   = 64
	maxRolloutNames  = 1_000
	maxRolloutReason = 256
	maxRollouts      = 1_000 // kept by the manager; the oldest ended ones make room
)

// StartRollout implements fleet.Rollouts.
func (g *Gateway) StartRollout(ctx context.Context, req fleet.RolloutRequest) (fleet.Rollout, error) {
	spec, err := g.rolloutSpec(ctx, req)
	if err != nil {
		return fleet.Rollout{}, err
	}
	nodes, topo, err := g.rolloutNodes(ctx)
	if err != nil {
		return fleet.Rollout{}, err
	}
	if spec.Plan.Policy == rollout.PolicyRollback {
		if err := g.rollbackImagesStored(spec, nodes); err != nil {
			return fleet.Rollout{}, err
		}
	}
	var v fleet.Rollout
	var serr error
	if err := g.do(ctx, func(now time.Time, _ *mesh.Node, _ *status.Collector, _ *ota.Distributor) {
		run := g.rollouts
		if run.mgr == nil {
			serr = errNotRunning
			return
		}
		if !makeRolloutRoom(run.mgr, maxRollouts-1) {
			serr = fmt.Errorf("%d rollouts are under way, the most the gateway keeps: %w", maxRollouts, fleet.ErrConflict)
			return
		}
		r, err := run.mgr.Start(now, spec, nodes, topo)
		if err != nil {
			serr = fmt.Errorf("%w: %w", err, fleet.ErrInvalid)
			return
		}
		run.flush(now)
		v = rolloutView(r, true)
	}); err != nil {
		return fleet.Rollout{}, err
	}
	return v, serr
}

// rolloutSpec turns a request into the engine's spec: the image from the
// store, registry names and tags as node ids, and the bounds checked.
func (g *Gateway) rolloutSpec(ctx context.Context, req fleet.RolloutRequest) (rollout.Spec, error) {
	t := req.Targets
	switch {
	case req.Image == "":
		return rollout.Spec{}, fmt.Errorf("rollout needs an image (its id or md5 in the firmware store): %w", fleet.ErrInvalid)
	case len(t.Nodes) > maxRolloutNodes:
		return rollout.Spec{}, fmt.Errorf("targets.nodes: %d nodes, at most %d: %w", len(t.Nodes), maxRolloutNodes, fleet.ErrInvalid)
	case len(t.Tags) > maxRolloutTags:
		return rollout.Spec{}, fmt.Errorf("targets.tags: %d tags, at most %d: %w", len(t.Tags), maxRolloutTags, fleet.ErrInvalid)
	case len(t.Names) > maxRolloutNames:
		return rollout.Spec{}, fmt.Errorf("targets.names: %d names, at most %d: %w", len(t.Names), maxRolloutNames, fleet.ErrInvalid)
	case len(req.Reason) > maxRolloutReason:
		return rollout.Spec{}, fmt.Errorf("reason: %d bytes, at most %d: %w", len(req.Reason), maxRolloutReason, fleet.ErrInvalid)
	}
	img, err := g.findImage(req.Image)
	if errors.Is(err, fleet.ErrNotFound) || errors.Is(err, firmware.ErrNotFound) {
		return rollout.Spec{}, fmt.Errorf("image %q is not in the firmware store: %w", req.Image, fleet.ErrInvalid)
	}
	if err != nil {
		return rollout.Spec{}, err
	}
	if g.publicKey != nil {
		if err := g.store.VerifySignature(img.ID, g.publicKey); err != nil {
			return rollout.Spec{}, fmt.Errorf("image %s is not signed by firmware.public_key: %w: %w", img.ID, err, fleet.ErrInvalid)
		}
	}
	ids := slices.Clone(t.Nodes)
	if len(t.Tags) > 0 || len(t.Names) > 0 {
		picked, err := g.registry.reg.Select(t.Tags, t.Names)
		if err != nil {
			return rollout.Spec{}, err
		}
		if len(picked) == 0 {
			return rollout.Spec{}, fmt.Errorf("targets: no node has tags %v or names %v: %w", t.Tags, t.Names, fleet.ErrInvalid)
		}
		if len(ids) > 0 {
			// Nodes and the registry's selection both narrow the targets.
			picked = slices.DeleteFunc(picked, func(id uint32) bool { return !slices.Contains(ids, id) })
			if len(picked) == 0 {
				return rollout.Spec{}, fmt.Errorf("targets: none of the nodes listed has tags %v or names %v: %w", t.Tags, t.Names, fleet.ErrInvalid)
			}
		}
		ids = picked
	}
	id := req.ID
	if id == "" {
		id = fmt.Sprintf("r-%s-%x", img.MD5[:8], uint32(time.Now().Unix()))
	}
	spec := rollout.Spec{ID: id,
		Image:   rollout.Image{MD5: img.MD5, Version: img.Version, Role: cmp.Or(t.Role, img.Role), Hardware: cmp.Or(t.Hardware, img.Hardware)},
		Targets: rollout.Targets{Role: t.Role, Hardware: t.Hardware, Nodes: ids, Outdated: t.Outdated},
		Plan:    req.Plan, Force: req.Force, Overlap: rollout.Overlap(req.Overlap), Reason: req.Reason}
	if err := spec.Validate(); err != nil {
		return rollout.Spec{}, fmt.Errorf("%w: %w", err, fleet.ErrInvalid)
	}
	return spec, nil
}

// rolloutNodes is every node the gateway knows, as the engine reads it,
// and the mesh's tree.
func (g *Gateway) rolloutNodes(ctx context.Context) ([]rollout.NodeInfo, rollout.Topology, error) {
	all, err := g.Nodes(ctx)
	if err != nil {
		return nil, rollout.Topology{}, err
	}
	tree, err := g.Topology(ctx)
	if err != nil {
		return nil, rollout.Topology{}, err
	}
	campaigns, err := g.Campaigns(ctx)
	if err != nil {
		return nil, rollout.Topology{}, err
	}
	var out []rollout.NodeInfo
	for _, n := range all {
		if n.Gateway {
			continue // the gateway's own node runs no OTA receiver
		}
		out = append(out, rollout.NodeInfo{ID: n.ID, Role: n.Role, Hardware: n.Hardware, Version: n.Firmware,
			MD5: strings.ToLower(n.FirmwareMD5), Tags: n.Tags, Online: n.Status == "online"})
	}
	return withInstalledImages(out, campaigns), rollout.Topology{Root: tree.NodeID, Parent: parentsOf(tree)}, nil
}

// withInstalledImages fills in the image of a node whose status does not
// name it from the campaigns: the image of the campaign that last heard
// from the node, if it confirmed (or, a stock node, installed) it there.
// A node's md5 is unknown from its first frame on a new image until it
// answers the collector's firmware query, a few seconds in which a
// rollback policy would otherwise be refused for a node the gateway has
// just updated itself. What the node's status says always wins.
func withInstalledImages(nodes []rollout.NodeInfo, campaigns []fleet.Campaign) []rollout.NodeInfo {
	type record struct {
		at      time.Time
		md5     string
		version string
	}
	last := map[uint32]record{}
	for _, c := range campaigns {
		for _, p := range c.Nodes {
			r, ok := last[p.NodeID]
			if ok && !p.Updated.After(r.at) {
				continue
			}
			r = record{at: p.Updated}
			if p.State == string(ota.StateConfirmed) || p.State == string(ota.StateInstalled) {
				r.md5, r.version = strings.ToLower(c.Image.MD5), c.Image.Version
			}
			last[p.NodeID] = r
		}
	}
	for i, n := range nodes {
		if r := last[n.ID]; n.MD5 == "" && r.md5 != "" {
			nodes[i].MD5, nodes[i].Version = r.md5, r.version
		}
	}
	return nodes
}

// rollbackImagesStored refuses a rollback policy when a node the rollout
// would update runs an image the firmware store does not hold: it could
// not be rolled back.
func (g *Gateway) rollbackImagesStored(spec rollout.Spec, nodes []rollout.NodeInfo) error {
	var missing []string
	for _, n := range nodes {
		if !rolloutTargets(spec, n) || n.MD5 == spec.Image.MD5 {
			continue
		}
		if n.MD5 == "" {
			missing = append(missing, fmt.Sprintf("node %d (its image is not known: neither its status nor a campaign names it yet)", n.ID))
		} else if _, err := g.findImage(n.MD5); err != nil {
			missing = append(missing, fmt.Sprintf("node %d (runs %s %s)", n.ID, cmp.Or(n.Version, "?"), n.MD5))
		}
		if len(missing) == 5 {
			missing = append(missing, "...")
			break
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("policy rollback needs each node's previous image in the firmware store, and it lacks that of %s: upload it, or use policy stop: %w",
			strings.Join(missing, ", "), fleet.ErrInvalid)
	}
	return nil
}

// rolloutTargets is the engine's target rule (rollout.Rollout.targets)
// for a node known at the start.
func rolloutTargets(spec rollout.Spec, n rollout.NodeInfo) bool {
	t, img := spec.Targets, spec.Image
	if t.Role != "" && n.Role != t.Role || t.Hardware != "" && n.Hardware != t.Hardware {
		return false
	}
	if len(t.Nodes) > 0 && !slices.Contains(t.Nodes, n.ID) {
		return false
	}
	return (n.Role == "" || n.Role == img.Role) && (n.Hardware == "" || n.Hardware == img.Hardware)
}

// ListRollouts implements fleet.Rollouts: every rollout, the oldest first.
func (g *Gateway) ListRollouts(ctx context.Context) ([]fleet.Rollout, error) {
	out := []fleet.Rollout{}
	err := g.do(ctx, func(time.Time, *mesh.Node, *status.Collector, *ota.Distributor) {
		if m := g.rollouts.mgr; m != nil {
			for _, r := range m.Rollouts() {
				out = append(out, rolloutView(r, false))
			}
		}
	})
	return out, err
}

// GetRollout implements fleet.Rollouts: one rollout with its nodes.
func (g *Gateway) GetRollout(ctx context.Context, id string) (fleet.Rollout, error) {
	var v fleet.Rollout
	found := false
	err := g.do(ctx, func(time.Time, *mesh.Node, *status.Collector, *ota.Distributor) {
		if m := g.rollouts.mgr; m != nil {
			if r, ok := m.Get(id); ok {
				v, found = rolloutView(r, true), true
			}
		}
	})
	if err == nil && !found {
		err = fmt.Errorf("rollout %q: %w", id, fleet.ErrNotFound)
	}
	return v, err
}

// ControlRollout implements fleet.Rollouts.
func (g *Gateway) ControlRollout(ctx context.Context, id string, cmd fleet.RolloutCommand) (fleet.Rollout, error) {
	if !slices.Contains(fleet.RolloutActions, cmd.Action) {
		return fleet.Rollout{}, fmt.Errorf("rollout action %q is not one of %s: %w", cmd.Action, strings.Join(fleet.RolloutActions, ", "), fleet.ErrInvalid)
	}
	if len(cmd.Reason) > maxRolloutReason {
		return fleet.Rollout{}, fmt.Errorf("reason: %d bytes, at most %d: %w", len(cmd.Reason), maxRolloutReason, fleet.ErrInvalid)
	}
	var v fleet.Rollout
	var serr error
	if err := g.do(ctx, func(now time.Time, _ *mesh.Node, _ *status.Collector, _ *ota.Distributor) {
		run := g.rollouts
		if run.mgr == nil {
			serr = errNotRunning
			return
		}
		m := run.mgr
		switch cmd.Action {
		case "pause":
			serr = m.Pause(now, id)
		case "resume":
			serr = m.Resume(now, id)
		case "approve":
			serr = m.Approve(now, id)
		case "abort":
			serr = m.Abort(now, id, cmp.Or(cmd.Reason, "aborted by an operator"), cmd.Rollback)
		}
		switch {
		case errors.Is(serr, rollout.ErrNoRollout):
			serr = fmt.Errorf("%w: %w", serr, fleet.ErrNotFound)
			return
		case serr != nil:
			serr = fmt.Errorf("%w: %w", serr, fleet.ErrConflict)
			return
		}
		run.flush(now)
		if r, ok := m.Get(id); ok {
			v = rolloutView(r, true)
		}
	}); err != nil {
		return fleet.Rollout{}, err
	}
	return v, serr
}

// makeRolloutRoom forgets the oldest rollouts that are over until at most
// keep remain; false if the active ones alone are more.
func makeRolloutRoom(m *rollout.Manager, keep int) bool {
	for _, r := range slices.Clone(m.Rollouts()) {
		if len(m.Rollouts()) <= keep {
			return true
		}
		if st, _ := r.State(); st.Final() {
			_ = m.Forget(r.ID()) // over: it cannot fail
		}
	}
	return len(m.Rollouts()) <= keep
}
