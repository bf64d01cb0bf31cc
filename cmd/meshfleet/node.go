package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/cmd/meshfleet/internal/console"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

func init() { rootCmd.AddCommand(newNodeCmd()) }

func newNodeCmd() *cobra.Command {
	var (
		id            uint32
		listen        string
		connect       []string
		root          bool
		timeAuthority bool
		maxMsg        int
		maxConns      int
		logLevel      string
		stdin         bool
		ota           otaFlags
	)
	cmd := &cobra.Command{
		Use:   "node --id N [--listen :5555] [--connect host:port]...",
		Short: "Run a painlessMesh node over TCP",
		Long: `Run one painlessMesh node. It accepts connections on --listen (like a node's
access point) and keeps a connection to each --connect address (like a node's
station uplink), reconnecting with backoff.

Events are printed on stdout as JSON lines, starting with "listening" and
with "nodes" whenever the node list changes. The node never waits for stdout:
events a slow reader cannot take are dropped and counted in "dropped" lines,
and "stopped", the last line, gives the total. Commands are read from stdin,
one a line: ` + console.Usage + `.
Ctrl-C or end of input stops the node (with --stdin=false only a signal does).

The node reports its status (firmware, free memory, traffic, latency, OTA
state) to the mesh root every --status-interval. With --slot-dir it is also an
OTA receiver: it downloads images for --ota-role/--ota-hardware into the
inactive slot of the A/B slot store in that directory (resuming after a
restart), verifies them (MD5; with --ota-public-key the signed manifest: role,
hardware, SHA-256 and security counter) and switches:
the new image waits in its slot file ("event":"ota","state":"switched" names
it in slot_path) and --on-switch runs with that path to install it. The next
start of the node with the same --slot-dir runs the new image on trial; it is
confirmed once the node joins the mesh, or rolled back if it does not within
--confirm-timeout or --max-boots starts (--on-rollback runs then).

With --on-switch and no --ota-public-key every image is refused (the command
would run whatever any node of the mesh sent), unless --ota-insecure says
otherwise. Without a key the node warns at start that images are unverified.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == 0 {
				return fmt.Errorf("--id is required and must be non-zero")
			}
			if listen == "" && len(connect) == 0 {
				return fmt.Errorf("nothing to connect: give --listen, --connect or both")
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			dev, err := ota.config(cmd.Flags())
			if err != nil {
				return err
			}
			d, device, err := buildNode(nodeConfig{
				ID: id, Listen: listen, Connect: connect, Root: root, TimeAuthority: timeAuthority,
				MaxMessageSize: maxMsg, MaxConnections: maxConns, Device: dev, Logger: logger,
			}, time.Now())
			if err != nil {
				return err
			}
			var in io.Reader = blockingReader{cmd.Context()}
			if stdin {
				in = cmd.InOrStdin()
			}
			return runNode(cmd.Context(), d, device, in, cmd.OutOrStdout(), ota.exitOnSlotChange)
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&id, "id", 0, "node id (non-zero, unique in the mesh)")
	f.StringVar(&listen, "listen", "", "accept mesh connections on this address, e.g. :5555")
	f.StringArrayVar(&connect, "connect", nil, "keep a connection to this node (host:port); repeatable")
	f.BoolVar(&root, "root", false, "advertise this node as the mesh root")
	f.BoolVar(&timeAuthority, "time-authority", false, "advertise this node as a time authority")
	f.IntVar(&maxMsg, "max-message-size", tcp.DefaultMaxMessageSize, "largest incoming message in bytes; a longer one closes its connection")
	f.IntVar(&maxConns, "max-connections", tcp.DefaultMaxConnections, "most accepted connections served at once; more are closed at once")
	f.StringVar(&logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	f.BoolVar(&stdin, "stdin", true, "read commands from standard input; false: run until a signal (for services)")
	ota.register(f)
	return cmd
}

// newLogger returns a text logger on w at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
