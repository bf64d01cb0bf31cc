package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/compress"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/scenario"
	"github.com/meshfleet/meshfleet/sim"
)

func init() {
	bench := &cobra.Command{Use: "bench", Short: "Benchmarks: OTA modes and progressive rollouts on a simulated mesh, the wire codec, the history database, the gateway's capacity"}
	bench.AddCommand(newBenchOTACmd(), newBenchCodecCmd(), newBenchHistoryCmd(), newBenchRolloutCmd(), newBenchGatewayCmd())
	rootCmd.AddCommand(bench)
}

func newBenchOTACmd() *cobra.Command {
	var (
		nodes      int
		size       int
		loss       float64
		seed       uint64
		model      string
		depth      int
		modes      []string
		methods    []string
		stockLimit time.Duration
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "ota --nodes N --size BYTES --loss P --seed S [--json]",
		Short: "Distribute one firmware image to a simulated mesh in every OTA mode",
		Long: `Builds one simulated mesh (a balanced tree of depth ≤ --depth under the
distributor, default ESP8266 link model with --loss per message), generates a
firmware-like image of --size bytes, and distributes it in every mode in turn:
stock unicast, stock broadcast, stock turbo, pipelined and broadcast, each without and with
compression. Every row reports the virtual time until the last node confirmed
the new image, the nodes completed, the link transmissions and bytes of the
run, and the floor.

` + scenario.FloorDefinition + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := sim.ParseModel(model)
			if err != nil {
				return err
			}
			if loss < 0 || loss >= 1 {
				return fmt.Errorf("--loss %v: want 0 ≤ P < 1", loss)
			}
			if nodes < 1 || size < 1 {
				return fmt.Errorf("--nodes and --size must be positive")
			}
			m.Link.Loss = loss
			var rows []scenario.BenchRow
			for _, mode := range modes {
				for _, meth := range methods {
					if _, err := compress.ParseMethod(meth); err != nil {
						return err
					}
					rows = append(rows, scenario.BenchRow{Mode: mode, Compress: meth})
				}
			}
			out := cmd.OutOrStdout()
			const row = "%-16s %-10s %10s %10s %10s %9s %9s %8s %7s %7s\n"
			if !asJSON {
				fmt.Fprintf(out, "%d nodes, %d-byte image, loss %g, seed %d, model %s\n", nodes, size, loss, seed, m.Name)
				fmt.Fprintf(out, row, "mode", "compress", "virtual_s", "completed", "link_msgs", "link_MB", "B/(L×T)", "floor_s", "×floor", "wall_s")
			}
			report := func(r scenario.BenchResult) {
				if asJSON {
					b, _ := json.Marshal(r)
					fmt.Fprintln(out, string(b))
					return
				}
				ratio := func(a, b float64) string {
					if b == 0 || a == 0 {
						return "-"
					}
					return fmt.Sprintf("%.2f", a/b)
				}
				vs := fmt.Sprintf("%.1f", r.VirtualS)
				if r.Capped {
					vs = fmt.Sprintf(">%.0f", r.VirtualS)
				}
				xf := "-"
				if r.Completed == r.Nodes {
					xf = ratio(r.VirtualS, r.FloorS)
				}
				if r.Note != "" && r.LinkMsgs == 0 {
					fmt.Fprintf(out, row, r.Mode, r.Compress, "n/a", "-", "-", "-", "-", "-", "-", "-")
					return
				}
				fmt.Fprintf(out, row, r.Mode, r.Compress, vs, fmt.Sprintf("%d/%d", r.Completed, r.Nodes),
					fmt.Sprint(r.LinkMsgs), fmt.Sprintf("%.1f", float64(r.LinkBytes)/1e6),
					ratio(float64(r.LinkBytes), float64(r.Links*r.TransferBytes)),
					fmt.Sprintf("%.1f", r.FloorS), xf, fmt.Sprintf("%.1f", r.WallS))
			}
			img := compress.FirmwareLike(size, seed)
			res, err := scenario.Bench(scenario.BenchConfig{
				Nodes: nodes, Loss: loss, Seed: seed, Model: m, MaxDepth: depth, Image: img,
				Compress: ota.Compress, Decode: ota.Decode, Rows: rows, StockLimit: stockLimit, Report: report,
			})
			if err != nil {
				return err
			}
			if !asJSON {
				printBenchNotes(out, res)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 100, "receivers (the distributor is one more node)")
	f.IntVar(&size, "size", 1<<20, "image size in bytes")
	f.Float64Var(&loss, "loss", 0.01, "probability that a message is lost on a link")
	f.Uint64Var(&seed, "seed", 1, "seed of the mesh, the image and every random choice")
	f.StringVar(&model, "model", "esp8266", "link model: "+strings.Join(sim.Models(), ", "))
	f.IntVar(&depth, "depth", 6, "maximum tree depth")
	f.StringSliceVar(&modes, "modes", []string{"stock-unicast", "stock-broadcast", "stock-turbo", "pipelined", "broadcast"}, "modes to run")
	f.StringSliceVar(&methods, "compress", []string{"none", "deflate"}, "compression methods to run each mode with")
	f.DurationVar(&stockLimit, "stock-limit", 4*time.Hour, "virtual-time cap of the stock rows")
	f.BoolVar(&asJSON, "json", false, "one JSON object per mode")
	return cmd
}

func printBenchNotes(w io.Writer, res []scenario.BenchResult) {
	var stock, best *scenario.BenchResult
	for i := range res {
		r := &res[i]
		if r.Note != "" {
			fmt.Fprintf(w, "  %s/%s: %s\n", r.Mode, r.Compress, r.Note)
		}
		if r.Capped && r.ExtrapolatedS > 0 {
			fmt.Fprintf(w, "  %s/%s: capped at %.0f s with %d/%d done; extrapolated completion ≈ %.0f s\n", r.Mode, r.Compress, r.VirtualS, r.Completed, r.Nodes, r.ExtrapolatedS)
		}
		if r.Mode == "stock-unicast" && r.Compress == "none" {
			stock = r
		}
		if r.Completed == r.Nodes && (best == nil || r.VirtualS < best.VirtualS) {
			best = r
		}
	}
	for _, r := range res {
		if r.Mode == "stock-turbo" && r.LinkMsgs > 0 && stock != nil {
			st := stock.VirtualS
			if stock.Capped && stock.ExtrapolatedS > 0 {
				st = stock.ExtrapolatedS
			}
			fmt.Fprintf(w, "stock-turbo/%s: %.1f× faster than stock unicast; worst node: %.3f× its stock-unicast time\n", r.Compress, st/r.VirtualS, r.WorstNodeRatio)
		}
	}
	if stock != nil && best != nil {
		st := stock.VirtualS
		if stock.Capped && stock.ExtrapolatedS > 0 {
			st = stock.ExtrapolatedS
		}
		fmt.Fprintf(w, "best: %s/%s, %.1f× faster than stock unicast, %.2f× the floor\n", best.Mode, best.Compress, st/best.VirtualS, best.VirtualS/best.FloorS)
	}
	fmt.Fprintf(w, "B/(L×T) = link bytes / (links in the tree × transfer bytes).\n%s.\n", scenario.FloorDefinition)
}
