package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

// statusSimReport is the status scenario's report with the wall time it
// took (the status package reads no clock).
type statusSimReport struct {
	scenario.StatusReport
	WallS float64 `json:"wall_s"`
}

func runStatusScenario(cmd *cobra.Command, cfg scenario.StatusConfig, asJSON bool) error {
	wallStart := time.Now()
	rep, runErr := scenario.RunStatus(cmd.Context(), cfg)
	if runErr != nil && !errors.Is(runErr, sim.ErrNotConverged) {
		return runErr
	}
	out := statusSimReport{StatusReport: rep, WallS: time.Since(wallStart).Seconds()}
	if asJSON {
		if err := json.NewEncoder(cmd.OutOrStdout()).Encode(out); err != nil {
			return err
		}
	} else if err := writeStatusReport(cmd.OutOrStdout(), out); err != nil {
		return err
	}
	return runErr
}

func writeStatusReport(w io.Writer, r statusSimReport) error {
	secs := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.3f s", *v)
	}
	pct := func(v float64) string { return fmt.Sprintf("%.3f%%", 100*v) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "mesh\t%d nodes, %s, %s link, seed %d, telemetry every %g s\n", r.Nodes, r.Topology, r.Link, r.Seed, r.IntervalS)
	fmt.Fprintf(tw, "converged after\t%s\n", secs(r.ConvergedAtS))
	fmt.Fprintf(tw, "all nodes online at root after\t%s\n", secs(r.StatusReadyAtS))
	fmt.Fprintf(tw, "measured for\t%.3f s\n", r.WindowS)
	fmt.Fprintf(tw, "visibility\t%.4f (min over the window %.4f)\n", r.Visibility, r.VisibilityMin)
	fmt.Fprintf(tw, "freshness p99\t%.3f s (max %.3f s, %d samples)\n", r.FreshnessP99S, r.FreshnessMaxS, r.FreshnessSamples)
	fmt.Fprintf(tw, "alert detection\t%s\n", secs(r.AlertDetectionS))
	fmt.Fprintf(tw, "  node offline\t%s after its last expected report (node %d; %s after the crash)\n",
		secs(r.OfflineDetectionS), r.SilentNode, secs(r.OfflineAfterCrashS))
	fmt.Fprintf(tw, "  low memory\t%s after the fall (node %d; cleared %s after recovery)\n",
		secs(r.LowMemoryDetectionS), r.LowMemoryNode, secs(r.LowMemoryClearS))
	fmt.Fprintf(tw, "unexpected alerts\t%d\n", r.UnexpectedAlerts)
	root := ""
	if r.BusiestRadioIsRoot {
		root = ", the root"
	}
	fmt.Fprintf(tw, "status overhead\t%s of the mesh's link capacity\n", pct(r.StatusOverheadFraction))
	fmt.Fprintf(tw, "  busiest radio\t%s (node %d%s)\n", pct(r.StatusOverheadBusiest), r.BusiestRadio, root)
	fmt.Fprintf(tw, "  busiest sender\t%s (airtime with per-message cost %s)\n", pct(r.StatusOverheadTx), pct(r.StatusAirtimeFraction))
	fmt.Fprintf(tw, "  status bytes sent\t%d of %d link bytes in the window\n", r.StatusLinkBytes, r.LinkBytesWindow)
	fmt.Fprintf(tw, "telemetry frames\t%d sent, %d accepted, %d missed, %d refused, %d keyframe requests\n",
		r.FramesSent, r.FramesAccepted, r.FramesMissed, r.FramesRefused, r.KeyframeRequests)
	fmt.Fprintf(tw, "exact reconstruction\t%d frames checked, %d mismatches (%d encoding mismatches)\n",
		r.ReconstructionChecked, r.ReconstructionMismatches, r.EncodingMismatches)
	fmt.Fprintf(tw, "lost / queue drops\t%d / %d\n", r.Lost, r.QueueDrops)
	speed := ""
	if r.WallS > 0 {
		speed = fmt.Sprintf(" (%.0f× real time)", r.VirtualS/r.WallS)
	}
	fmt.Fprintf(tw, "virtual time\t%.3f s\n", r.VirtualS)
	fmt.Fprintf(tw, "wall time\t%.3f s%s\n", r.WallS, speed)
	return tw.Flush()
}
