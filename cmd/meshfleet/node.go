package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/cmd/meshfleet/internal/console"
	"github.com/meshfleet/meshfleet/mesh"
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
		logLevel      string
	)
	cmd := &cobra.Command{
		Use:   "node --id N [--listen :5555] [--connect host:port]...",
		Short: "Run a painlessMesh node over TCP",
		Long: `Run one painlessMesh node. It accepts connections on --listen (like a node's
access point) and keeps a connection to each --connect address (like a node's
station uplink), reconnecting with backoff.

Events are printed on stdout as JSON lines. Commands are read from stdin, one a
line: ` + console.Usage + `.
Ctrl-C or end of input stops the node.`,
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
			d, err := tcp.New(tcp.Config{
				Node:           mesh.Config{ID: id, Root: root, TimeAuthority: timeAuthority},
				Listen:         listen,
				Connect:        connect,
				MaxMessageSize: maxMsg,
				Logger:         logger,
			})
			if err != nil {
				return err
			}
			return console.Run(cmd.Context(), d, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&id, "id", 0, "node id (non-zero, unique in the mesh)")
	f.StringVar(&listen, "listen", "", "accept mesh connections on this address, e.g. :5555")
	f.StringArrayVar(&connect, "connect", nil, "keep a connection to this node (host:port); repeatable")
	f.BoolVar(&root, "root", false, "advertise this node as the mesh root")
	f.BoolVar(&timeAuthority, "time-authority", false, "advertise this node as a time authority")
	f.IntVar(&maxMsg, "max-message-size", tcp.DefaultMaxMessageSize, "largest incoming message in bytes")
	f.StringVar(&logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
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
