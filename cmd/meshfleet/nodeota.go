package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshfleet/meshfleet/cmd/meshfleet/internal/console"
	"github.com/meshfleet/meshfleet/firmware"
	"github.com/meshfleet/meshfleet/fleet"
	"github.com/meshfleet/meshfleet/linuxnode"
	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/slot"
	"github.com/meshfleet/meshfleet/transport/tcp"
)

// nodeConfig is what `meshfleet node` builds its node from.
type nodeConfig struct {
	ID             uint32
	Listen         string
	Connect        []string
	Root           bool
	TimeAuthority  bool
	MaxMessageSize int
	MaxConnections int
	Device         linuxnode.Config
	Logger         *slog.Logger
}

// buildNode creates the node's driver with the device's plugins (the OTA
// receiver and the status reporter, as configured), at process start now.
// On success the caller owns both: run them with runNode.
func buildNode(c nodeConfig, now time.Time) (*tcp.Driver, *linuxnode.Device, error) {
	c.Device.Root = c.Root
	if c.Device.Logger == nil {
		c.Device.Logger = c.Logger
	}
	dev, err := linuxnode.Open(c.Device, now)
	if err != nil {
		return nil, nil, err
	}
	d, err := tcp.New(tcp.Config{
		Node:           mesh.Config{ID: c.ID, Root: c.Root, TimeAuthority: c.TimeAuthority},
		Plugins:        dev.Plugins(),
		Listen:         c.Listen,
		Connect:        c.Connect,
		MaxMessageSize: c.MaxMessageSize,
		MaxConnections: c.MaxConnections,
		Logger:         c.Logger,
	})
	if err != nil {
		dev.Close()
		return nil, nil, err
	}
	return d, dev, nil
}

// runNode runs the node with its console (commands from in, events to out)
// and the device's hooks until ctx ends or in ends, or, with
// exitOnSlotChange, until the device asks for a restart. The slot store is
// closed last, so a download in progress resumes at the next start.
func runNode(ctx context.Context, d *tcp.Driver, dev *linuxnode.Device, in io.Reader, out io.Writer, exitOnSlotChange bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hooks := make(chan struct{})
	go func() {
		defer close(hooks)
		dev.Run(ctx, d)
	}()
	if exitOnSlotChange {
		go func() {
			select {
			case <-dev.RestartRequested():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	err := console.Run(ctx, d, in, out)
	cancel()
	<-hooks
	if cerr := dev.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("slot store: %w", cerr)
	}
	return err
}

// otaFlags are the node command's OTA and status flags.
type otaFlags struct {
	role, hardware, slotDir, publicKey string
	insecure                           bool
	confirmTimeout, hookTimeout        time.Duration
	maxBoots                           int
	onSwitch, onRollback               string
	exitOnSlotChange                   bool
	peerToPeer                         bool
	statusInterval                     time.Duration
	statusMaxInterval                  time.Duration
	statusAggregate                    bool
}

func (o *otaFlags) register(f *pflag.FlagSet) {
	f.StringVar(&o.slotDir, "slot-dir", "", "A/B slot store directory; enables the OTA receiver")
	f.StringVar(&o.role, "ota-role", "", "role this node accepts images for (required with --slot-dir)")
	f.StringVar(&o.hardware, "ota-hardware", runtime.GOOS+"-"+runtime.GOARCH, "hardware this node accepts images for")
	f.StringVar(&o.publicKey, "ota-public-key", "", "ed25519 public key file (PEM or 64 hex digits): only images signed with it are installed")
	f.BoolVar(&o.insecure, "ota-insecure", false, "with --on-switch and no --ota-public-key: install unsigned images from any node anyway (refused by default)")
	f.DurationVar(&o.confirmTimeout, "confirm-timeout", slot.DefaultConfirmTimeout, "how long a switched image has, from its first start, to join the mesh before it rolls back")
	f.IntVar(&o.maxBoots, "max-boots", slot.DefaultMaxBoots, "starts a switched image gets without joining the mesh; the next start rolls back")
	f.StringVar(&o.onSwitch, "on-switch", "", "command run after a switch, with the new image's slot file appended (split at spaces, no shell)")
	f.StringVar(&o.onRollback, "on-rollback", "", "command run after a rollback, with the restored image's slot file appended if it has one")
	f.DurationVar(&o.hookTimeout, "hook-timeout", linuxnode.DefaultHookTimeout, "time limit of one --on-switch or --on-rollback command")
	f.BoolVar(&o.exitOnSlotChange, "exit-on-slot-change", false, "exit (status 0) after a switch or rollback and its command, for a supervisor to restart the node")
	f.BoolVar(&o.peerToPeer, "ota-peer-to-peer", true, "serve the confirmed image from its slot file to other nodes, offer it to neighbours that connect, fetch from the nearest holder")
	f.DurationVar(&o.statusInterval, "status-interval", 30*time.Second, "status telemetry interval to the mesh root; 0 turns the status reporter off")
	f.DurationVar(&o.statusMaxInterval, "status-max-interval", 0, "send status on change and back off to this interval while nothing changes (above --status-interval; 0: a frame every --status-interval)")
	f.BoolVar(&o.statusAggregate, "status-aggregate", false, "bundle the status telemetry of the nodes behind this one with its own (needs a meshfleet collector at the root)")
}

// config turns the flags into the device's configuration; f tells which
// flags were given.
func (o *otaFlags) config(f *pflag.FlagSet) (linuxnode.Config, error) {
	c := linuxnode.Config{StatusInterval: o.statusInterval, StatusMaxInterval: o.statusMaxInterval, StatusAggregate: o.statusAggregate,
		Version: fleet.MeshfleetFirmware(buildVersion())}
	if o.statusInterval < 0 {
		return c, fmt.Errorf("--status-interval %s: must not be negative (0 turns the reporter off)", o.statusInterval)
	}
	if f.Changed("status-max-interval") && (o.statusMaxInterval <= o.statusInterval || o.statusMaxInterval%time.Second != 0) {
		return c, fmt.Errorf("--status-max-interval %s: want whole seconds above --status-interval (%s)", o.statusMaxInterval, o.statusInterval)
	}
	if o.statusInterval == 0 && (f.Changed("status-max-interval") || o.statusAggregate) {
		return c, fmt.Errorf("--status-max-interval and --status-aggregate need the status reporter (--status-interval above 0)")
	}
	if o.slotDir == "" {
		for _, name := range []string{"ota-role", "ota-hardware", "ota-public-key", "ota-insecure", "confirm-timeout", "max-boots", "on-switch", "on-rollback", "hook-timeout", "exit-on-slot-change", "ota-peer-to-peer"} {
			if f.Changed(name) {
				return c, fmt.Errorf("--%s needs --slot-dir (the OTA receiver's slot store)", name)
			}
		}
		return c, nil
	}
	if o.role == "" || o.hardware == "" {
		return c, fmt.Errorf("--slot-dir needs --ota-role and a non-empty --ota-hardware")
	}
	if err := firmware.ValidateRole(o.role); err != nil {
		return c, fmt.Errorf("--ota-role: %w", err)
	}
	if o.confirmTimeout <= 0 || o.maxBoots <= 0 || o.hookTimeout <= 0 {
		return c, fmt.Errorf("--confirm-timeout, --max-boots and --hook-timeout must be positive")
	}
	c.Role, c.Hardware, c.SlotDir, c.Insecure = o.role, o.hardware, o.slotDir, o.insecure
	c.ConfirmTimeout, c.MaxBoots, c.HookTimeout = o.confirmTimeout, o.maxBoots, o.hookTimeout
	c.PeerToPeer = o.peerToPeer
	// Commands are split at white space and run without a shell, so
	// nothing in them is interpreted; anything fancier belongs in a script.
	c.OnSwitch, c.OnRollback = strings.Fields(o.onSwitch), strings.Fields(o.onRollback)
	if o.publicKey != "" {
		key, err := firmware.LoadPublicKey(o.publicKey)
		if err != nil {
			return c, fmt.Errorf("--ota-public-key: %w", err)
		}
		c.PublicKey = ed25519.PublicKey(key)
	}
	return c, nil
}

// blockingReader is standard input for a node run without commands: it
// ends only with ctx.
type blockingReader struct{ ctx context.Context }

func (r blockingReader) Read([]byte) (int, error) {
	<-r.ctx.Done()
	return 0, io.EOF
}
