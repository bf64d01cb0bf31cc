package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/gateway"
)

func newBenchGatewayCmd() *cobra.Command {
	var (
		cfg    gateway.IngestBenchConfig
		cores  int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "gateway [--nodes N] [--seconds S] [--cores 1] [--json]",
		Short: "How many nodes reporting at 1 Hz one gateway process keeps up with on one core",
		Long: `Feeds --seconds of 1 Hz telemetry from --nodes nodes through one gateway's
own ingest path: the mesh node's framing and routing (the packages arrive
through a relay, a real mesh node synced over an in-memory link), the
status collector's decode, model and alerts, the history recorder and its
SQLite writer, and the MQTT bridge publishing the status topics and one
document per node every 30 s (virtual) to the embedded broker and one
subscriber. It drives the gateway as fast as it takes the packages, on a
virtual clock (nothing sleeps), and reports packages per CPU second: for the
collector's decode alone of the same packages (the baseline, measured before
and after the run in this process) and for the whole path. The whole path's
rate is the number of nodes one core keeps up with at 1 Hz. The device
registry holds 10,000 nodes (the gateway's own included); with more, unnamed
nodes take each other's place in it every second, and the run counts that
too. --cores sets GOMAXPROCS (default 1: the one-core figure).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Nodes < 1 || cfg.Seconds < 2 || cores < 1 {
				return fmt.Errorf("--nodes and --cores must be positive and --seconds at least 2")
			}
			dir, err := os.MkdirTemp("", "meshfleet-bench-gateway-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			cfg.Dir = dir
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(cores))
			res, err := gateway.BenchIngest(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return json.NewEncoder(out).Encode(res)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "fleet\t%d nodes at 1 Hz for %d s (virtual): %d telemetry packages of about %d bytes; GOMAXPROCS %d\n", res.Nodes, res.Seconds, res.Packages, res.PackageBytes, res.GOMAXPROCS)
			fmt.Fprintf(tw, "decode alone\t%.0f packages per CPU second\n", res.DecodeRate)
			fmt.Fprintf(tw, "full path\t%.0f packages per CPU second (%.1f× the decode's CPU per package; %.1f s wall)\n", res.FullRate, res.CostRatio, res.WallS)
			fmt.Fprintf(tw, "N (1 Hz)\t%d nodes on one core\n", res.NodesAt1Hz)
			if res.Nodes > res.RegistryLimit {
				fmt.Fprintf(tw, "registry\tfull: it holds %d nodes besides the gateway, so unnamed nodes take each other's place in it every second\n", res.RegistryLimit)
			}
			fmt.Fprintf(tw, "checks\t%d nodes online at the end, %d samples written, %d dropped, %d MQTT messages in %d status cycles\n", res.Online, res.SamplesWritten, res.SamplesDropped, res.MQTTMessages, res.MQTTCycles)
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", 5000, "reporting nodes")
	f.IntVar(&cfg.Seconds, "seconds", 120, "virtual seconds of telemetry")
	f.DurationVar(&cfg.Publish, "publish-interval", 30*time.Second, "MQTT status interval (virtual)")
	f.IntVar(&cores, "cores", 1, "GOMAXPROCS for the run")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
