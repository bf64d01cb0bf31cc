package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/ota"
)

// campaignNodes is the node list of a campaign request: its nodes, those
// its tags and names select in the device registry and, with outdated,
// of these (or of every node of role and hardware when none are given)
// the ones not running the image md5. Combinations that cannot work are
// refused with fleet.ErrInvalid naming them.
func (g *Gateway) campaignNodes(ctx context.Context, req fleet.CampaignRequest, md5, role, hw string, mode ota.Mode) ([]uint32, error) {
	selecting := len(req.Tags) > 0 || len(req.Names) > 0 || req.Outdated || req.MaxConcurrent != 0
	if !selecting {
		return req.Nodes, nil
	}
	if mode == ota.ModeStockTurbo {
		return nil, fmt.Errorf("mode stock-turbo floods the image to every node of role %s and hardware %s at once; it takes no tags, names, outdated or max_concurrent: use stock, pipelined or broadcast: %w",
			role, hw, fleet.ErrInvalid)
	}
	if req.MaxConcurrent < 0 {
		return nil, fmt.Errorf("max_concurrent %d: want 1 or more (0 or left out: all at once): %w", req.MaxConcurrent, fleet.ErrInvalid)
	}
	listed := slices.Clone(req.Nodes)
	if len(req.Tags) > 0 || len(req.Names) > 0 {
		picked, err := g.registry.reg.Select(req.Tags, req.Names)
		if err != nil {
			return nil, err
		}
		for _, id := range picked {
			if !slices.Contains(listed, id) {
				listed = append(listed, id)
			}
		}
	}
	if !req.Outdated {
		if req.MaxConcurrent > 0 && len(listed) == 0 {
			return nil, fmt.Errorf("max_concurrent needs nodes to queue: give nodes, tags, names or outdated: true: %w", fleet.ErrInvalid)
		}
		return listed, nil
	}
	nodes, err := g.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	outdated := func(n fleet.Node) bool {
		return !n.Gateway && n.Role == role && n.Hardware == hw && !strings.EqualFold(n.FirmwareMD5, md5)
	}
	var out []uint32
	if len(listed) == 0 {
		for _, n := range nodes {
			if outdated(n) {
				out = append(out, n.ID)
			}
		}
	} else {
		// In the order given: the queue runs in it.
		byID := make(map[uint32]fleet.Node, len(nodes))
		for _, n := range nodes {
			byID[n.ID] = n
		}
		for _, id := range listed {
			if n, ok := byID[id]; ok && outdated(n) {
				out = append(out, id)
			}
		}
	}
	if len(out) == 0 {
		among := fmt.Sprintf("every node of role %s and hardware %s", role, hw)
		if len(listed) > 0 {
			among = fmt.Sprintf("of the %d nodes selected, every one of role %s and hardware %s", len(listed), role, hw)
		}
		return nil, fmt.Errorf("no outdated node: %s runs image %s already (or none is known): %w", among, md5, fleet.ErrConflict)
	}
	return out, nil
}

// listedAndQueued is a campaign's whole node list: the nodes listed and
// those still queued, in order.
func listedAndQueued(t ota.Targets) []uint32 {
	if len(t.Queue) == 0 {
		return t.Nodes
	}
	return append(slices.Clone(t.Nodes), t.Queue...)
}
