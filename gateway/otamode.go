package gateway

import (
	"context"

	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/status"
)

// modeAuto is the ota.mode (and the default) that picks a campaign's mode
// from its targets: autoMode.
const modeAuto = "auto"

// campaignMode is the mode of a campaign request: its own, else ota.mode,
// with auto resolved against the nodes the gateway knows.
func (g *Gateway) campaignMode(ctx context.Context, req fleet.CampaignRequest, role, hardware string) string {
	mode := req.Mode
	if mode == "" {
		mode = g.cfg.OTA.Mode
	}
	if mode != modeAuto {
		return mode
	}
	nodes, err := g.Nodes(ctx)
	if err != nil {
		return string(ota.ModeBroadcast)
	}
	return string(autoMode(nodes, role, hardware, selectsNodes(req), req.Compress))
}

// selectsNodes: the request picks nodes (a node list, registry tags or
// names, the outdated nodes, a queue), which stock-turbo cannot do: it
// reaches every stock node of the role.
func selectsNodes(req fleet.CampaignRequest) bool {
	return len(req.Nodes) > 0 || len(req.Tags) > 0 || len(req.Names) > 0 || req.Outdated || req.MaxConcurrent > 0
}

// autoMode is stock-turbo when a campaign's targets are stock nodes:
// nodes online in the mesh that name no role and never sent our status
// packages (a stock node sends nothing or the stock status packages), and
// no meshfleet node of the role and hardware there. Stock-turbo is never slower for a stock node than the stock
// transfer (README, The OTA benchmark), but it reaches every node of the
// role (no node list) and sends the image uncompressed, and meshfleet
// nodes do better with broadcast: with a node list, a compression asked
// for, or meshfleet nodes of the role, it is broadcast, where stock nodes
// still get the stock transfer.
func autoMode(nodes []fleet.Node, role, hardware string, selected bool, compress string) ota.Mode {
	if selected || compress != "" && compress != "none" {
		return ota.ModeBroadcast
	}
	stock, ours := 0, 0
	for _, n := range nodes {
		switch {
		case n.Gateway || n.Status != "online":
		case n.Role == role && n.Hardware == hardware:
			ours++
		case n.Role == "" && !meshfleetSource(status.Source(n.Source)):
			stock++
		}
	}
	if stock > 0 && ours == 0 {
		return ota.ModeStockTurbo
	}
	return ota.ModeBroadcast
}

// meshfleetSource says whether a node's status came from our reporter.
func meshfleetSource(s status.Source) bool {
	return s == status.SourceTelemetry || s == status.SourceQuery || s == status.SourceLocal
}
