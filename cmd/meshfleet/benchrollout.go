package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

func newBenchRolloutCmd() *cobra.Command {
	var (
		nodes     int
		seed      uint64
		size      int
		depth     int
		model     string
		loss      float64
		soak      time.Duration
		scenarios []string
		asJSON    bool
		straggle  int
	)
	cmd := &cobra.Command{
		Use:   "rollout --nodes N --seed S [--json]",
		Short: "Progressive rollouts of good and bad images on a simulated mesh",
		Long: `Builds a simulated mesh (a tree of depth ≤ --depth under the gateway, our
receivers with A/B slots) and runs the rollout engine against it in virtual
time, plan canary 5 → 25% → 100% with --soak per wave and the rollback
policy, once per scenario, each on a fresh copy of the mesh:

  good      a healthy image; also one campaign to every node at once
  bad       an image that confirms, then crashes every 40 s (fails the health gate)
  bad-boot  an image that crashes on boot (its self test fails; A/B falls back)
  leak      an image that leaks 40 KB/min of heap after 1 min of uptime
  late      a healthy image while a tenth of the leaves are away, back at random

With --stragglers N, N leaves are away during a push to every other device
and come back together after it: the root's radio bytes and the time until
they confirmed, for a broadcast push whose relays keep the transfer in
memory (they answer their children's repair asks), the same with relays
that reboot into the image as devices do, without and with serving from
the running slot to their children, with peer-to-peer (every updated
device serves any node and offers the image to a neighbour that connects;
stragglers fetch from the nearest holder), and a pipelined transfer
without and with peer-to-peer. root_chunks are the chunks the root's
distributor sent meanwhile (root_tx_KB also counts the mesh's node syncs
as the stragglers join).

nested = reboots that began while a node on the same path to the root
(an ancestor or a descendant) was rebooting.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := sim.ParseModel(model)
			if err != nil {
				return err
			}
			if loss < 0 || loss >= 1 {
				return fmt.Errorf("--loss %v: want 0 ≤ P < 1", loss)
			}
			m.Link.Loss = loss
			if nodes < 2 || nodes > scenario.MaxDevices {
				return fmt.Errorf("--nodes %d: want 2..%d", nodes, scenario.MaxDevices)
			}
			if size < 1 || size > 16<<20 {
				return fmt.Errorf("--size %d: want 1..%d bytes", size, 16<<20)
			}
			out := cmd.OutOrStdout()
			const row = "%-9s %-10s %9s %7s %7s %9s %11s %11s %7s %9s %9s %7s\n"
			if !asJSON {
				fmt.Fprintf(out, "%d nodes, %d-byte images, loss %g, seed %d, model %s, soak %v\n", nodes, size, loss, seed, m.Name, soak)
				fmt.Fprintf(out, row, "scenario", "state", "rollout_s", "started", "ran_new", "confirmed", "rolled_back", "unreachable", "nested", "campaign_s", "c_nested", "wall_s")
			}
			report := func(r scenario.RolloutBenchResult) {
				if asJSON {
					b, _ := json.Marshal(r)
					fmt.Fprintln(out, string(b))
					return
				}
				cs, cn := "-", "-"
				if r.CampaignS > 0 {
					cs, cn = fmt.Sprintf("%.0f", r.CampaignS), fmt.Sprint(r.CampaignNested)
				}
				fmt.Fprintf(out, row, r.Scenario, r.State, fmt.Sprintf("%.0f", r.RolloutS), fmt.Sprint(r.Started), fmt.Sprint(r.RanNew),
					fmt.Sprintf("%d/%d", r.Confirmed, r.Nodes), fmt.Sprint(r.RolledBack), fmt.Sprint(r.Unreachable), fmt.Sprint(r.NestedReboots),
					cs, cn, fmt.Sprintf("%.1f", r.WallS))
				switch {
				case r.Scenario == "leak" && r.CaughtAfterS > 0:
					fmt.Fprintf(out, "  leak: caught %.0f s after the first canary confirmed, in wave %d\n", r.CaughtAfterS, r.CaughtWave)
				case r.Scenario == "late":
					fmt.Fprintf(out, "  late: %d of %d late joiners updated\n", r.LateUpdated, r.Late)
				}
				if r.State != "completed" {
					fmt.Fprintf(out, "  %s: %s\n", r.Scenario, r.Reason)
				}
			}
			cfg := scenario.RolloutBenchConfig{Nodes: nodes, Seed: seed, Model: m, MaxDepth: depth,
				ImageSize: size, Soak: soak, Scenarios: scenarios, Report: report}
			if _, err := scenario.BenchRollout(cfg); err != nil {
				return err
			}
			if straggle <= 0 {
				return nil
			}
			res, err := scenario.BenchStragglers(cfg, straggle)
			if err != nil {
				return err
			}
			const srow = "%-10s %-14s %10s %7s %13s %12s %12s %14s\n"
			if !asJSON {
				fmt.Fprintf(out, "\n%d stragglers (leaves away during the main push, back together after it)\n", straggle)
				fmt.Fprintf(out, srow, "mode", "relays", "main_s", "back", "root_tx_KB", "root_chunks", "straggler_s", "peer")
			}
			for _, r := range res {
				if asJSON {
					b, _ := json.Marshal(r)
					fmt.Fprintln(out, string(b))
					continue
				}
				relays, peer := "reboot", "no"
				switch {
				case !r.RelaysReboot:
					relays, peer = "boot in place", "parent (copy)"
				case r.ServeConfirmed:
					peer = "parent (slot)"
				}
				if r.Mode == "pipelined" {
					peer = "no (root)"
				}
				if r.PeerToPeer {
					peer = "nearest holder"
				}
				fmt.Fprintf(out, srow, r.Mode, relays, fmt.Sprintf("%.1f", r.MainS), fmt.Sprintf("%d/%d", r.Completed, r.Stragglers),
					fmt.Sprintf("%.1f", float64(r.RootTxBytes)/1e3), fmt.Sprint(r.RootChunks), fmt.Sprintf("%.1f", r.StragglerS), peer)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 200, "devices (the gateway is one more node)")
	f.Uint64Var(&seed, "seed", 1, "seed of the mesh, the images and every random choice")
	f.IntVar(&size, "size", 64<<10, "bytes of each image")
	f.IntVar(&depth, "depth", 6, "maximum tree depth")
	f.StringVar(&model, "model", "esp8266", "link model: "+strings.Join(sim.Models(), ", "))
	f.Float64Var(&loss, "loss", 0.01, "probability that a message is lost on a link")
	f.DurationVar(&soak, "soak", 2*time.Minute, "soak time per wave")
	f.StringSliceVar(&scenarios, "scenarios", scenario.RolloutScenarios, "scenarios to run")
	f.BoolVar(&asJSON, "json", false, "one JSON object per scenario")
	f.IntVar(&straggle, "stragglers", 0, "also measure this many stragglers after a main push (0: not run)")
	return cmd
}
