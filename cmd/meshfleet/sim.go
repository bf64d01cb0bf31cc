package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

func init() { rootCmd.AddCommand(newSimCmd()) }

func newSimCmd() *cobra.Command {
	var (
		nodes      int
		topology   string
		seed       uint64
		duration   time.Duration
		loss       float64
		link       string
		broadcasts int
		singles    int
		asJSON     bool
		withStatus bool
		interval   time.Duration
		aggregate  string
		maxIvl     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a painlessMesh network deterministically and report how it behaves",
		Long: `Simulate a mesh of stock painlessMesh nodes in virtual time: build the
topology, wait until every node knows every other, send broadcasts and
single messages, and report convergence time, delivery and time-sync
offset. The same flags and seed give the same result, bit for bit.

With --status the run is the status scenario instead: the first node of the
topology is the root with the status collector, every other node reports
its telemetry; one leaf goes silent and another runs low on memory. With
--status-aggregate on (the default) relays bundle their subtree's frames and
nodes send on change, backing off from --status-interval to
--status-max-interval while nothing changes; off, every node sends a single
frame every --status-interval; both runs off then on, on the same mesh, and
prints the ratio. It reports visibility, freshness (how long the root lags a
change of a node: p50, p99), alert_detection_s and status_overhead_fraction
(status traffic as a share of the mesh's link capacity;
status_overhead_busiest_radio is the share of the busiest radio, the
root's), with the figures behind them.

Link models: ` + strings.Join(sim.Models(), ", ") + ` (see the README's link model section).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			topo, err := sim.ParseTopology(topology)
			if err != nil {
				return err
			}
			model, err := sim.ParseModel(link)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("loss") && (loss < 0 || loss > 1 || loss != loss) {
				return fmt.Errorf("--loss %v: want a probability between 0 and 1", loss)
			}
			if duration <= 0 {
				return fmt.Errorf("--duration %v: want a positive duration", duration)
			}
			if broadcasts < 0 || singles < 0 {
				return fmt.Errorf("--broadcasts and --singles must not be negative")
			}
			model.Link.Loss = loss
			if withStatus {
				if cmd.Flags().Changed("broadcasts") || cmd.Flags().Changed("singles") {
					return fmt.Errorf("--broadcasts and --singles do not apply to --status")
				}
				modes, err := parseAggregate(aggregate)
				if err != nil {
					return err
				}
				if !cmd.Flags().Changed("status-max-interval") {
					maxIvl = 0
				} else if aggregate == "off" {
					return fmt.Errorf("--status-max-interval needs --status-aggregate on or both")
				}
				return runStatusScenario(cmd, scenario.StatusConfig{
					Nodes: nodes, Topology: topo, Seed: seed, Duration: duration, Link: model, Interval: interval,
					MaxInterval: maxIvl,
				}, modes, asJSON)
			}
			for _, name := range []string{"status-interval", "status-aggregate", "status-max-interval"} {
				if cmd.Flags().Changed(name) {
					return fmt.Errorf("--%s needs --status", name)
				}
			}
			rep, runErr := sim.RunScenario(cmd.Context(), sim.ScenarioConfig{
				Nodes: nodes, Topology: topo, Seed: seed, Duration: duration,
				Link: model, Broadcasts: broadcasts, Singles: singles,
			})
			if runErr != nil && !errors.Is(runErr, sim.ErrNotConverged) {
				return runErr
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := writeSimReport(cmd.OutOrStdout(), rep); err != nil {
				return err
			}
			return runErr
		},
	}
	cmd.AddCommand(newSimLimitsCmd())
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 10, "number of nodes")
	f.StringVar(&topology, "topology", "random", "topology: "+strings.Join(sim.Topologies(), "|"))
	f.Uint64Var(&seed, "seed", 1, "random seed (same seed, same run)")
	f.DurationVar(&duration, "duration", sim.DefaultScenarioTime, "virtual time to simulate, convergence included")
	f.Float64Var(&loss, "loss", 0, "probability that a message on a link is lost (0..1)")
	f.StringVar(&link, "link", "esp8266", "link model: "+strings.Join(sim.Models(), "|"))
	f.IntVar(&broadcasts, "broadcasts", 20, "broadcasts to send after convergence")
	f.IntVar(&singles, "singles", 20, "single messages to send after convergence")
	f.BoolVar(&asJSON, "json", false, "print the report as one JSON object")
	f.BoolVar(&withStatus, "status", false, "run the status scenario (collector on the root, telemetry from every node)")
	f.DurationVar(&interval, "status-interval", scenario.StatusInterval, "telemetry interval of the status scenario (with aggregation: the shortest), whole seconds")
	f.StringVar(&aggregate, "status-aggregate", "on", "status scenario: on (relays bundle, nodes send on change), off (a frame per node every interval) or both (off, then on, and the ratio)")
	f.DurationVar(&maxIvl, "status-max-interval", scenario.DefaultMaxInterval, "status scenario with aggregation: longest interval while nothing changes, whole seconds")
	cmd.AddCommand(newSimChaosCmd())
	return cmd
}

func writeSimReport(w io.Writer, r sim.Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "mesh\t%d nodes, %s, %s link, seed %d\n", r.Nodes, r.Topology, r.Link, r.Seed)
	if r.ConvergedAtS != nil {
		fmt.Fprintf(tw, "converged after\t%.3f s\n", *r.ConvergedAtS)
		fmt.Fprintf(tw, "broadcasts delivered once\t%.1f%% of %d × %d receivers\n",
			100*r.BroadcastDeliveredOnce, r.Broadcasts, r.Nodes-1)
		fmt.Fprintf(tw, "singles delivered\t%.1f%% of %d\n", 100*r.SingleDelivered, r.Singles)
	} else {
		fmt.Fprintf(tw, "converged after\tnever (no traffic sent)\n")
	}
	fmt.Fprintf(tw, "max time offset\t%d µs\n", r.MaxTimeOffsetUS)
	fmt.Fprintf(tw, "link transmissions\t%d messages, %d bytes\n", r.LinkMessages, r.LinkBytes)
	fmt.Fprintf(tw, "lost / queue drops\t%d / %d\n", r.Lost, r.QueueDrops)
	speed := ""
	if r.WallS > 0 {
		speed = fmt.Sprintf(" (%.0f× real time)", r.VirtualS/r.WallS)
	}
	fmt.Fprintf(tw, "virtual time\t%.3f s\n", r.VirtualS)
	fmt.Fprintf(tw, "wall time\t%.3f s%s\n", r.WallS, speed)
	if r.HeapPerNodeBytes > 0 {
		fmt.Fprintf(tw, "memory\t%.0f bytes of Go heap a simulated node, once converged\n", r.HeapPerNodeBytes)
	}
	return tw.Flush()
}
