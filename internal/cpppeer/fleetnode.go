package cpppeer

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The fleet node is the second program of this package: a painlessMesh
// node on boost::asio that runs the ESP-side MeshFleet library (esp/ in
// the repository), built from esp/host/node.cpp, esp/src and the same
// vendored sources and Arduino stand-in as the peer.

var fleetBuild struct {
	once sync.Once
	path string
	err  error
}

// espDir is the repository's esp/ library.
func espDir() string {
	return filepath.Clean(filepath.Join(sourceDir(), "..", "..", "esp"))
}

// BuildFleetNode returns the path of the fleet node program, building it
// if needed (cached as the peer is); it skips t when the toolchain or the
// vendored sources are missing, and fails it when the build fails.
func BuildFleetNode(t testing.TB) string {
	t.Helper()
	fleetBuild.once.Do(func() { fleetBuild.path, fleetBuild.err = buildFleetNode(VendorDir(), "") })
	if isMissing(fleetBuild.err) {
		t.Skip(fleetBuild.err)
	}
	if fleetBuild.err != nil {
		t.Fatal(fleetBuild.err)
	}
	return fleetBuild.path
}

// buildFleetNode builds node.cpp, or with main another program that
// includes the library (an example firmware), named name.
func buildFleetNode(vendor, main string) (string, error) {
	esp := espDir()
	name, unit := "fleetnode", filepath.Join(esp, "host", "node.cpp")
	if main != "" {
		name, unit = "fleet-"+filepath.Base(filepath.Dir(main)), main
	}
	peerInclude := filepath.Join(sourceDir(), "peer", "include")
	return buildProgram(vendor, program{
		name:     name,
		dirs:     []string{filepath.Join(esp, "src"), filepath.Join(esp, "host"), filepath.Dir(unit), peerInclude},
		includes: []string{peerInclude, filepath.Join(esp, "src"), filepath.Join(esp, "host")},
		units:    []string{unit},
	})
}

// FleetConfig is what one fleet node runs as.
type FleetConfig struct {
	ID       uint32
	Listen   bool   // accept mesh connections on 127.0.0.1 (a free port)
	Connect  string // host:port of a mesh node to join
	Role     string // OTA role (default sensor)
	Firmware string // version it reports
	MD5      string // md5 of the running firmware it reports
	Interval int    // seconds between regular telemetry frames (default 30)
}

func (c FleetConfig) args() []string {
	args := []string{"--id", strconv.FormatUint(uint64(c.ID), 10)}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	if c.Listen {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	add("--connect", c.Connect)
	add("--role", c.Role)
	add("--fw", c.Firmware)
	add("--md5", c.MD5)
	if c.Interval > 0 {
		args = append(args, "--interval", strconv.Itoa(c.Interval))
	}
	return args
}

// StartFleetNode builds (or skips, see BuildFleetNode) and starts a fleet
// node as Start starts a peer.
func StartFleetNode(ctx context.Context, t testing.TB, cfg FleetConfig) *Peer {
	t.Helper()
	return start(ctx, t, BuildFleetNode(t), cfg.args(), Config{ID: cfg.ID, Listen: cfg.Listen, Connect: cfg.Connect})
}

// Command sends a fleet node one line of its host platform's commands
// ("heap N", "rssi N": what the chip would report).
func (p *Peer) Command(line string) error {
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		return fmt.Errorf("C++ node %d: command %q: %w", p.Config.ID, line, err)
	}
	return nil
}
