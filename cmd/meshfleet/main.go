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
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "meshfleet %s\n", versionWithRevision())
		return err
	},
}

func init() {
	rootCmd.AddCommand(versionCmd)
	// --version prints the same line as the version command.
	rootCmd.Version = versionWithRevision()
	rootCmd.SetVersionTemplate("meshfleet {{.Version}}\n")
}

// buildVersion is the -ldflags version, else the module version of the
// build info.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// versionWithRevision is buildVersion followed by the VCS revision the
// binary was built from, if the build recorded one.
func versionWithRevision() string {
	settings := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
	}
	return versionString(buildVersion(), settings)
}

// versionString renders a module version and the build settings
// (vcs.revision, vcs.modified) as "v1.2.3 (revision 0123456789ab, modified)".
func versionString(v string, settings map[string]string) string {
	if v == "" {
		v = "(devel)"
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if settings["vcs.modified"] == "true" {
		return fmt.Sprintf("%s (revision %s, modified)", v, rev)
	}
	return fmt.Sprintf("%s (revision %s)", v, rev)
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
