package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/chaos"
)

const chaosProg = "meshfleet sim chaos"

func newSimChaosCmd() *cobra.Command {
	var (
		cfg    chaos.Config
		asJSON bool
		flags  *chaos.Flags
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run seeded fault campaigns: random meshes, OTA campaigns and faults, invariants checked",
		Long: `Run one simulated OTA campaign per seed: a random mesh of --nodes devices,
a random campaign (mode, compression, image size, signed or not) and a
random schedule of faults (crashes, power cuts at the slot store's storage
operations, link drops and flaps, partitions, loss bursts, relay crashes,
corrupted chunks, a newer image, gateway restarts, radio queue overflow,
clock jumps).
Every seed checks that no device is left without a bootable verified
image, that none runs an image that failed its checks, that every device
the root reaches after the heal ends on the target (or on its previous
image with a reason the distributor reported), that the distributor's
record matches the devices, and that nothing panics.

A seed and the code replay a run exactly. A failing seed prints the
command that replays it and the smallest fault schedule that still fails,
with the --faults flag that runs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flags.Finish(cmd.Flags()); err != nil {
				return err
			}
			return runChaos(cmd.Context(), cmd.OutOrStdout(), cfg, asJSON)
		},
	}
	flags = cfg.Flags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the figures and every failing seed as one JSON object")
	return cmd
}

func runChaos(ctx context.Context, w io.Writer, cfg chaos.Config, asJSON bool) error {
	wall := time.Now()
	cpu0 := cpuTime()
	var failed []chaos.Result
	report := func(r chaos.Result) {
		if !r.Failed() {
			return
		}
		failed = append(failed, r)
		if !asJSON {
			writeChaosFailure(w, cfg, r)
		}
	}
	sum := chaos.RunSeeds(ctx, cfg, report)
	sum.SetTimes(time.Since(wall), cpuTime()-cpu0)
	if asJSON {
		sum.Results = failed
		out := struct {
			chaos.Summary
			Command string   `json:"command"`
			Replays []string `json:"replays,omitempty"`
		}{Summary: sum, Command: cfg.Command(chaosProg)}
		for _, r := range failed {
			out.Replays = append(out.Replays, cfg.Replay(r.Plan.Seed, nil).Command(chaosProg))
			if r.Shrunk != nil {
				out.Replays = append(out.Replays, cfg.Replay(r.Plan.Seed, r.Shrunk).Command(chaosProg))
			}
		}
		if err := json.NewEncoder(w).Encode(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "command                   %s\n", cfg.Command(chaosProg))
		sum.Print(w)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stopped after %d of %d seeds: %w", sum.Seeds, cfg.Seeds, err)
	}
	if sum.Failed > 0 {
		return fmt.Errorf("%d of %d seeds broke an invariant", sum.Failed, sum.Seeds)
	}
	return nil
}

func writeChaosFailure(w io.Writer, cfg chaos.Config, r chaos.Result) {
	fmt.Fprintf(w, "seed %d FAILED (%s)\n", r.Plan.Seed, r.Plan)
	for i, v := range r.Violations {
		if i == 10 {
			fmt.Fprintf(w, "  ... %d more\n", len(r.Violations)-i)
			break
		}
		fmt.Fprintf(w, "  %s\n", v)
	}
	fmt.Fprintf(w, "  schedule: %s\n", chaos.FormatFaults(r.Plan.Faults))
	fmt.Fprintf(w, "  replay:   %s\n", cfg.Replay(r.Plan.Seed, nil).Command(chaosProg))
	if r.Shrunk != nil {
		fmt.Fprintf(w, "  shrunk to %d faults in %d runs: %s\n", len(r.Shrunk), r.ShrinkRuns, chaos.FormatFaults(r.Shrunk))
		fmt.Fprintf(w, "  replay:   %s\n", cfg.Replay(r.Plan.Seed, r.Shrunk).Command(chaosProg))
	}
}
