package cpppeer

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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

var fleetBuild32 struct {
	once sync.Once
	path string
	err  error
}

// BuildFleetNode32 is BuildFleetNode for 32 bits (g++ -m32), whose
// pointers, std::function and Task are the size they are on the chips; it
// skips t without a 32-bit toolchain (g++-multilib, lib32z1-dev).
func BuildFleetNode32(t testing.TB) string {
	t.Helper()
	fleetBuild32.once.Do(func() { fleetBuild32.path, fleetBuild32.err = buildFleetNode32(VendorDir()) })
	if isMissing(fleetBuild32.err) {
		t.Skip(fleetBuild32.err)
	}
	if fleetBuild32.err != nil {
		t.Fatal(fleetBuild32.err)
	}
	return fleetBuild32.path
}

func buildFleetNode32(vendor string) (string, error) {
	esp := espDir()
	peerInclude := filepath.Join(sourceDir(), "peer", "include")
	return buildProgram(vendor, program{
		name:     "fleetnode32",
		dirs:     []string{filepath.Join(esp, "src"), filepath.Join(esp, "host"), peerInclude},
		includes: []string{peerInclude, filepath.Join(esp, "src"), filepath.Join(esp, "host")},
		units:    []string{filepath.Join(esp, "host", "node.cpp")},
		libs:     []string{"-lz"},
		m32:      true,
	})
}

// StartFleetNode32 starts a fleet node built by BuildFleetNode32.
func StartFleetNode32(ctx context.Context, t testing.TB, cfg FleetConfig) *Peer {
	t.Helper()
	return start(ctx, t, BuildFleetNode32(t), cfg.args(), nil, Config{ID: cfg.ID, Listen: cfg.Listen || cfg.ListenAddr != "", Connect: cfg.Connect})
}

// buildFleetNode builds node.cpp, or with sketch an Arduino example of
// the library (a .ino, run by host/sketch.cpp with the host's
// painlessMesh.h).
func buildFleetNode(vendor, sketch string) (string, error) {
	esp := espDir()
	peerInclude := filepath.Join(sourceDir(), "peer", "include")
	prog := program{
		name:     "fleetnode",
		dirs:     []string{filepath.Join(esp, "src"), filepath.Join(esp, "host"), peerInclude},
		includes: []string{peerInclude, filepath.Join(esp, "src"), filepath.Join(esp, "host")},
		units:    []string{filepath.Join(esp, "host", "node.cpp")},
		// zlib: the host's inflater for deflate transfers (Debian
		// zlib1g-dev), standing in for the ESP32's ROM inflater.
		libs: []string{"-lz"},
	}
	if sketch != "" {
		prog.name = "fleet-" + strings.TrimSuffix(filepath.Base(sketch), ".ino")
		prog.dirs = append(prog.dirs, filepath.Dir(sketch))
		prog.units = []string{filepath.Join(esp, "host", "sketch.cpp")}
		prog.flags = []string{"-DSKETCH=" + strconv.Quote(sketch)}
	}
	return buildProgram(vendor, prog)
}

// BuildSketch builds an example firmware of the library (a path under
// esp/examples) for the host, as BuildFleetNode builds the node.
func BuildSketch(t testing.TB, example string) string {
	t.Helper()
	bin, err := buildFleetNode(VendorDir(), filepath.Join(espDir(), "examples", example))
	if isMissing(err) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// StartSketch runs an example firmware built by BuildSketch as node id,
// listening on listen (ip:port) and/or joining connect (either may be
// empty), as Start starts a peer.
func StartSketch(ctx context.Context, t testing.TB, bin string, id uint32, listen, connect string) *Peer {
	t.Helper()
	env := []string{"MESHFLEET_NODE_ID=" + strconv.FormatUint(uint64(id), 10)}
	if listen != "" {
		env = append(env, "MESHFLEET_LISTEN="+listen)
	}
	if connect != "" {
		env = append(env, "MESHFLEET_CONNECT="+connect)
	}
	return start(ctx, t, bin, nil, env, Config{ID: id})
}

// FleetConfig is what one fleet node runs as.
type FleetConfig struct {
	ID     uint32
	Listen bool // accept mesh connections on 127.0.0.1 (a free port)
	// ListenAddr accepts them on this address instead, which a node keeps
	// across its restarts (its children dial it again).
	ListenAddr string
	Connect    string // host:port of a mesh node to join
	Role       string // OTA role (default sensor)
	Firmware   string // version it reports
	MD5        string // md5 of the running firmware it reports
	Interval   int    // seconds between regular telemetry frames (default 30)
	// Image runs the OTA receiver (MeshFleetOTA.h), writing to this file.
	Image string
	// TrialDeadline runs the receiver with the trial boot on the host
	// model of the ESP32 bootloader, its images kept in State (the update
	// partition is State/update.bin unless Image names one): a restart
	// re-executes the node, which boots the new image on trial, confirms
	// it once it rejoined within TrialDeadline seconds or rolls back.
	// Firmware and MD5 then name the factory image; see HostImage for
	// images that name their version.
	TrialDeadline int
	// StockImage runs painlessMesh's own OTA receiver beside it
	// (mesh.initOTAReceive), writing to this file.
	StockImage string
	// Hardware is what the receiver takes Offers for (default ESP8266,
	// which has no inflater and refuses deflate; ESP32 inflates).
	Hardware string
	// State keeps the OTA receiver's progress file (the chip's LittleFS)
	// in this directory: started again with the same State and Image, a
	// node resumes the transfer. With TrialDeadline it also holds the
	// images.
	State string
	// ExitAfterChunks ends the node at once (a power cut) once its
	// receiver took this many chunks (event "killed").
	ExitAfterChunks int
	// MaxImage is the update partition's size (default 4 MiB).
	MaxImage int
	// DropPushed hides the first pushed copy of these chunks that comes
	// while the OTA receiver downloads, as lost broadcasts (event
	// "dropped" with the Part for each).
	DropPushed []int
}

func (c FleetConfig) args() []string {
	args := []string{"--id", strconv.FormatUint(uint64(c.ID), 10)}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	if c.ListenAddr != "" {
		args = append(args, "--listen", c.ListenAddr)
	} else if c.Listen {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	add("--connect", c.Connect)
	add("--role", c.Role)
	add("--fw", c.Firmware)
	add("--md5", c.MD5)
	add("--image", c.Image)
	add("--stock-image", c.StockImage)
	if c.TrialDeadline > 0 {
		args = append(args, "--trial-deadline", strconv.Itoa(c.TrialDeadline))
	}
	add("--hardware", c.Hardware)
	add("--state", c.State)
	if c.ExitAfterChunks > 0 {
		args = append(args, "--exit-after-chunks", strconv.Itoa(c.ExitAfterChunks))
	}
	if c.MaxImage > 0 {
		args = append(args, "--max-image", strconv.Itoa(c.MaxImage))
	}
	if len(c.DropPushed) > 0 {
		var s []string
		for _, i := range c.DropPushed {
			s = append(s, strconv.Itoa(i))
		}
		args = append(args, "--drop-pushed", strings.Join(s, ","))
	}
	if c.Interval > 0 {
		args = append(args, "--interval", strconv.Itoa(c.Interval))
	}
	return args
}

// StartFleetNode builds (or skips, see BuildFleetNode) and starts a fleet
// node as Start starts a peer.
func StartFleetNode(ctx context.Context, t testing.TB, cfg FleetConfig) *Peer {
	t.Helper()
	return start(ctx, t, BuildFleetNode(t), cfg.args(), nil, Config{ID: cfg.ID, Listen: cfg.Listen || cfg.ListenAddr != "", Connect: cfg.Connect})
}

// HostImage is an image for fleet nodes with State: a first line naming
// the version the node reports when it runs it (and, with neverRejoins, a
// bad image that never joins the mesh), then body.
func HostImage(version string, neverRejoins bool, body []byte) []byte {
	head := "meshfleet-host-image version=" + version
	if neverRejoins {
		head += " rejoin=no"
	}
	return append([]byte(head+"\n"), body...)
}

// Command sends a fleet node one line of its host platform's commands
// ("heap N", "rssi N": what the chip would report).
func (p *Peer) Command(line string) error {
	if _, err := fmt.Fprintln(p.stdin, line); err != nil {
		return fmt.Errorf("command %q to C++ node %d: %w", line, p.Config.ID, err)
	}
	return nil
}

// BuildFrames returns the path of esp/host/frames.cpp built: the library's
// telemetry encoder and hashes alone, without painlessMesh or Boost. It
// skips t without g++.
func BuildFrames(t testing.TB) string {
	t.Helper()
	esp := espDir()
	return buildStandalone(t, "frames", filepath.Join(esp, "src", "meshfleet"))
}

// BuildHeatshrink returns the path of esp/host/heatshrink.cpp built: the
// library's heatshrink decoder alone, without painlessMesh or Boost. It
// skips t without g++.
func BuildHeatshrink(t testing.TB) string {
	t.Helper()
	esp := espDir()
	return buildStandalone(t, "heatshrink", filepath.Join(esp, "src", "meshfleet", "heatshrink.hpp"))
}

// Events returns every event the program reported so far, consumed by
// Wait or not.
func (p *Peer) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

// BuildInflate returns the path of esp/host/inflate.cpp built: the
// library's host inflater (zlib) and its resume, without painlessMesh or
// Boost. It skips t without g++ or zlib's headers.
func BuildInflate(t testing.TB) string {
	t.Helper()
	esp := espDir()
	return buildStandalone(t, "inflate", filepath.Join(esp, "src", "meshfleet", "inflate.hpp"), "-lz")
}

// buildStandalone builds esp/host/<name>.cpp against esp/src alone
// (without painlessMesh or Boost), rebuilt when dep or the unit changes;
// it skips t without g++ (or a library's headers) and fails it when the
// build fails.
func buildStandalone(t testing.TB, name, dep string, libs ...string) string {
	t.Helper()
	esp := espDir()
	unit := filepath.Join(esp, "host", name+".cpp")
	bin, err := buildProgram("", program{
		name:       name,
		dirs:       []string{dep, unit},
		includes:   []string{filepath.Join(esp, "src")},
		units:      []string{unit},
		libs:       libs,
		standalone: true,
	})
	if isMissing(err) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
