package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/sim"
)

func newSimLimitsCmd() *cobra.Command {
	var (
		link     string
		seed     uint64
		duration time.Duration
		maxChain int
		maxStar  int
	)
	cmd := &cobra.Command{
		Use:   "limits [--link esp32] [--seed 1] [--duration 2m]",
		Short: "Find where a chain stops converging and where a hub's queue overflows",
		Long: `Runs the simulator's standard scenario (meshfleet sim) on growing meshes
and reports two limits of stock painlessMesh:

  chain  the longest chain that converges (a binary search up to
         --max-chain nodes), and why the next one does not;
  star   the most children one hub takes without a queue drop (a binary
         search up to --max-star), and the first hub, going up in steps of 8
         from there, that does not converge within --duration.

The star ignores MAX_CONN on purpose (a real soft AP takes at most MAX_CONN
stations, 10 on an ESP32): it shows where the hub's radio queue, not the
AP, would stop a wider mesh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			model, err := sim.ParseModel(link)
			if err != nil {
				return err
			}
			if maxChain < 3 || maxStar < 3 || maxChain > sim.MaxScenarioNodes || maxStar > sim.MaxScenarioNodes {
				return fmt.Errorf("--max-chain and --max-star must be 3..%d", sim.MaxScenarioNodes)
			}
			return runSimLimits(cmd.Context(), cmd.OutOrStdout(), model, seed, duration, maxChain, maxStar)
		},
	}
	f := cmd.Flags()
	f.StringVar(&link, "link", "esp32", "link model: "+strings.Join(sim.Models(), "|"))
	f.Uint64Var(&seed, "seed", 1, "random seed")
	f.DurationVar(&duration, "duration", 2*time.Minute, "virtual time each mesh gets to converge")
	f.IntVar(&maxChain, "max-chain", 200, "longest chain tried")
	f.IntVar(&maxStar, "max-star", 400, "most nodes (hub included) tried in a star")
	return cmd
}

func runSimLimits(ctx context.Context, out io.Writer, model sim.Model, seed uint64, duration time.Duration, maxChain, maxStar int) error {
	run := func(topo sim.Topology, n int) (sim.Report, error) {
		rep, err := sim.RunScenario(ctx, sim.ScenarioConfig{Nodes: n, Topology: topo, Seed: seed, Duration: duration, Link: model})
		if err != nil && !errors.Is(err, sim.ErrNotConverged) {
			return rep, err
		}
		return rep, nil
	}
	converged := func(r sim.Report) bool { return r.ConvergedAtS != nil }
	describe := func(r sim.Report) string {
		if !converged(r) {
			return fmt.Sprintf("does not converge within %v (%d queue drops)", duration, r.QueueDrops)
		}
		return fmt.Sprintf("converges in %.2f s (%d queue drops)", *r.ConvergedAtS, r.QueueDrops)
	}
	// search is the largest n in [lo, hi] with ok(n), assuming ok(lo) and
	// that ok holds up to some point and not beyond.
	search := func(topo sim.Topology, lo, hi int, ok func(sim.Report) bool) (int, sim.Report, sim.Report, error) {
		good, err := run(topo, lo)
		if err != nil {
			return 0, good, good, err
		}
		bad, err := run(topo, hi)
		if err != nil || ok(bad) {
			return hi, bad, bad, err
		}
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			r, err := run(topo, mid)
			if err != nil {
				return 0, r, r, err
			}
			if ok(r) {
				lo, good = mid, r
			} else {
				hi, bad = mid, r
			}
		}
		return lo, good, bad, nil
	}
	fmt.Fprintf(out, "%s link, seed %d, %v per mesh\n", model.Name, seed, duration)
	n, good, bad, err := search(sim.TopologyChain, 3, maxChain, converged)
	if err != nil {
		return err
	}
	if n == maxChain {
		fmt.Fprintf(out, "chain  every chain up to %d nodes converges\n", maxChain)
	} else {
		fmt.Fprintf(out, "chain  %d nodes %s; %d nodes %s", n, describe(good), n+1, describe(bad))
		if _, err := sim.RunScenario(ctx, sim.ScenarioConfig{Nodes: n + 1, Topology: sim.TopologyChain, Seed: seed, Duration: duration, Link: model}); err != nil {
			if _, why, ok := strings.Cut(err.Error(), "link): "); ok {
				fmt.Fprintf(out, ": %s", why)
			}
		}
		fmt.Fprintln(out)
	}
	clean := func(r sim.Report) bool { return converged(r) && r.QueueDrops == 0 }
	n, good, bad, err = search(sim.TopologyStar, 3, maxStar, clean)
	if err != nil {
		return err
	}
	if n == maxStar {
		fmt.Fprintf(out, "star   a hub with up to %d children has no queue drop\n", maxStar-1)
		return nil
	}
	fmt.Fprintf(out, "star   a hub with %d children %s; with %d children %s\n", n-1, describe(good), n, describe(bad))
	if !converged(bad) {
		return nil // the first hub with drops does not converge at all: nothing further to say
	}
	for m := n + 8; m <= maxStar; m += 8 {
		r, err := run(sim.TopologyStar, m)
		if err != nil {
			return err
		}
		if !converged(r) {
			fmt.Fprintf(out, "star   with %d children the mesh %s\n", m-1, describe(r))
			return nil
		}
	}
	fmt.Fprintf(out, "star   every hub up to %d children converges within %v\n", maxStar-1, duration)
	return nil
}
