package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/gateway"
)

func newDemoCmd() *cobra.Command {
	var dc gateway.DemoConfig
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a simulated 30-node mesh with the gateway and a compressed broadcast OTA, no hardware or broker needed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dc.Nodes < 1 || dc.Nodes > 500 {
				return fmt.Errorf("--nodes %d: want 1..500", dc.Nodes)
			}
			if verbose {
				dc.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			}
			gateway.Version = buildVersion()
			res, err := gateway.RunDemo(cmd.Context(), dc, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if dc.JSON {
				b, _ := json.Marshal(map[string]any{"event": "finished", "result": res})
				fmt.Fprintln(out, string(b))
			} else {
				fmt.Fprintf(out, "\nfinished: %d/%d nodes online, health %d; OTA %s confirmed on %d of %d nodes", res.Online, res.Nodes, res.HealthScore, res.Campaign, res.Completed, res.Nodes-1)
				if res.OTASeconds > 0 {
					fmt.Fprintf(out, " in %.1f s", res.OTASeconds)
				}
				fmt.Fprintln(out)
			}
			if res.Campaign != "" && res.Completed < res.Nodes-1 && res.Failed > 0 {
				return fmt.Errorf("OTA failed on %d nodes", res.Failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&dc.Nodes, "nodes", 30, "simulated devices besides the gateway")
	f.DurationVar(&dc.Duration, "duration", 0, "stop after this long (default: run until interrupted)")
	f.Uint64Var(&dc.Seed, "seed", 1, "simulation seed")
	f.Float64Var(&dc.Speed, "speed", 1, "virtual seconds per wall second")
	f.IntVar(&dc.ImageSize, "image-size", 512<<10, "firmware image size in bytes")
	f.StringVar(&dc.Mode, "mode", "broadcast", "OTA mode: stock, pipelined, broadcast")
	f.StringVar(&dc.Compress, "compress", "deflate", "OTA compression: none, deflate, heatshrink")
	f.StringVar(&dc.MQTTListen, "mqtt-listen", "127.0.0.1:1883", "embedded MQTT broker address")
	f.StringVar(&dc.HTTPListen, "http-listen", "127.0.0.1:8080", "dashboard, REST and /metrics address")
	f.BoolVar(&dc.JSON, "json", false, "progress as JSON lines")
	f.BoolVarP(&verbose, "verbose", "v", false, "log to stderr")
	return cmd
}

func init() { rootCmd.AddCommand(newDemoCmd()) }
