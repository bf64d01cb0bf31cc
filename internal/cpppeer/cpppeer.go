// Package cpppeer runs real painlessMesh C++ nodes in tests: a small
// program (peer/peer.cpp) built from the stock C++ sources in
// ../shared/vendor (relative to the repository root) with g++ and Boost.
// A peer listens and/or connects over loopback TCP, relays, runs the stock
// OTA receiver (writing the image to a file) or acts as a stock OTA
// distributor of a file, and reports what it does as JSON lines on stdout,
// which Peer.Wait reads as Events.
//
// The program is built once per test binary into the user cache directory,
// under a hash of its sources, so parallel test packages share one build.
// Where g++, the Boost headers or the vendored sources are missing, Build
// skips the test and names what is missing.
package cpppeer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// vendorSources are the vendored files and trees the peer is compiled from
// (relative to the vendor directory), as upstream's CMakeLists.txt builds
// its Boost programs.
var (
	vendorUnits = []string{
		"painlessMesh/test/catch/fake_serial.cpp",
		"painlessMesh/src/scheduler.cpp",
		"painlessMesh/src/connection.cpp",
	}
	vendorIncludes = []string{
		"painlessMesh/test/include",
		"painlessMesh/test/boost",
		"ArduinoJson/src",
		"TaskScheduler/src",
		"painlessMesh/src",
	}
)

// ErrMissing wraps every reason the peer cannot be built on this machine.
var ErrMissing = errors.New("the C++ test peer cannot be built here")

var build struct {
	once sync.Once
	path string
	err  error
}

// Build returns the path of the peer program, building it if needed; it
// skips t when the toolchain or the vendored sources are missing, and fails
// it when they are present but the build fails.
func Build(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.path, build.err = buildPeer(VendorDir()) })
	if isMissing(build.err) {
		t.Skip(build.err)
	}
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

func isMissing(err error) bool { return errors.Is(err, ErrMissing) }

// sourceDir is this package's directory, where peer/ lives.
func sourceDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// VendorDir is where the painlessMesh, ArduinoJson and TaskScheduler
// sources are expected: ../shared/vendor beside the repository root.
func VendorDir() string {
	return filepath.Clean(filepath.Join(sourceDir(), "..", "..", "..", "shared", "vendor"))
}

func buildPeer(vendor string) (string, error) {
	peerDir := filepath.Join(sourceDir(), "peer")
	return buildProgram(vendor, program{
		name:     "peer",
		dirs:     []string{peerDir},
		includes: []string{filepath.Join(peerDir, "include")},
		units:    []string{filepath.Join(peerDir, "peer.cpp")},
	})
}

// program is one C++ test program: its own source trees (hashed), include
// paths ahead of the vendored ones, and its translation units beside the
// vendored ones.
type program struct {
	name     string
	dirs     []string
	includes []string
	units    []string
	flags    []string // compiler flags before the sources (-D...)
	libs     []string // linker flags after the sources (-lz)
	// standalone programs need neither Boost nor the vendored sources.
	standalone bool
	// m32 builds for 32 bits (g++ -m32), as pointers are on the chips;
	// Boost.System is header-only since Boost 1.69, so no 32-bit Boost
	// library is needed.
	m32 bool
}

func buildProgram(vendor string, prog program) (string, error) {
	if !prog.standalone {
		if _, err := os.Stat(filepath.Join(vendor, "painlessMesh", "src", "painlessmesh", "ota.hpp")); err != nil {
			return "", fmt.Errorf("%w: no painlessMesh sources at %s (the repository expects them in ../shared/vendor)", ErrMissing, vendor)
		}
	}
	gxx, err := exec.LookPath("g++")
	if err != nil {
		return "", fmt.Errorf("%w: no g++ on PATH (apt-get install g++ libboost-dev libboost-system-dev)", ErrMissing)
	}
	if slices.Contains(prog.libs, "-lz") {
		if err := checkHeader(gxx, "zlib.h", "zlib1g-dev"); err != nil {
			return "", err
		}
	}
	if prog.standalone {
		return buildCached(gxx, "", prog)
	}
	if err := checkBoost(gxx); err != nil {
		return "", err
	}
	if prog.m32 {
		cmd := exec.Command(gxx, "-m32", "-x", "c++", "-", "-o", os.DevNull, "-lz")
		cmd.Stdin = bytes.NewBufferString("#include <zlib.h>\nint main() { return zlibVersion() == nullptr; }\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%w: no 32-bit g++ and zlib (apt-get install g++-multilib lib32z1-dev): %s", ErrMissing, firstLine(out))
		}
	}
	return buildCached(gxx, vendor, prog)
}

// buildCached builds prog unless a build of the same sources is cached;
// vendor is "" for a standalone program.
func buildCached(gxx, vendor string, prog program) (string, error) {
	sum, err := hashSources(gxx, prog.dirs, vendor)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "meshfleet", "cpp"+prog.name, sum[:16])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, prog.name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// One build at a time: test packages run in parallel and each build
	// takes a core for half a minute.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.CreateTemp(dir, prog.name+"-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append([]string{"-std=c++14", "-O1", "-w"}, prog.flags...)
	if prog.m32 {
		args = append(args, "-m32")
	}
	for _, inc := range prog.includes {
		args = append(args, "-I"+inc)
	}
	args = append(args, prog.units...)
	if prog.standalone {
		args = append(args, "-o", tmp.Name())
	} else {
		for _, inc := range vendorIncludes {
			args = append(args, "-I"+filepath.Join(vendor, inc))
		}
		for _, u := range vendorUnits {
			args = append(args, filepath.Join(vendor, u))
		}
		args = append(args, "-o", tmp.Name(), "-lpthread")
		if !prog.m32 {
			args = append(args, "-lboost_system")
		}
	}
	args = append(args, prog.libs...)
	out, err := exec.Command(gxx, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build C++ test %s: %w\n%s", prog.name, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// checkBoost compiles a one-line program against the Boost headers the
// peer uses.
func checkBoost(gxx string) error {
	cmd := exec.Command(gxx, "-std=c++14", "-fsyntax-only", "-x", "c++", "-")
	cmd.Stdin = bytes.NewBufferString("#include <boost/asio.hpp>\n#include <boost/uuid/detail/md5.hpp>\nint main() {}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: no Boost headers (apt-get install libboost-dev libboost-system-dev): %s", ErrMissing, firstLine(out))
	}
	return nil
}

// checkHeader compiles a program that includes header, which Debian's
// package pkg installs.
func checkHeader(gxx, header, pkg string) error {
	cmd := exec.Command(gxx, "-std=c++14", "-fsyntax-only", "-x", "c++", "-")
	cmd.Stdin = bytes.NewBufferString("#include <" + header + ">\nint main() {}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: no %s (apt-get install %s): %s", ErrMissing, header, pkg, firstLine(out))
	}
	return nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// hashSources hashes the compiler's version and every file the build
// reads, so a changed source or toolchain builds anew.
func hashSources(gxx string, dirs []string, vendor string) (string, error) {
	h := sha256.New()
	ver, err := exec.Command(gxx, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s --version: %v", ErrMissing, gxx, err)
	}
	h.Write(ver)
	roots := append([]string(nil), dirs...)
	if vendor != "" {
		for _, u := range vendorUnits {
			roots = append(roots, filepath.Join(vendor, u))
		}
		for _, inc := range vendorIncludes {
			roots = append(roots, filepath.Join(vendor, inc))
		}
	}
	var files []string
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Config is what one peer runs as.
type Config struct {
	ID      uint32
	Listen  bool   // accept mesh connections on 127.0.0.1 (a free port)
	Connect string // host:port of a mesh node to join
	Root    bool   // the peer is the mesh root

	// Role is the OTA role of a receiver (with Image) or of the image a
	// distributor announces (with Serve).
	Role string
	// Image makes the peer a stock OTA receiver (an ESP8266) writing the
	// image it gets to this file; its /ota_fw.json lives in FS (default:
	// Image's directory), so it outlasts a restart.
	Image string
	FS    string
	// Restart is what the receiver does after a good image, where an ESP
	// reboots: "reboot" (the default: the peer closes its connections,
	// is away for 1.5 s as a booting ESP is, and starts again with the
	// same id and arguments, knowing its new md5) or "exit".
	Restart string

	// Serve makes the peer a stock OTA distributor of this file, with
	// Hardware (default ESP8266) and chunks of PartSize (default 1024, as
	// otaSender.ino). It announces once the mesh holds OfferWhen nodes
	// (default 2) and every 60 s after.
	Serve       string
	Hardware    string
	PartSize    int
	OfferWhen   int
	Broadcasted bool

	// ProgressEvery reports every Nth written or served part (default 1).
	ProgressEvery int

	// OTATimeScale runs the stock OTA plugin's timers (a request again
	// every 30 s, ten times; the restart 2 s after a good image) this many
	// times faster (default 1: as on an ESP). The mesh keeps its pace.
	OTATimeScale int
}

func (c Config) args() []string {
	args := []string{"--id", strconv.FormatUint(uint64(c.ID), 10)}
	add := func(flag, v string) {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	num := func(flag string, n int) {
		if n > 0 {
			args = append(args, flag, strconv.Itoa(n))
		}
	}
	if c.Listen {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	add("--connect", c.Connect)
	if c.Root {
		args = append(args, "--root")
	}
	add("--role", c.Role)
	add("--image", c.Image)
	fsDir := c.FS
	if fsDir == "" && c.Image != "" {
		fsDir = filepath.Dir(c.Image)
	}
	add("--fs", fsDir)
	add("--restart", c.Restart)
	add("--serve", c.Serve)
	add("--hardware", c.Hardware)
	num("--part-size", c.PartSize)
	num("--offer-when", c.OfferWhen)
	if c.Broadcasted {
		args = append(args, "--broadcasted")
	}
	num("--progress-every", c.ProgressEvery)
	num("--ota-time-scale", c.OTATimeScale)
	return args
}

// Event is one line a peer printed.
type Event struct {
	Event string `json:"event"` // ready, nodes, offered, request, started, part, md5, aborted, restart, stopped, exit, error
	Node  uint32 `json:"node"`
	Port  int    `json:"port"`  // ready: the listen port
	Count int    `json:"count"` // nodes: nodes in the mesh, this one included
	Part  int    `json:"part"`  // part, request
	Of    int    `json:"of"`    // part: parts of the image
	Bytes int    `json:"bytes"` // part, md5: bytes written so far
	OK    bool   `json:"ok"`    // md5: the image is the announced one
	MD5   string `json:"md5"`   // md5: of the written bytes; offered: of the image
	From  uint32 `json:"from"`  // request: the requester named in it
	Parts int    `json:"parts"` // offered
	Lost  int    `json:"lost"`  // restart of a fleet node: pushed chunks it found lost
	// boot of a fleet node with a state directory: the image runs on
	// trial, or the bootloader rolled a trial image back.
	Trial      bool `json:"trial"`
	RolledBack bool `json:"rolled_back"`
	// State and Err: a fleet node's OTA receiver changed state
	// (ota_state), with the reason of a failure or refusal.
	State string `json:"state,omitempty"`
	Err   string `json:"err,omitempty"`
	// Inflater: ota_budget of a fleet node, the bytes of its inflater
	// (0 without one).
	Inflater int `json:"inflater,omitempty"`
	// Base and Peak: heap of a fleet node (bytes allocated, painlessMesh's
	// included) before a transfer and its peak while it wrote the image.
	Base int `json:"base,omitempty"`
	Peak int `json:"peak,omitempty"`
	// A fleet node's OTA counters (restart, killed, ota_stats; Held and
	// Of also with ota_state): see esp/host/node.cpp.
	Taken       int  `json:"taken,omitempty"`
	Dup         int  `json:"dup,omitempty"`
	Resumed     int  `json:"resumed,omitempty"`
	Served      int  `json:"served,omitempty"`
	Asked       int  `json:"asked,omitempty"`
	AskedParent int  `json:"asked_parent,omitempty"`
	FromParent  int  `json:"from_parent,omitempty"`
	AskedPath   int  `json:"asked_path,omitempty"`
	FromPath    int  `json:"from_path,omitempty"`
	Held        int  `json:"held,omitempty"`
	Resume      bool `json:"resume,omitempty"` // started: the update partition kept what it held
	// Text is an error line of the C++ logger ("ERROR: " cut off), e.g.
	// "OTA: Did not receive the requested data." when the OTA request
	// task gave up.
	Text string `json:"-"`
	// At is when the test read the line.
	At time.Time `json:"-"`
}

// Peer is one running peer program.
type Peer struct {
	Config Config
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser // commands of programs that read them (fleet nodes)
	port   int

	mu      sync.Mutex
	events  []Event
	next    int           // first event Wait has not consumed
	changed chan struct{} // closed and replaced on every new event
	exited  bool
	stderr  bytes.Buffer
}

// Start builds (or skips, see Build) and starts a peer, bound to ctx and
// killed at the end of t, and waits until it is ready (listening, with
// Listen). Its non-JSON output and stderr are logged when t fails.
// A cold build counts against ctx: call Build before setting a deadline.
func Start(ctx context.Context, t testing.TB, cfg Config) *Peer {
	t.Helper()
	return start(ctx, t, Build(t), cfg.args(), nil, cfg)
}

// start runs bin with args and env (added to the test's) as the peer of
// cfg (cfg.ID names it).
func start(ctx context.Context, t testing.TB, bin string, args, env []string, cfg Config) *Peer {
	t.Helper()
	if err := ctx.Err(); err != nil {
		// exec would only say "context deadline exceeded".
		t.Fatalf("start C++ peer %d: the test's deadline ended before the peer was started (%v): build the program before setting it (cpppeer.Build, BuildFleetNode...)", cfg.ID, err)
	}
	p := &Peer{Config: cfg, t: t, changed: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, buf: &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start C++ peer %d: %v", cfg.ID, err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("C++ peer %d stderr:\n%s", cfg.ID, p.stderr.String())
			p.mu.Unlock()
		}
	})
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ev, err := p.Wait(waitCtx, func(e Event) bool { return e.Event == "ready" })
	if err != nil {
		t.Fatalf("C++ peer %d: %v", cfg.ID, err)
	}
	p.port = ev.Port
	return p
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 64<<10 { // bounded: a peer stuck in a loop
		return len(b), nil
	}
	return w.buf.Write(b)
}

func (p *Peer) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		var ev Event
		line := sc.Bytes()
		if text, ok := bytes.CutPrefix(line, []byte("ERROR: ")); ok {
			ev = Event{Event: "error", Node: p.Config.ID, Text: string(bytes.TrimSpace(text))}
		} else if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			continue // the C++ logger's other lines
		}
		ev.At = time.Now()
		p.append(ev)
	}
	_ = p.cmd.Wait()
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	p.append(Event{Event: "exit", Node: p.Config.ID, At: time.Now()})
}

func (p *Peer) append(ev Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, ev)
	close(p.changed)
	p.changed = make(chan struct{})
}

// Addr is the peer's listen address (with Listen).
func (p *Peer) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Wait returns the first event not yet consumed for which match is true,
// consuming it and every event before it. It fails on ctx's end, or when
// the peer exited without such an event.
func (p *Peer) Wait(ctx context.Context, match func(Event) bool) (Event, error) {
	for {
		p.mu.Lock()
		for p.next < len(p.events) {
			ev := p.events[p.next]
			p.next++
			if match(ev) {
				p.mu.Unlock()
				return ev, nil
			}
			if ev.Event == "exit" {
				p.mu.Unlock()
				return ev, fmt.Errorf("peer %d exited before the awaited event", p.Config.ID)
			}
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("peer %d: no awaited event: %w (last events: %s)", p.Config.ID, ctx.Err(), p.Tail())
		}
	}
}

// WaitEvent waits for the next event of this name.
func (p *Peer) WaitEvent(ctx context.Context, name string) (Event, error) {
	return p.Wait(ctx, func(e Event) bool { return e.Event == name })
}

func (p *Peer) Tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.events[max(0, len(p.events)-12):]
	b, _ := json.Marshal(evs)
	return string(b)
}

// Kill ends the peer at once, as a power cut would, and waits for it.
func (p *Peer) Kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	timeout := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		exited, changed := p.exited, p.changed
		p.mu.Unlock()
		if exited {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			p.t.Errorf("C++ peer %d did not exit after kill", p.Config.ID)
			return
		}
	}
}
