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

// parseAggregate reads --status-aggregate: the runs to make, in order
// (false: off, true: on).
func parseAggregate(v string) ([]bool, error) {
	switch v {
	case "on":
		return []bool{true}, nil
	case "off":
		return []bool{false}, nil
	case "both":
		return []bool{false, true}, nil
	}
	return nil, fmt.Errorf("--status-aggregate %q: want on, off or both", v)
}

// statusComparison is --status-aggregate both: the two runs and how much
// of the busiest radio aggregation saves.
type statusComparison struct {
	Off statusSimReport `json:"off"`
	On  statusSimReport `json:"on"`
	// BusiestRadioRatio is the busiest radio's status share with
	// aggregation over the share without.
	BusiestRadioRatio float64 `json:"busiest_radio_ratio"`
}

func runStatusScenario(cmd *cobra.Command, cfg scenario.StatusConfig, modes []bool, asJSON bool) error {
	var reps []statusSimReport
	var runErr error
	for _, on := range modes {
		c := cfg
		c.Aggregate = on
		if !on {
			c.MaxInterval = 0
		}
		wallStart := time.Now()
		rep, err := scenario.RunStatus(cmd.Context(), c)
		if err != nil && !errors.Is(err, sim.ErrNotConverged) {
			return err
		}
		runErr = errors.Join(runErr, err)
		reps = append(reps, statusSimReport{StatusReport: rep, WallS: time.Since(wallStart).Seconds()})
	}
	out := cmd.OutOrStdout()
	if len(reps) == 2 {
		cmp := statusComparison{Off: reps[0], On: reps[1]}
		if off := reps[0].StatusOverheadBusiest; off > 0 {
			cmp.BusiestRadioRatio = reps[1].StatusOverheadBusiest / off
		}
		if asJSON {
			if err := json.NewEncoder(out).Encode(cmp); err != nil {
				return err
			}
			return runErr
		}
		for i, r := range reps {
			fmt.Fprintf(out, "--- status-aggregate %s\n", map[bool]string{false: "off", true: "on"}[modes[i]])
			if err := writeStatusReport(out, r); err != nil {
				return err
			}
		}
		fmt.Fprintf(out, "--- busiest radio with aggregation: %.3f%% against %.3f%% without (%.3f×)\n",
			100*reps[1].StatusOverheadBusiest, 100*reps[0].StatusOverheadBusiest, cmp.BusiestRadioRatio)
		return runErr
	}
	if asJSON {
		if err := json.NewEncoder(out).Encode(reps[0]); err != nil {
			return err
		}
	} else if err := writeStatusReport(out, reps[0]); err != nil {
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
	if r.Aggregate {
		fmt.Fprintf(tw, "mesh\t%d nodes, %s, %s link, seed %d, telemetry on change (%g s to %g s), bundled at relays\n",
			r.Nodes, r.Topology, r.Link, r.Seed, r.IntervalS, r.MaxIntervalS)
	} else {
		fmt.Fprintf(tw, "mesh\t%d nodes, %s, %s link, seed %d, telemetry every %g s\n", r.Nodes, r.Topology, r.Link, r.Seed, r.IntervalS)
	}
	fmt.Fprintf(tw, "converged after\t%s\n", secs(r.ConvergedAtS))
	fmt.Fprintf(tw, "all nodes online at root after\t%s\n", secs(r.StatusReadyAtS))
	fmt.Fprintf(tw, "measured for\t%.3f s\n", r.WindowS)
	fmt.Fprintf(tw, "visibility\t%.4f (min over the window %.4f)\n", r.Visibility, r.VisibilityMin)
	fmt.Fprintf(tw, "freshness\tp50 %.3f s, p99 %.3f s (max %.3f s) over %d changes\n", r.FreshnessP50S, r.FreshnessP99S, r.FreshnessMaxS, r.Changes)
	fmt.Fprintf(tw, "data age p99\t%.3f s (max %.3f s, %d samples)\n", r.DataAgeP99S, r.DataAgeMaxS, r.DataAgeSamples)
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
	fmt.Fprintf(tw, "  busiest radio\t%s (node %d%s; %.0f%% of it latency probes)\n", pct(r.StatusOverheadBusiest), r.BusiestRadio, root, 100*r.BusiestProbeFraction)
	fmt.Fprintf(tw, "  busiest sender\t%s (airtime with per-message cost %s)\n", pct(r.StatusOverheadTx), pct(r.StatusAirtimeFraction))
	fmt.Fprintf(tw, "  status bytes sent\t%d of %d link bytes in the window\n", r.StatusLinkBytes, r.LinkBytesWindow)
	fmt.Fprintf(tw, "telemetry frames\t%d sent, %d accepted (%d bundles), %d missed, %d refused, %d keyframe requests\n",
		r.FramesSent, r.FramesAccepted, r.Bundles, r.FramesMissed, r.FramesRefused, r.KeyframeRequests)
	fmt.Fprintf(tw, "frame delay max\t%.3f s (node to root, relays' holds included)\n", r.FrameDelayMaxS)
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
