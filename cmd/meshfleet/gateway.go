package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/gateway"
	"github.com/meshfleet/meshfleet/integrations/mqttbridge"
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
	cmd.AddCommand(newHashPasswordCmd())
	return cmd
}

// newHashPasswordCmd prints the bcrypt hash of a password read from stdin,
// for mqtt.embedded.users[].password_hash: the config never holds the
// password itself.
func newHashPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password < password.txt",
		Short: "Print the bcrypt hash of a password read from stdin, for mqtt.embedded.users",
		Long: `Reads one password from stdin (the first line, without its line break) and
prints its bcrypt hash for the password_hash of a user in mqtt.embedded.users.
For example:  read -rs PW && printf '%s' "$PW" | meshfleet gateway hash-password`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 1024)).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading the password from stdin: %w", err)
			}
			pw := strings.TrimRight(line, "\r\n")
			if pw == "" {
				return errors.New("no password on stdin (pipe it in, e.g. printf '%s' \"$PW\" | meshfleet gateway hash-password)")
			}
			if len(pw) > 72 {
				return fmt.Errorf("the password is %d bytes; bcrypt uses at most 72", len(pw))
			}
			h, err := mqttbridge.HashPassword(pw)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), h)
			return err
		},
	}
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
