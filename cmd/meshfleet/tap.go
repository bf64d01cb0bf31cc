package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/capture"
	"github.com/meshfleet/meshfleet/transport/tap"
)

func init() { rootCmd.AddCommand(newTapCmd()) }

func newTapCmd() *cobra.Command {
	var (
		cfg      tap.Config
		outPath  string
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "tap --listen :5556 --upstream host:port [--out file.jsonl]",
		Short: "Record mesh traffic with a transparent TCP proxy",
		Long: `Accept mesh connections on --listen and connect each one through to
--upstream, forwarding the bytes both ways unchanged. Every message (split at
its NUL terminator) and the end of each direction is printed as a JSON line in
the capture format read by 'meshfleet inspect':

  {"t": seconds since start, "conn": N, "dir": "client->server"|"server->client", "msg": "..."}
  {"t": ..., "conn": N, "dir": ..., "event": "closed"}

With --out the same lines are also written to a file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			return runTap(cmd.Context(), cfg, outPath, cmd.OutOrStdout(), func(net.Addr) {})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", ":5556", "address the station-side node connects to")
	f.StringVar(&cfg.Upstream, "upstream", "", "address of the AP-side node (host:port)")
	f.StringVar(&outPath, "out", "", "also write the capture to this file")
	f.IntVar(&cfg.MaxMessageSize, "max-message-size", tap.DefaultMaxMessageSize, "longest message recorded, in bytes")
	f.StringVar(&logLevel, "log-level", "warn", "log level on stderr: debug, info, warn, error")
	cmd.MarkFlagRequired("upstream")
	return cmd
}

// runTap runs a tap until ctx ends, writing the capture to stdout and, if
// outPath is set, to that file. listening is called with the bound address
// before the first client is accepted.
func runTap(ctx context.Context, cfg tap.Config, outPath string, stdout io.Writer, listening func(net.Addr)) (err error) {
	w := stdout
	if outPath != "" {
		f, err := os.Create(outPath)
		if err != nil {
			return fmt.Errorf("tap: create capture file: %w", err)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("tap: close capture file: %w", cerr)
			}
		}()
		w = io.MultiWriter(stdout, f)
	}
	// A tap that cannot write its capture is useless: stop it (the nodes
	// reconnect directly or through a new tap) rather than forward
	// traffic that is no longer recorded.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cw := capture.NewWriter(w)
	var werr error // written only by record, read after Run returned
	p, err := tap.New(cfg, func(r capture.Record) {
		if werr != nil {
			return
		}
		if werr = cw.Write(r); werr != nil {
			cancel()
		}
	})
	if err != nil {
		return err
	}
	listening(p.Addr())
	if err := p.Run(ctx); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("tap: write capture: %w", werr)
	}
	return nil
}
