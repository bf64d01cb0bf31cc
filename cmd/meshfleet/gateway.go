package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/gateway"
)

func newGatewayCmd() *cobra.Command {
	var (
		configPath string
		sets       []string
	)
	cmd := &cobra.Command{
		Use:   "gateway --config gateway.yaml",
		Short: "Join a mesh over TCP and serve status, OTA and messages over MQTT, REST and Prometheus",
		Long: `Runs the gateway: a mesh node (root/bridge if configured) with the OTA distributor,
the firmware store and the status collector, an MQTT bridge (embedded broker by
default), a REST API and Prometheus /metrics. Every key of the YAML file is
documented in gateway.example.yaml; MESHFLEET_<SECTION>_<KEY> environment
variables and --set section.key=value override the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := gateway.LoadConfig(configPath, os.Environ(), sets)
			if err != nil {
				return err
			}
			log, err := gatewayLogger(cfg.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			gateway.Version = buildVersion()
			g, err := gateway.New(cfg, log)
			if err != nil {
				return err
			}
			return g.RunTCP(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (see gateway.example.yaml)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override one key, e.g. --set mqtt.url=tcp://broker:1883 (repeatable)")
	return cmd
}

// gatewayLogger builds the logger the config's log section asks for.
func gatewayLogger(lc gateway.LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToLower(lc.Level))); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func init() { rootCmd.AddCommand(newGatewayCmd()) }
