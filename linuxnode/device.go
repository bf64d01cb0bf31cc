package linuxnode

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/meshfleet/meshfleet/mesh"
	"github.com/meshfleet/meshfleet/ota"
	"github.com/meshfleet/meshfleet/slot"
	"github.com/meshfleet/meshfleet/status"
)

// DefaultHookTimeout bounds one --on-switch or --on-rollback command.
const DefaultHookTimeout = 10 * time.Minute

// ErrConfig is wrapped by every configuration error of Open.
var ErrConfig = errors.New("linuxnode: invalid config")

// Config selects what a Device runs. The zero value runs nothing; SlotDir
// turns the OTA receiver on, StatusInterval the status reporter.
type Config struct {
	// Role and Hardware are what the node accepts images for; both are
	// required with SlotDir.
	Role     string
	Hardware string
	// SlotDir holds the A/B slot store (state.json, slot-a.bin,
	// slot-b.bin and the staged download). Empty: no OTA receiver.
	SlotDir string
	// PublicKey, when set, makes the node install only images with a
	// manifest signed with it, for its role and hardware, with a security
	// counter at least its own (ota.ReceiverConfig.PublicKey).
	PublicKey ed25519.PublicKey
	// Insecure lets a node with an OnSwitch command and no PublicKey
	// install unsigned images. Without it such a node refuses every
	// image: the command would run whatever any node of the mesh sent.
	Insecure bool
	// ConfirmTimeout is how long a switched image has, from its first
	// start, to join the mesh (default slot.DefaultConfirmTimeout).
	ConfirmTimeout time.Duration
	// MaxBoots is how many starts a switched image gets without
	// confirming; the next start rolls back (default slot.DefaultMaxBoots).
	MaxBoots int
	// Root is the node's --root: only a root receiver leads a stock
	// broadcast transfer.
	Root bool
	// PeerToPeer serves the image this node runs, verified and confirmed,
	// from its slot file to any node that asks, offers it to neighbours
	// that connect, and fetches missing chunks from the nearest node that
	// holds them (ota.ReceiverConfig.PeerToPeer).
	PeerToPeer bool

	// OnSwitch and OnRollback are commands (program and arguments, run
	// without a shell) started after a switch and after a rollback, with
	// the path of the slot to run next appended as the last argument
	// (none for the factory image, which has no file). Empty: none.
	OnSwitch   []string
	OnRollback []string
	// HookTimeout bounds one command (default DefaultHookTimeout).
	HookTimeout time.Duration

	// StatusInterval is the status reporter's telemetry interval; zero or
	// negative: no reporter.
	StatusInterval time.Duration
	// StatusMaxInterval, when above StatusInterval, makes the reporter
	// send on change, backing off to this interval while nothing changes
	// (status.ReporterConfig.MaxInterval).
	StatusMaxInterval time.Duration
	// StatusAggregate runs a status.Aggregator: frames of the nodes behind
	// this one, and its own, go to the collector in bundles (704), which
	// only a meshfleet collector reads.
	StatusAggregate bool
	// Version is the firmware version reported while the running image
	// has none (the factory image, installed outside OTA).
	Version string

	Logger *slog.Logger
}

func (c *Config) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	if c.SlotDir == "" {
		if c.Role != "" || c.Hardware != "" || c.PublicKey != nil || c.Insecure || len(c.OnSwitch) > 0 || len(c.OnRollback) > 0 || c.PeerToPeer {
			return bad("the OTA settings (role, hardware, public key, insecure, hooks, peer-to-peer) need a slot directory")
		}
	} else if c.Role == "" || c.Hardware == "" {
		return bad("an OTA receiver needs a role and a hardware (slot directory %s)", c.SlotDir)
	}
	if c.PublicKey != nil && len(c.PublicKey) != ed25519.PublicKeySize {
		return bad("public key is %d bytes, want %d", len(c.PublicKey), ed25519.PublicKeySize)
	}
	if c.ConfirmTimeout < 0 || c.MaxBoots < 0 || c.HookTimeout < 0 {
		return bad("negative confirm timeout, boot limit or hook timeout")
	}
	for _, h := range []struct {
		name string
		argv []string
	}{{"on-switch", c.OnSwitch}, {"on-rollback", c.OnRollback}} {
		if len(h.argv) > 0 && h.argv[0] == "" {
			return bad("%s command has no program", h.name)
		}
	}
	if c.HookTimeout == 0 {
		c.HookTimeout = DefaultHookTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Driver runs the node the Device's plugins live in (transport/tcp.Driver).
type Driver interface {
	Do(ctx context.Context, fn func(now time.Time, n *mesh.Node)) error
}

// Device is the OTA receiver and status reporter of a Linux node. Open it,
// add Plugins to the node, run Run beside the node's driver (it carries
// out the hooks), and Close it after the driver has stopped.
type Device struct {
	cfg      Config
	log      *slog.Logger
	store    *slot.Store      // nil without OTA
	ota      *otaPlugin       // nil without OTA
	reporter *status.Reporter // nil without status
	// aggregator bundles the subtree's telemetry; nil unless configured.
	aggregator *status.Aggregator

	mu      sync.Mutex
	jobs    []hookJob
	wake    chan struct{}
	restart chan struct{}
	once    sync.Once
}

// Open opens the slot store (counting this start of a switched image:
// after MaxBoots starts, or past its deadline, it rolls back here) and
// builds the plugins, at process start time now.
func Open(cfg Config, now time.Time) (*Device, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	d := &Device{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), restart: make(chan struct{})}
	if cfg.SlotDir != "" {
		st, err := slot.OpenDir(cfg.SlotDir, &slot.Options{ConfirmTimeout: cfg.ConfirmTimeout, MaxBoots: cfg.MaxBoots})
		if err != nil {
			return nil, fmt.Errorf("linuxnode: slot store %s: %w", cfg.SlotDir, err)
		}
		d.store = st
		d.warnUnsigned()
		p, err := newOTAPlugin(d, now)
		if err != nil {
			st.Close()
			return nil, err
		}
		d.ota = p
	}
	if cfg.StatusInterval > 0 {
		var bundler status.Bundler
		if cfg.StatusAggregate {
			d.aggregator = status.NewAggregator(status.AggregatorConfig{Logger: cfg.Logger.With("component", "status")})
			bundler = d.aggregator
		}
		d.reporter = status.NewReporter(status.ReporterConfig{
			Interval:    cfg.StatusInterval,
			MaxInterval: cfg.StatusMaxInterval,
			Aggregator:  bundler,
			Providers: status.Providers{
				Firmware:   d.firmware,
				Identity:   func() (string, string) { return cfg.Role, cfg.Hardware },
				FreeMemory: status.RuntimeFreeMemory,
				OTA:        d.otaStatus,
			},
			Logger: cfg.Logger.With("component", "status"),
		}, now)
	}
	return d, nil
}

// refusesUnsigned reports whether the receiver refuses every image: it
// has an install command, no key to check images with, and no explicit
// permission to install unsigned ones.
func (c *Config) refusesUnsigned() bool {
	return c.PublicKey == nil && len(c.OnSwitch) > 0 && !c.Insecure
}

// warnUnsigned says at start what an OTA receiver without a key does, so
// nobody runs one unaware: painlessMesh does not authenticate nodes, and
// without a key any node of the mesh can send an image.
func (d *Device) warnUnsigned() {
	switch {
	case d.cfg.PublicKey != nil:
	case d.cfg.refusesUnsigned():
		d.log.Warn("ota: every image is refused: this node runs an --on-switch command and has no public key to check images with; configure --ota-public-key (or, on a closed test mesh, --ota-insecure)")
	case len(d.cfg.OnSwitch) > 0:
		d.log.Warn("ota: INSECURE: images from any node of the mesh are installed unverified and --on-switch runs them (--ota-insecure); configure --ota-public-key")
	default:
		d.log.Warn("ota: images are accepted unverified (MD5 only) from any node of the mesh: no --ota-public-key configured")
	}
}

// Plugins are the node's plugins: the OTA receiver, the status
// aggregator and the status reporter, as configured.
func (d *Device) Plugins() []mesh.Plugin {
	var ps []mesh.Plugin
	if d.ota != nil {
		ps = append(ps, d.ota)
	}
	if d.aggregator != nil {
		ps = append(ps, d.aggregator)
	}
	if d.reporter != nil {
		ps = append(ps, d.reporter)
	}
	return ps
}

// Store is the slot store, nil without OTA. It is safe for concurrent use.
func (d *Device) Store() *slot.Store { return d.store }

// Receiver is the OTA receiver, nil without OTA. Use it only inside the
// driver's loop (Driver.Do): it is a sans-IO state machine.
func (d *Device) Receiver() *ota.Receiver {
	if d.ota == nil {
		return nil
	}
	return d.ota.rc
}

// Reporter is the status reporter, nil without one. Use it only inside
// the driver's loop.
func (d *Device) Reporter() *status.Reporter { return d.reporter }

// Aggregator is the status aggregator, nil without one. Use it only
// inside the driver's loop.
func (d *Device) Aggregator() *status.Aggregator { return d.aggregator }

// RestartRequested is closed once the node should restart to run another
// slot: after a switch (and its --on-switch command succeeded) or after a
// rollback (and its --on-rollback command ran).
func (d *Device) RestartRequested() <-chan struct{} { return d.restart }

func (d *Device) requestRestart() { d.once.Do(func() { close(d.restart) }) }

// Close flushes a staged download so the next start resumes it. Call it
// after the driver has stopped.
func (d *Device) Close() error {
	if d.store == nil {
		return nil
	}
	return d.store.Close()
}

// firmware is the status reporter's Providers.Firmware: the running image.
func (d *Device) firmware() (string, string) {
	if d.ota == nil {
		return d.cfg.Version, ""
	}
	in := d.ota.running
	v := in.Version
	if v == "" {
		v = d.cfg.Version
	}
	return v, in.MD5
}

// otaStates maps the receiver's states to the status system's.
var otaStates = map[ota.State]status.OTAState{
	ota.StateIdle:        status.OTAIdle,
	ota.StateDownloading: status.OTADownloading,
	ota.StateVerifying:   status.OTAVerifying,
	ota.StateSwitching:   status.OTASwitching,
	ota.StateConfirmed:   status.OTAConfirmed,
	ota.StateFailed:      status.OTAFailed,
	ota.StateRolledBack:  status.OTARolledBack,
}

// otaStatus is the status reporter's Providers.OTA.
func (d *Device) otaStatus() (status.OTAState, uint8) {
	if d.ota == nil {
		return status.OTAIdle, 0
	}
	rc := d.ota.rc
	s := otaStates[rc.State()]
	switch s {
	case status.OTADownloading:
		if _, have, total, ok := rc.Downloading(); ok && total > 0 {
			return s, uint8(have * 100 / total)
		}
	case status.OTAVerifying, status.OTASwitching, status.OTAConfirmed:
		return s, 100
	}
	return s, 0
}

// slotFiles are the image files of the slot store's directory layout
// (package slot keeps them in slot-a.bin and slot-b.bin).
var slotFiles = map[slot.Slot]string{slot.A: "slot-a.bin", slot.B: "slot-b.bin"}

// slotPath is the file holding the image of slot sl, or "" if it holds
// none (the factory image, or an empty slot).
func (d *Device) slotPath(sl slot.Slot) string {
	name, ok := slotFiles[sl]
	if !ok {
		return ""
	}
	ss := d.store.State().Slot(sl)
	if ss.Status != slot.Good && ss.Status != slot.Ready || ss.Image.MD5 == "" {
		return ""
	}
	p := filepath.Join(d.cfg.SlotDir, name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}
