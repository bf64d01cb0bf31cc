// Command meshfleet runs painlessMesh nodes, taps and tools from one binary.
//
// Each subcommand lives in its own file and registers itself with rootCmd
// from an init function.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

var rootCmd = &cobra.Command{
	Use:           "meshfleet",
	Short:         "painlessMesh nodes, OTA and status monitoring in Go",
	SilenceUsage:  true,
	SilenceErrors: true,
}

var versionCmd = &cobra.Command{
	Use:   "version",
	Short: "Print the meshfleet version",
	Args:  cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "meshfleet %s\n", buildVersion())
		return err
	},
}

func init() {
	rootCmd.AddCommand(versionCmd)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := rootCmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshfleet:", err)
		os.Exit(1)
	}
}
